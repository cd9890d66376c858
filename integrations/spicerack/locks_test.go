package spicerack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot/integrations/conftool"
	etcdtest "poolbot/internal/testenv/etcd"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// kvFor is poolbot's etcd client on srv.
func kvFor(t testing.TB, srv *etcdtest.Server) *conftool.Etcd {
	t.Helper()
	c, err := conftool.NewEtcd(conftool.EtcdConfig{Endpoints: []string{srv.ClientURL}}, conftool.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newLocks(t testing.TB, srv *etcdtest.Server, owner string) *Locks {
	t.Helper()
	l, err := New(kvFor(t, srv), Options{Owner: owner, WriterLockTries: 3, WriterLockDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// spicerackValue writes a holder the way spicerack does (Python's
// json.dumps of to_dict(), str() of an aware UTC datetime).
func spicerackValue(id, owner string, concurrency int, created time.Time, ttl int) string {
	return fmt.Sprintf(`{%q: {"concurrency": %d, "created": %q, "owner": %q, "ttl": %d}}`,
		id, concurrency, formatCreatedPython(created), owner, ttl)
}

// formatCreatedPython is str(datetime) spelled out independently of the
// code under test.
func formatCreatedPython(t time.Time) string {
	t = t.UTC()
	if us := t.Nanosecond() / 1000; us != 0 {
		return t.Format("2006-01-02 15:04:05") + fmt.Sprintf(".%06d+00:00", us)
	}
	return t.Format("2006-01-02 15:04:05") + "+00:00"
}

// Python's json.dumps shape of one holder written by poolbot.
var poolbotValue = regexp.MustCompile(`^\{"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}": \{"concurrency": 1, "created": "\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00", "owner": "poolbot@deploy1003 \[4242\]", "ttl": 600\}\}$`)

func TestAcquireReleaseServiceRouteLock(t *testing.T) {
	srv := etcdFor(t)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	ctx := testCtx(t)
	const key = "/spicerack/locks/cookbooks/sre.discovery.service-route:rw"

	lease, err := pb.Acquire(ctx, ServiceRouteRW)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	node, ok := srv.Get(t, key)
	if !ok || !poolbotValue.MatchString(node.Value) {
		t.Fatalf("stored value %q is not spicerack's shape", node.Value)
	}
	if !strings.Contains(node.Value, `"`+lease.ID+`"`) || lease.Expires().Sub(lease.Created) != 10*time.Minute {
		t.Errorf("lease %+v vs value %s", lease, node.Value)
	}
	// The writer lock was released.
	if wl, ok := srv.Get(t, writerLockDir); ok && len(wl.Nodes) != 0 {
		t.Errorf("writer lock keys left behind: %+v", wl.Nodes)
	}

	// A second poolbot (or a cookbook) sees the owner and the expiry.
	other := newLocks(t, srv, "poolbot@deploy2002 [7]")
	_, err = other.Acquire(ctx, ServiceRouteRW)
	var he *HeldError
	if !errors.As(err, &he) || len(he.Holders) != 1 || he.Holders[0].Owner != "poolbot@deploy1003 [4242]" ||
		!he.Until().Equal(lease.Expires()) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "poolbot@deploy1003 [4242]") {
		t.Fatalf("second Acquire: %v", err)
	}
	if err := other.Check(ctx, ServiceRouteRW); !errors.Is(err, ErrHeld) {
		t.Fatalf("Check: %v", err)
	}
	if after, _ := srv.Get(t, key); after.Value != node.Value {
		t.Errorf("refused Acquire changed the value:\n%s\n%s", node.Value, after.Value)
	}

	if err := pb.Release(ctx, lease); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, ok := srv.Get(t, key); ok {
		t.Fatal("key left after the last holder released (spicerack deletes it)")
	}
	if err := other.Check(ctx, ServiceRouteRW); err != nil {
		t.Fatalf("Check after release: %v", err)
	}
	// Releasing twice is harmless.
	if err := pb.Release(ctx, lease); err != nil {
		t.Fatalf("second Release: %v", err)
	}
}

func TestCookbookHoldsServiceRouteLock(t *testing.T) {
	srv := etcdFor(t)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	key := ServiceRouteRW.Key()
	created := time.Now().Add(-time.Minute).UTC()
	value := spicerackValue("4e2677c7-541a-4f9e-afbb-cfdb69c440a1", "jdoe@cumin1003 [12345]", 1, created, 600)
	srv.Put(t, key, value)

	err := pb.Check(testCtx(t), ServiceRouteRW)
	var he *HeldError
	if !errors.As(err, &he) {
		t.Fatalf("Check with a cookbook holding the lock: %v", err)
	}
	h := he.Holders[0]
	if h.Owner != "jdoe@cumin1003 [12345]" || !h.Expires().Equal(created.Truncate(time.Microsecond).Add(10*time.Minute)) {
		t.Fatalf("holder %+v", h)
	}
	if _, err := pb.Acquire(testCtx(t), ServiceRouteRW); !errors.Is(err, ErrHeld) {
		t.Fatalf("Acquire: %v", err)
	}
	if node, _ := srv.Get(t, key); node.Value != value {
		t.Fatalf("value changed:\n%s\n%s", value, node.Value)
	}
}

func TestExpiredHolderIsReaped(t *testing.T) {
	srv := etcdFor(t)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	key := ServiceRouteRW.Key()
	// A cookbook that died two hours ago with ttl 600.
	srv.Put(t, key, spicerackValue("4e2677c7-541a-4f9e-afbb-cfdb69c440a1", "jdoe@cumin1003 [12345]", 1, time.Now().Add(-2*time.Hour), 600))
	st, err := pb.Inspect(testCtx(t), ServiceRouteRW)
	if err != nil || len(st.Holders) != 1 || len(st.Live(time.Now())) != 0 {
		t.Fatalf("Inspect: %+v %v", st, err)
	}
	if err := pb.Check(testCtx(t), ServiceRouteRW); err != nil {
		t.Fatalf("Check with only an expired holder: %v", err)
	}
	lease, err := pb.Acquire(testCtx(t), ServiceRouteRW)
	if err != nil {
		t.Fatalf("Acquire over an expired holder: %v", err)
	}
	node, _ := srv.Get(t, key)
	if !poolbotValue.MatchString(node.Value) || !strings.Contains(node.Value, lease.ID) {
		t.Fatalf("expired holder not reaped: %s", node.Value)
	}
}

func TestMalformedLockKeepsGateClosed(t *testing.T) {
	srv := etcdFor(t)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	key := ServiceRouteRW.Key()
	for _, v := range []string{"locked by jdoe", `{"x": {"owner": "jdoe"}}`, `[]`} {
		srv.Put(t, key, v)
		for name, err := range map[string]error{
			"Check":   pb.Check(testCtx(t), ServiceRouteRW),
			"Acquire": func() error { _, err := pb.Acquire(testCtx(t), ServiceRouteRW); return err }(),
		} {
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), key) || strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("%s on %q: %v; want a one-line malformed error naming %s", name, v, err, key)
			}
		}
		if node, _ := srv.Get(t, key); node.Value != v {
			t.Errorf("malformed value overwritten: %q", node.Value)
		}
	}
}

func TestRegistryRollRestartCookbookLock(t *testing.T) {
	srv := etcdFor(t)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	const key = "/spicerack/locks/cookbooks/sre.misc-clusters.roll-restart-reboot-docker-registry"
	if RegistryRollRestart.Key() != key {
		t.Fatalf("key %s", RegistryRollRestart.Key())
	}
	// The cookbook takes its automatic lock with the defaults (20, 1800).
	srv.Put(t, key, spicerackValue("0b7d0c4e-8f43-4a3b-9d36-2f6f0c1b9e11", "jdoe@cumin2002 [999]", 20, time.Now(), 1800))
	if err := pb.Check(testCtx(t), RegistryRollRestart); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "jdoe@cumin2002 [999]") {
		t.Fatalf("Check with the cookbook running: %v", err)
	}
	srv.Delete(t, key)
	lease, err := pb.Acquire(testCtx(t), RegistryRollRestart)
	if err != nil {
		t.Fatal(err)
	}
	// While poolbot holds it, the cookbook's own admission (20) refuses.
	st, err := pb.Inspect(testCtx(t), RegistryRollRestart)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admit(st, Holder{ID: "cookbook", Concurrency: 20, Created: time.Now(), TTL: 1800 * time.Second}, time.Now()); !errors.Is(err, ErrHeld) {
		t.Fatalf("cookbook admitted while poolbot holds the lock: %v", err)
	}
	if err := pb.Release(testCtx(t), lease); err != nil {
		t.Fatal(err)
	}
}

