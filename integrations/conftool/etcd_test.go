package conftool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"poolbot/internal/secret"
	etcdtest "poolbot/internal/testenv/etcd"
)

func TestEtcdGetSetReadBack(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	ctx := testCtx(t)

	st, err := c.Get(ctx, "apus", "codfw")
	if err != nil {
		t.Fatal(err)
	}
	_, idx := storedFields(t, srv, etcdtest.DiscoveryKey("apus", "codfw"))
	want := State{Pooled: true, TTL: 300, References: []string{}, ModifiedIndex: idx}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("Get = %+v, want %+v", st, want)
	}

	st, err = c.SetPooled(ctx, "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	fields, idx := storedFields(t, srv, etcdtest.DiscoveryKey("apus", "codfw"))
	if st.Pooled || st.ModifiedIndex != idx {
		t.Fatalf("SetPooled returned %+v; etcd holds %v at index %d", st, fields, idx)
	}
	wantFields := map[string]any{"pooled": false, "references": []any{}, "ttl": float64(300)}
	if !reflect.DeepEqual(fields, wantFields) {
		t.Fatalf("stored %v, want %v", fields, wantFields)
	}

	all, err := c.List(ctx, "apus")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all["codfw"].Pooled || !all["eqiad"].Pooled {
		t.Fatalf("List = %+v", all)
	}
	if got := PooledDatacenters(all); !reflect.DeepEqual(got, []string{"eqiad"}) {
		t.Fatalf("PooledDatacenters = %v", got)
	}

	st, err = c.SetPooled(ctx, "apus", "codfw", true)
	if err != nil || !st.Pooled {
		t.Fatalf("re-pool: %+v, %v", st, err)
	}
}

func TestEtcdKeepsUnknownFields(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	key := etcdtest.DiscoveryKey("apus", "codfw")
	srv.Put(t, key, `{"pooled": true, "references": ["a", "b"], "ttl": 60, "note": "keep <me> & co", "nested": {"x": [1, 2.5, null]}}`)
	srv.PutDiscovery(t, "apus", "eqiad", true)
	c := etcdClientFor(t, srv)

	st, err := c.SetPooled(testCtx(t), "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL != 60 || !reflect.DeepEqual(st.References, []string{"a", "b"}) {
		t.Fatalf("state %+v", st)
	}
	fields, _ := storedFields(t, srv, key)
	want := map[string]any{"pooled": false, "references": []any{"a", "b"}, "ttl": float64(60),
		"note": "keep <me> & co", "nested": map[string]any{"x": []any{float64(1), 2.5, nil}}}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("stored %v\nwant   %v", fields, want)
	}
	node, _ := srv.Get(t, key)
	if !strings.Contains(node.Value, `"keep <me> & co"`) {
		t.Fatalf("unknown string field was re-escaped: %s", node.Value)
	}
}

func TestEtcdCompareAndSwapConflictRetries(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	key := etcdtest.DiscoveryKey("apus", "codfw")
	var attempts []int
	c.beforeWrite = func(attempt int) {
		attempts = append(attempts, attempt)
		if attempt == 1 {
			// Someone runs confctl between poolbot's read and its write.
			srv.Put(t, key, `{"pooled": true, "references": [], "ttl": 10, "by": "operator"}`)
		}
	}
	st, err := c.SetPooled(testCtx(t), "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(attempts, []int{1, 2}) {
		t.Fatalf("attempts %v, want [1 2]", attempts)
	}
	fields, idx := storedFields(t, srv, key)
	// The retry merged into the value the other writer stored.
	want := map[string]any{"pooled": false, "references": []any{}, "ttl": float64(10), "by": "operator"}
	if !reflect.DeepEqual(fields, want) || st.TTL != 10 || st.ModifiedIndex != idx {
		t.Fatalf("stored %v (index %d), returned %+v", fields, idx, st)
	}
}

func TestEtcdCompareAndSwapGivesUp(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	attempts := 0
	c.beforeWrite = func(int) {
		attempts++
		srv.PutDiscovery(t, "apus", "codfw", true)
	}
	_, err := c.SetPooled(testCtx(t), "apus", "codfw", false)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if attempts != maxCASAttempts {
		t.Fatalf("%d attempts, want %d", attempts, maxCASAttempts)
	}
	if fields, _ := storedFields(t, srv, etcdtest.DiscoveryKey("apus", "codfw")); fields["pooled"] != true {
		t.Fatalf("stored %v", fields)
	}
}

