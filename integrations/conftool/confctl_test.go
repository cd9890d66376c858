package conftool

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	etcdtest "poolbot/internal/testenv/etcd"
)

func TestConfctlGetListSetAgainstEtcd(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	ctx := testCtx(t)
	argv := func(selector, action string) []string {
		return []string{"--config", fake.config, "--quiet", "--object-type", "discovery", "select", selector, action}
	}

	st, err := c.Get(ctx, "apus", "codfw")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, State{Pooled: true, TTL: 300, References: []string{}}) {
		t.Fatalf("Get = %+v", st)
	}
	all, err := c.List(ctx, "apus")
	if err != nil || len(all) != 2 || !all["eqiad"].Pooled || !all["codfw"].Pooled {
		t.Fatalf("List = %+v, %v", all, err)
	}
	want := []fakeRecord{
		{Argv: argv("dnsdisc=apus,name=codfw", "get")},
		{Argv: argv("dnsdisc=apus", "get")},
	}
	if got := fake.calls(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("argv\n got %q\nwant %q", got, want)
	}

	st, err = c.SetPooled(ctx, "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pooled {
		t.Fatalf("SetPooled returned %+v", st)
	}
	want = []fakeRecord{
		{Argv: argv("dnsdisc=apus,name=codfw", "get")}, // exactly one object?
		{Argv: argv("dnsdisc=apus", "get")},            // last-pooled guard
		{Argv: argv("dnsdisc=apus,name=codfw", "set/pooled=false")},
		{Argv: argv("dnsdisc=apus", "get")}, // read-back
	}
	if got := fake.calls(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("argv\n got %q\nwant %q", got, want)
	}
	// The change is in the real etcd, where the etcd backend sees it.
	if fields, _ := storedFields(t, srv, etcdtest.DiscoveryKey("apus", "codfw")); fields["pooled"] != false {
		t.Fatalf("etcd holds %v", fields)
	}
	if st, err := etcdClientFor(t, srv).Get(ctx, "apus", "codfw"); err != nil || st.Pooled {
		t.Fatalf("etcd backend reads %+v, %v", st, err)
	}

	// eqiad is now the only pooled datacenter: refused before any set runs.
	_, err = c.SetPooled(ctx, "apus", "eqiad", false)
	if !errors.Is(err, ErrLastPooled) || !strings.Contains(err.Error(), "Services apus cannot be depooled as they are only active in eqiad") {
		t.Fatalf("err = %v", err)
	}
	for _, call := range fake.calls(t) {
		if strings.HasPrefix(call.Argv[len(call.Argv)-1], "set/") {
			t.Fatalf("guard let a set run: %q", call.Argv)
		}
	}

	// Pooling reads back with the exact selector only.
	if st, err = c.SetPooled(ctx, "apus", "codfw", true); err != nil || !st.Pooled {
		t.Fatalf("pool: %+v, %v", st, err)
	}
	want = []fakeRecord{
		{Argv: argv("dnsdisc=apus,name=codfw", "get")},
		{Argv: argv("dnsdisc=apus,name=codfw", "set/pooled=true")},
		{Argv: argv("dnsdisc=apus,name=codfw", "get")},
	}
	if got := fake.calls(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("argv\n got %q\nwant %q", got, want)
	}
}

// With quiet off and an argv prefix (env standing in for sudo -n), and no
// --config (confctl's default config).
func TestConfctlPrefixNoQuietDefaultConfig(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	quiet := false
	c := fake.client(t, func(cfg *ConfctlConfig) {
		cfg.Command = []string{"/usr/bin/env", fake.bin}
		cfg.Config = ""
		cfg.Quiet = &quiet
	})
	if _, err := c.SetPooled(testCtx(t), "apus", "codfw", false); err != nil {
		t.Fatal(err)
	}
	calls := fake.calls(t)
	if len(calls) != 4 {
		t.Fatalf("calls %q", calls)
	}
	set := calls[2]
	wantArgv := []string{"--object-type", "discovery", "select", "dnsdisc=apus,name=codfw", "set/pooled=false"}
	if !reflect.DeepEqual(set.Argv, wantArgv) {
		t.Fatalf("set argv %q, want %q", set.Argv, wantArgv)
	}
	if set.Announce != "!log poolbot@testhost conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw" {
		t.Fatalf("without --quiet confctl announces %q", set.Announce)
	}
	if calls[0].Announce != "" {
		t.Fatalf("get announced %q", calls[0].Announce)
	}
}

