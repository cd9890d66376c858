package scap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/logmsgbot"
	"poolbot/internal/secret"
)

// All three sources through New: a real scap holder on the lock files, a
// relayed Started line, and a SpiderPig that refuses poolbot's cookie. The
// caller gets every reason AND learns which source could not be read.
func TestNewCombinesSourcesAndReportsFailures(t *testing.T) {
	global, staging := lockDir(t)
	if err := os.WriteFile(global, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	// One scap command holds both files, as scap does: global shared,
	// staging exclusive with its JSON. Two helpers stand in for it here
	// (a process cannot be two holders in a test), so two reasons result.
	shared := startHolder(t, "hold-shared", global)
	excl := startHolder(t, "hold-exclusive", staging, "jdoe", "Backport for [[gerrit:1101577|Fix foo (T123456)]]")

	srv := newFakeSpiderPig(t, "running")
	cookie := filepath.Join(t.TempDir(), "cookie")
	os.WriteFile(cookie, []byte("spiderpig_session=expired\n"), 0o600)

	clock := clockwork.NewFakeClockAt(time.Date(2026, 4, 2, 14, 2, 10, 0, time.UTC))
	s, err := New(Config{
		Locks:       LocksConfig{Files: []string{global, staging}},
		DeployBlock: DeployBlockConfig{GlobalLock: global},
		SpiderPig:   SpiderPigConfig{URL: srv.URL, Cookie: secret.Ref{File: cookie}},
	}, Options{Clock: clock, Relay: logmsgbot.New(logmsgbot.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	s.Tracker.Observe(Sender{Nick: "logmsgbot"}, "!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]")

	act, err := s.Monitor.Check(context.Background())
	var se *SourceError
	if !errors.As(err, &se) || se.Source != SourceSpiderPig || !errors.Is(err, ErrSpiderPigAuth) {
		t.Fatalf("err = %v, want the spiderpig source to fail with ErrSpiderPigAuth", err)
	}
	if act.Clear() || !act.Busy || len(act.Failed) != 1 || act.Failed[0].Source != SourceSpiderPig {
		t.Fatalf("%+v", act)
	}
	var sources []string
	for _, r := range act.Reasons {
		sources = append(sources, string(r.Source))
	}
	if strings.Join(sources, ",") != "lock,lock,channel" {
		t.Fatalf("reasons %v: %+v", sources, act.Reasons)
	}
	sh, ex := act.Reasons[0], act.Reasons[1]
	if sh.PID != shared.pid || sh.Who != currentUserName(t) || !strings.Contains(sh.What, "scap is deploying") || !strings.Contains(sh.What, "scap-global-lock shared") || sh.Since.IsZero() {
		t.Errorf("shared holder reason %+v", sh)
	}
	if ex.PID != excl.pid || ex.Who != "jdoe" || !strings.Contains(ex.What, "Backport for [[gerrit:1101577|Fix foo (T123456)]]") || !strings.Contains(ex.What, "scap.srv_mediawiki-staging.lock exclusive") {
		t.Errorf("exclusive holder reason %+v", ex)
	}
	if len(act.Locks) != 2 || act.Locks[1].Info == nil {
		t.Errorf("raw statuses %+v", act.Locks)
	}
	if sum := act.Summary(); !strings.Contains(sum, "pid "+strconv.Itoa(excl.pid)) || !strings.Contains(sum, "SpiderPig refused the credentials") {
		t.Errorf("summary %q", sum)
	}

	// Poolbot cannot block while scap runs; once scap is done it can.
	if _, err := s.Blocker.Block(context.Background(), "poolbot #42: depool apus in codfw"); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("Block: %v", err)
	}
	shared.stop()
	excl.stop()
	release, err := s.Blocker.Block(context.Background(), "poolbot #42: depool apus in codfw")
	if err != nil {
		t.Fatal(err)
	}
	defer release(context.Background())
	act, _ = s.Monitor.Check(context.Background())
	if len(act.Own) != 1 || len(act.Reasons) != 1 || act.Reasons[0].Source != SourceChannel {
		t.Fatalf("while blocked: %+v", act)
	}
}

func TestMonitorFailsClosedWhenNoLockFileExists(t *testing.T) {
	global, staging := lockDir(t)
	m := NewMonitor(MonitorOptions{Locks: NewLocks(LocksOptions{}), LockFiles: []string{global, staging}})
	act, err := m.Check(context.Background())
	if err == nil || act.Clear() || !strings.Contains(err.Error(), "is poolbot running on the deploy host") {
		t.Fatalf("%+v %v", act, err)
	}
	m = NewMonitor(MonitorOptions{Locks: NewLocks(LocksOptions{}), LockFiles: []string{global, staging}, AllowMissing: true})
	if act, err := m.Check(context.Background()); err != nil || !act.Clear() {
		t.Fatalf("allow_missing: %+v %v", act, err)
	}
}

func TestMonitorUnreadableLockFile(t *testing.T) {
	global, _ := lockDir(t)
	if err := os.Mkdir(global, 0o755); err != nil { // a directory where the lock file should be
		t.Fatal(err)
	}
	m := NewMonitor(MonitorOptions{Locks: NewLocks(LocksOptions{}), LockFiles: []string{global}})
	act, err := m.Check(context.Background())
	var se *SourceError
	if !errors.As(err, &se) || se.Source != SourceLock || act.Clear() {
		t.Fatalf("%+v %v", act, err)
	}
}

func BenchmarkProbe(b *testing.B) {
	global, staging := lockDir(b)
	os.WriteFile(global, []byte("{}"), 0o666)
	locks := NewLocks(LocksOptions{})
	ctx := context.Background()
	b.Run("free", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := locks.Probe(ctx, global); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("missing", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			locks.Probe(ctx, staging)
		}
	})
	b.Run("held-exclusive-with-json", func(b *testing.B) {
		startHolder(b, "hold-exclusive", staging, "jdoe", "Backport for [[gerrit:1101577|Fix foo (T123456)]]")
		b.ReportAllocs()
		for b.Loop() {
			if st, err := locks.Probe(ctx, staging); err != nil || !st.Held() {
				b.Fatal(st, err)
			}
		}
	})
	b.Run("own-block", func(b *testing.B) {
		own := NewLocks(LocksOptions{GlobalLock: global})
		release, err := own.Block(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		defer release(ctx)
		b.ReportAllocs()
		for b.Loop() {
			own.Probe(ctx, global)
		}
	})
}