func TestEtcdMissingObject(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	ctx := testCtx(t)

	_, err := c.Get(ctx, "apus", "ulsfo")
	var ee *EtcdError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &ee) || ee.Code != 100 || ee.Message != "Key not found" {
		t.Fatalf("Get missing: %v", err)
	}
	if !strings.Contains(err.Error(), "/conftool/v1/discovery/apus/ulsfo") {
		t.Fatalf("error does not name the key: %v", err)
	}
	if _, err := c.SetPooled(ctx, "apus", "ulsfo", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPooled missing: %v", err)
	}
	if _, ok := srv.Get(t, etcdtest.DiscoveryKey("apus", "ulsfo")); ok {
		t.Fatal("SetPooled created a discovery object")
	}
	if _, err := c.List(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("List missing service: %v", err)
	}
	if _, err := c.SetPooled(ctx, "nosuch", "eqiad", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPooled missing service: %v", err)
	}
}

func TestEtcdLastPooledGuard(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	srv.PutDiscovery(t, "apus", "eqiad", false)
	idx := srv.PutDiscovery(t, "apus", "codfw", true)
	c := etcdClientFor(t, srv)
	ctx := testCtx(t)

	st, err := c.SetPooled(ctx, "apus", "codfw", false)
	if !errors.Is(err, ErrLastPooled) {
		t.Fatalf("err = %v, want ErrLastPooled", err)
	}
	if !strings.Contains(err.Error(), "Services apus cannot be depooled as they are only active in codfw") {
		t.Fatalf("message: %v", err)
	}
	if !st.Pooled {
		t.Fatalf("returned state %+v", st)
	}
	if node, _ := srv.Get(t, etcdtest.DiscoveryKey("apus", "codfw")); node.ModifiedIndex != idx {
		t.Fatal("the refused depool wrote to etcd")
	}
	// Depooling what is already depooled changes nothing and is allowed.
	if _, err := c.SetPooled(ctx, "apus", "eqiad", false); err != nil {
		t.Fatal(err)
	}
}

func TestEtcdConcurrentDepoolIsReverted(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	c.beforeWrite = func(attempt int) {
		// Someone depools eqiad after poolbot's guard saw it pooled.
		srv.PutDiscovery(t, "apus", "eqiad", false)
	}
	_, err := c.SetPooled(testCtx(t), "apus", "codfw", false)
	if !errors.Is(err, ErrLastPooled) || !strings.Contains(err.Error(), "re-pooled") {
		t.Fatalf("err = %v", err)
	}
	if fields, _ := storedFields(t, srv, etcdtest.DiscoveryKey("apus", "codfw")); fields["pooled"] != true {
		t.Fatalf("codfw not re-pooled: %v", fields)
	}
	// Both writes are named, so that the drift watch knows them as
	// poolbot's own.
	var lp *LastPooledError
	node, _ := srv.Get(t, etcdtest.DiscoveryKey("apus", "codfw"))
	if !errors.As(err, &lp) || lp.Depool == 0 || lp.Repool != node.ModifiedIndex || lp.Depool >= lp.Repool {
		t.Fatalf("error %#v; object's index %d", lp, node.ModifiedIndex)
	}
}

func TestEtcdReadBackMismatch(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	c.afterWrite = func() { srv.PutDiscovery(t, "apus", "codfw", true) }
	_, err := c.SetPooled(testCtx(t), "apus", "codfw", false)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("err = %v, want ErrVerify", err)
	}
}

func TestEtcdUnreadableValue(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	key := etcdtest.DiscoveryKey("apus", "codfw")
	idx := srv.Put(t, key, `{"pooled": "yes", "weight": 10}`)
	c := etcdClientFor(t, srv)
	ctx := testCtx(t)
	if _, err := c.Get(ctx, "apus", "codfw"); err == nil || !strings.Contains(err.Error(), "not a JSON boolean") {
		t.Fatalf("Get: %v", err)
	}
	if _, err := c.SetPooled(ctx, "apus", "codfw", false); err == nil {
		t.Fatal("SetPooled overwrote an unreadable value")
	}
	// eqiad cannot be depooled either: codfw's state is unknown.
	if _, err := c.SetPooled(ctx, "apus", "eqiad", false); err == nil || !strings.Contains(err.Error(), "cannot check") {
		t.Fatalf("depool eqiad: %v", err)
	}
	if node, _ := srv.Get(t, key); node.ModifiedIndex != idx {
		t.Fatal("value was rewritten")
	}
}