func TestWriterLockHeldByAnotherWriter(t *testing.T) {
	srv := etcdFor(t)
	kv := kvFor(t, srv)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	// Another spicerack holds the writer lock (python-etcd's in-order key).
	other, err := kv.CreateInOrderKey(testCtx(t), writerLockDir, "0123456789abcdef0123456789abcdef", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.Acquire(testCtx(t), ServiceRouteRW)
	var busy *WriterLockBusyError
	if !errors.As(err, &busy) || busy.Holder != other.Key || busy.Tries != 3 {
		t.Fatalf("Acquire with the writer lock taken: %v", err)
	}
	if _, ok := srv.Get(t, ServiceRouteRW.Key()); ok {
		t.Fatal("lock written without the writer lock")
	}
	if dir, _ := srv.Get(t, writerLockDir); len(dir.Nodes) != 1 {
		t.Fatalf("poolbot left its queued writer keys: %+v", dir.Nodes)
	}
	// A writer that died: its key expires by its ttl and poolbot gets in.
	srv.Delete(t, other.Key)
	if _, err := kv.CreateInOrderKey(testCtx(t), writerLockDir, "dead", time.Second); err != nil {
		t.Fatal(err)
	}
	patient, err := New(kv, Options{Owner: "poolbot@deploy1003 [4242]", WriterLockTries: 30, WriterLockDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := patient.Acquire(testCtx(t), ServiceRouteRW); err != nil {
		t.Fatalf("Acquire after the dead writer's key expired: %v", err)
	}
}

func TestTwoPoolbotsRaceForTheLock(t *testing.T) {
	srv := etcdFor(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		l, err := New(kvFor(t, srv), Options{Owner: fmt.Sprintf("poolbot@deploy%d [1]", i), WriterLockTries: 50, WriterLockDelay: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.Acquire(testCtx(t), ServiceRouteRW)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrHeld):
			t.Errorf("contender failed otherwise: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d contenders hold a concurrency-1 lock", won)
	}
}

func TestRefresh(t *testing.T) {
	srv := etcdFor(t)
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	lease, err := pb.Acquire(testCtx(t), ServiceRouteRW)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	refreshed, err := pb.Refresh(testCtx(t), lease)
	if err != nil || !refreshed.Created.After(lease.Created) {
		t.Fatalf("Refresh: %+v %v", refreshed, err)
	}
	st, _ := pb.Inspect(testCtx(t), ServiceRouteRW)
	if len(st.Holders) != 1 || !st.Holders[0].Created.Equal(refreshed.Created) {
		t.Fatalf("stored %+v", st.Holders)
	}
	srv.Delete(t, ServiceRouteRW.Key())
	if _, err := pb.Refresh(testCtx(t), refreshed); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Refresh of a reaped lease: %v", err)
	}
}

func TestEtcdDown(t *testing.T) {
	srv := etcdtest.Start(t) // its own: the test stops it
	pb := newLocks(t, srv, "poolbot@deploy1003 [4242]")
	srv.Stop()
	err := pb.Check(testCtx(t), ServiceRouteRW)
	if err == nil || errors.Is(err, ErrHeld) || errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), ServiceRouteRW.Key()) {
		t.Fatalf("Check with etcd down: %v", err)
	}
	if _, err := pb.Acquire(testCtx(t), ServiceRouteRW); err == nil {
		t.Fatal("Acquire with etcd down succeeded")
	}
}

func TestSpecValidate(t *testing.T) {
	for _, s := range []Spec{
		{Prefix: "modules", Name: "x", Concurrency: 1, TTL: time.Minute},
		{Prefix: PrefixCookbooks, Name: "a/b", Concurrency: 1, TTL: time.Minute},
		{Prefix: PrefixCookbooks, Name: "", Concurrency: 1, TTL: time.Minute},
		{Prefix: PrefixCookbooks, Name: "x", Concurrency: -1, TTL: time.Minute},
		{Prefix: PrefixCookbooks, Name: "x", Concurrency: 1, TTL: 1500 * time.Millisecond},
	} {
		if s.Validate() == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if _, err := New(nil, Options{Owner: "a\nb"}); err == nil {
		t.Error("owner with a newline accepted")
	}
	if o := DefaultOwner(); !regexp.MustCompile(`^[^@]+@[^. ]+ \[` + fmt.Sprint(os.Getpid()) + `\]$`).MatchString(o) {
		t.Errorf("DefaultOwner %q", o)
	}
}

// BenchmarkAcquireRelease: one lock cycle (writer lock + read + write +
// writer unlock, twice) against real etcd on loopback.
func BenchmarkAcquireRelease(b *testing.B) {
	srv := etcdFor(b)
	pb := newLocks(b, srv, "poolbot@deploy1003 [4242]")
	ctx := context.Background()
	for b.Loop() {
		lease, err := pb.Acquire(ctx, ServiceRouteRW)
		if err != nil {
			b.Fatal(err)
		}
		if err := pb.Release(ctx, lease); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck: the read-only gate check.
func BenchmarkCheck(b *testing.B) {
	srv := etcdFor(b)
	srv.Put(b, RegistryRollRestart.Key(), spicerackValue("0b7d0c4e-8f43-4a3b-9d36-2f6f0c1b9e11", "jdoe@cumin2002 [999]", 20, time.Now(), 1800))
	pb := newLocks(b, srv, "poolbot@deploy1003 [4242]")
	ctx := context.Background()
	for b.Loop() {
		if err := pb.Check(ctx, RegistryRollRestart); !errors.Is(err, ErrHeld) {
			b.Fatal(err)
		}
	}
}