func TestConfctlMultipleObjectsSelected(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	ctx := testCtx(t)
	t.Setenv("FAKE_CONFCTL_MODE", "ignore-name") // the name selector matches everything

	if _, err := c.Get(ctx, "apus", "codfw"); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "want exactly one") {
		t.Fatalf("Get: %v", err)
	}
	_, err := c.SetPooled(ctx, "apus", "codfw", false)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("SetPooled: %v", err)
	}
	for _, call := range fake.calls(t) {
		if strings.HasPrefix(call.Argv[len(call.Argv)-1], "set/") {
			t.Fatalf("a set ran although several objects were selected: %q", call.Argv)
		}
	}

	// Were a set to select several objects anyway, confctl's confirmation
	// prompt reads the empty stdin and aborts instead of hanging.
	start := time.Now()
	err = c.set(ctx, "apus", "codfw", false)
	var cerr *ConfctlError
	if !errors.As(err, &cerr) || cerr.ExitCode != 1 || !strings.Contains(err.Error(), "EOFError") {
		t.Fatalf("set with prompt: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("the prompt was waited on")
	}
	for _, dc := range []string{"eqiad", "codfw"} {
		if fields, _ := storedFields(t, srv, etcdtest.DiscoveryKey("apus", dc)); fields["pooled"] != true {
			t.Fatalf("%s changed: %v", dc, fields)
		}
	}
}

func TestConfctlBadOutput(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	t.Setenv("FAKE_CONFCTL_MODE", "garbage")
	_, err := c.Get(testCtx(t), "apus", "codfw")
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfctlMissingObject(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	ctx := testCtx(t)
	// confctl prints nothing and exits 0 when the selector matches nothing.
	if _, err := c.Get(ctx, "apus", "ulsfo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := c.SetPooled(ctx, "apus", "ulsfo", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPooled: %v", err)
	}
	if _, err := c.List(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("List: %v", err)
	}
}

func TestConfctlFailureCarriesStderr(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	t.Setenv("FAKE_CONFCTL_MODE", "fail")
	_, err := c.Get(testCtx(t), "apus", "codfw")
	var cerr *ConfctlError
	if !errors.As(err, &cerr) || cerr.ExitCode != 1 || !strings.Contains(err.Error(), "CRITICAL:conftool:Invalid configuration") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), fake.bin) {
		t.Fatalf("error does not show the command: %v", err)
	}
}

func TestConfctlUsageError(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, func(cfg *ConfctlConfig) { cfg.Command = []string{fake.bin, "--bogus"} })
	_, err := c.Get(testCtx(t), "apus", "codfw")
	var cerr *ConfctlError
	if !errors.As(err, &cerr) || cerr.ExitCode != 2 || !strings.Contains(err.Error(), "unrecognized arguments: --bogus") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfctlTimeout(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, func(cfg *ConfctlConfig) { cfg.Timeout = 300 * time.Millisecond })
	t.Setenv("FAKE_CONFCTL_MODE", "hang")
	start := time.Now()
	_, err := c.Get(testCtx(t), "apus", "codfw")
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestConfctlReadBackMismatch(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	t.Setenv("FAKE_CONFCTL_MODE", "lie") // set says it changed, writes nothing
	_, err := c.SetPooled(testCtx(t), "apus", "codfw", false)
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "read-back") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfctlOutputBounded(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	t.Setenv("FAKE_CONFCTL_MODE", "huge")
	_, err := c.Get(testCtx(t), "apus", "codfw")
	if err == nil || !strings.Contains(err.Error(), "output longer than") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfctlInvalidNamesNeverRun(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	ctx := testCtx(t)
	for _, bad := range []string{"apus.*", "apus|other", "-x", "apus,name=.*", "(apus)", "apus$"} {
		if _, err := c.SetPooled(ctx, bad, "codfw", false); !errors.Is(err, ErrInvalidName) {
			t.Errorf("service %q: %v", bad, err)
		}
		if _, err := c.Get(ctx, "apus", bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("datacenter %q: %v", bad, err)
		}
	}
	if calls := fake.calls(t); len(calls) != 0 {
		t.Fatalf("confctl ran: %q", calls)
	}
}

func TestConfctlNotInstalled(t *testing.T) {
	c, err := NewConfctl(ConfctlConfig{Command: []string{"/nonexistent/confctl"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(testCtx(t), "apus", "codfw")
	var cerr *ConfctlError
	if !errors.As(err, &cerr) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// With confctl there is no watch; WatcherFor polls it.
func TestConfctlPollWatcher(t *testing.T) {
	srv := startApus(t)
	fake := newFakeConfctl(t, srv)
	clock := clockwork.NewFakeClock()
	w := WatcherFor(fake.client(t, nil), time.Minute, Options{Clock: clock, Logger: testLogger(t)})
	if _, ok := w.(*PollWatcher); !ok {
		t.Fatalf("WatcherFor(confctl) = %T", w)
	}
	ch := startWatch(t, w, "apus")
	initialChanges(t, ch, 2)

	srv.PutDiscovery(t, "apus", "eqiad", false)
	if err := clock.BlockUntilContext(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	got := nextChange(t, ch)
	if got.Source != SourceResync || got.Datacenter != "eqiad" || !got.PooledChanged() || got.New.Pooled {
		t.Fatalf("change %s", got)
	}
}