func TestEtcdInvalidNamesNeverReachEtcd(t *testing.T) {
	t.Parallel()
	// No server: a name that passed validation would fail with a connection
	// error instead of ErrInvalidName.
	c := newEtcdClient(t, EtcdConfig{Endpoints: []string{"http://127.0.0.1:1"}})
	ctx := testCtx(t)
	for _, bad := range []string{"", "apus/../x", "apus.*", "Apus", "-apus", "apus codfw", "a\nb", strings.Repeat("a", 64)} {
		if _, err := c.Get(ctx, bad, "codfw"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(%q): %v", bad, err)
		}
		if _, err := c.SetPooled(ctx, "apus", bad, false); !errors.Is(err, ErrInvalidName) {
			t.Errorf("SetPooled dc %q: %v", bad, err)
		}
	}
}

func TestEtcdEndpointFailover(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	dead := "http://127.0.0.1:1"
	c := newEtcdClient(t, EtcdConfig{Endpoints: []string{dead, srv.ClientURL}})
	ctx := testCtx(t)
	if _, err := c.SetPooled(ctx, "apus", "codfw", false); err != nil {
		t.Fatal(err)
	}
	if c.preferred.Load() != 1 {
		t.Fatalf("preferred endpoint %d, want 1", c.preferred.Load())
	}

	allDead := newEtcdClient(t, EtcdConfig{Endpoints: []string{dead, "http://127.0.0.1:2"}})
	_, err := allDead.Get(ctx, "apus", "codfw")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Fatalf("err = %v", err)
	}
}

func TestEtcdBasicAuth(t *testing.T) {
	srv := startApus(t)
	const password = "s3cret-pw"
	srv.EnableAuth(t, password)
	ctx := testCtx(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("wrong-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	anon := etcdClientFor(t, srv)
	if _, err := anon.Get(ctx, "apus", "codfw"); err == nil {
		t.Fatal("anonymous read succeeded with auth enabled")
	}
	wrong := newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL}, Username: "root", Password: secret.Ref{File: bad}})
	_, err := wrong.Get(ctx, "apus", "codfw")
	if err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("wrong password: %v", err)
	}
	authed := newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL}, Username: "root", Password: secret.Ref{File: good}})
	if _, err := authed.SetPooled(ctx, "apus", "codfw", false); err != nil {
		t.Fatal(err)
	}

	t.Setenv("POOLBOT_TEST_ETCD_PW", password)
	fromEnv := newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL}, Username: "root", Password: secret.Ref{Env: "POOLBOT_TEST_ETCD_PW"}})
	if st, err := fromEnv.Get(ctx, "apus", "codfw"); err != nil || st.Pooled {
		t.Fatalf("password from env: %+v, %v", st, err)
	}
}

func TestEtcdTLS(t *testing.T) {
	t.Parallel()
	srv := startApus(t, etcdtest.WithTLS())
	ctx := testCtx(t)
	c := newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL}, CAFile: srv.CAFile})
	if _, err := c.SetPooled(ctx, "apus", "codfw", false); err != nil {
		t.Fatal(err)
	}
	untrusted := newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL}})
	if _, err := untrusted.Get(ctx, "apus", "codfw"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v", err)
	}
}

func TestEtcdCustomPrefix(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	srv.Put(t, "/other/v2/discovery/apus/eqiad", `{"pooled": true, "references": [], "ttl": 300}`)
	c := newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL + "/"}, Prefix: "/other/v2"})
	st, err := c.Get(testCtx(t), "apus", "eqiad")
	if err != nil || !st.Pooled {
		t.Fatalf("%+v, %v", st, err)
	}
}

func BenchmarkEtcdGet(b *testing.B) {
	srv := startApus(b)
	c := newEtcdClient(b, EtcdConfig{Endpoints: []string{srv.ClientURL}})
	c.logger = testLoggerDiscard()
	ctx := testCtx(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "apus", "codfw"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEtcdGetSetRoundTrip is one pool/depool as the procedure does it:
// Get, then SetPooled (quorum list, CAS write, list read-back).
func BenchmarkEtcdGetSetRoundTrip(b *testing.B) {
	srv := startApus(b)
	c := newEtcdClient(b, EtcdConfig{Endpoints: []string{srv.ClientURL}})
	c.logger = testLoggerDiscard()
	ctx := testCtx(b)
	pooled := false
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "apus", "codfw"); err != nil {
			b.Fatal(err)
		}
		if _, err := c.SetPooled(ctx, "apus", "codfw", pooled); err != nil {
			b.Fatal(fmt.Errorf("set %t: %w", pooled, err))
		}
		pooled = !pooled
	}
}
