package leader

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/conftool"
	"poolbot/internal/testenv"
	etcdtest "poolbot/internal/testenv/etcd"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func kvFor(t testing.TB, srv *etcdtest.Server) *conftool.Etcd {
	t.Helper()
	c, err := conftool.NewEtcd(conftool.EtcdConfig{Endpoints: []string{srv.ClientURL}}, conftool.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var testCfg = Config{Key: "/poolbot/leader", TTL: 2 * time.Second, RenewEvery: 500 * time.Millisecond, Poll: 300 * time.Millisecond}

func newLock(t testing.TB, srv *etcdtest.Server, cfg Config, owner string, clock clockwork.Clock) *Lock {
	t.Helper()
	l, err := New(kvFor(t, srv), cfg, Options{Owner: owner, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

func TestTwoContendersOneWins(t *testing.T) {
	srv := etcdFor(t)
	ctx := testCtx(t)
	clockA, clockB := clockwork.NewFakeClock(), clockwork.NewFakeClock()
	a := newLock(t, srv, testCfg, "poolbot@deploy1003 [1]", clockA)
	b := newLock(t, srv, testCfg, "poolbot@deploy2002 [2]", clockB)

	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- b.Acquire(ctx) }()
	// b tried once and waits for its next poll.
	if err := clockB.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !a.IsLeader() || b.IsLeader() {
		t.Fatalf("a leader %t, b leader %t", a.IsLeader(), b.IsLeader())
	}
	h, ok := b.Holder()
	if !ok || h.Owner != "poolbot@deploy1003 [1]" || h.Instance != a.Me().Instance || h.Expires.IsZero() {
		t.Fatalf("standby sees holder %+v (known %t)", h, ok)
	}
	if !strings.Contains(h.String(), "poolbot@deploy1003 [1]") {
		t.Errorf("holder text %q", h)
	}
	// Still held at b's next poll.
	clockB.Advance(testCfg.Poll)
	if err := clockB.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bDone:
		t.Fatalf("b acquired while a holds the lock: %v", err)
	default:
	}

	// a steps down: b takes over at its next poll.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Get(t, testCfg.Key); ok {
		t.Fatal("Release left the key")
	}
	clockB.Advance(testCfg.Poll)
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if h, _ := b.Holder(); !b.IsLeader() || h.Instance != b.Me().Instance {
		t.Fatalf("b after takeover: leader %t holder %+v", b.IsLeader(), h)
	}
}

func TestKill9StandbyTakesOverWithinTTLPlusPoll(t *testing.T) {
	srv := etcdFor(t)
	ctx := testCtx(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+srv.ClientURL, helperEnv+"_KEY="+testCfg.Key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "active ") {
		t.Fatalf("helper: %q %v", line, err)
	}
	helperInstance := strings.TrimSpace(strings.TrimPrefix(line, "active "))

	b := newLock(t, srv, testCfg, "poolbot@deploy2002 [2]", clockwork.NewRealClock())
	bDone := make(chan error, 1)
	go func() { bDone <- b.Acquire(ctx) }()
	testenv.Eventually(t, 20*time.Second, "the standby to see the helper", func() bool { h, ok := b.Holder(); return ok && h.Instance == helperInstance })
	// The helper keeps renewing: well past one ttl, b is still standby.
	select {
	case err := <-bDone:
		t.Fatalf("standby acquired while the holder renews: %v", err)
	case <-time.After(testCfg.TTL + testCfg.Poll):
	}

	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	t.Logf("takeover %s after kill -9 (ttl %s, poll %s)", took, testCfg.TTL, testCfg.Poll)
	// etcd v2 expires keys at its next expiry sweep (every 500 ms) after
	// the ttl, hence the 1 s allowance beyond the contract's ttl + poll.
	if limit := testCfg.TTL + testCfg.Poll + time.Second; took > limit {
		t.Fatalf("takeover took %s, more than ttl + poll (+1s etcd sweep) = %s", took, limit)
	}
	if h, _ := b.Holder(); !b.IsLeader() || h.Owner != "poolbot@deploy2002 [2]" {
		t.Fatalf("after takeover: %+v", h)
	}
}

func TestRenewalMovesExpiry(t *testing.T) {
	srv := etcdFor(t)
	ctx := testCtx(t)
	kv := kvFor(t, srv)
	clock := clockwork.NewFakeClock()
	a := newLock(t, srv, testCfg, "poolbot@deploy1003 [1]", clock)
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := kv.GetKey(ctx, testCfg.Key, false)
	if err != nil || before.Expiration.IsZero() {
		t.Fatalf("key after Acquire: %+v %v (no ttl?)", before, err)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(testCfg.RenewEvery)
	var after conftool.KeyNode
	testenv.Eventually(t, 20*time.Second, "the renewal", func() bool {
		after, err = kv.GetKey(ctx, testCfg.Key, false)
		return err == nil && after.ModifiedIndex > before.ModifiedIndex
	})
	if after.Value != before.Value || !after.Expiration.After(before.Expiration) {
		t.Fatalf("renewal: value %q -> %q, expiration %s -> %s", before.Value, after.Value, before.Expiration, after.Expiration)
	}
	// The holder's own view follows (it updates right after the write).
	testenv.Eventually(t, 20*time.Second, "Holder().Expires to follow the renewal", func() bool { h, _ := a.Holder(); return h.Expires.Equal(after.Expiration) })
	select {
	case <-a.Lost():
		t.Fatal("lost after a good renewal")
	default:
	}
}

func TestLostWhenAnotherInstanceHoldsTheKey(t *testing.T) {
	srv := etcdFor(t)
	ctx := testCtx(t)
	clock := clockwork.NewFakeClock()
	a := newLock(t, srv, testCfg, "poolbot@deploy1003 [1]", clock)
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// E.g. a's key expired during a long stall and another instance wrote
	// its own.
	srv.Put(t, testCfg.Key, `{"owner":"poolbot@deploy2002 [2]","instance":"x","since":"2026-12-07T03:00:00Z"}`)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(testCfg.RenewEvery)
	select {
	case <-a.Lost():
	case <-ctx.Done():
		t.Fatal("Lost not closed after a refused renewal")
	}
	if a.IsLeader() {
		t.Fatal("still leader after losing the key")
	}
	// Release must not delete the other instance's key.
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, ok := srv.Get(t, testCfg.Key); !ok || !strings.Contains(n.Value, "deploy2002") {
		t.Fatal("Release removed another instance's key")
	}
}

func TestLostWhenEtcdUnreachableForTTL(t *testing.T) {
	srv := etcdtest.Start(t) // its own: the test stops it
	ctx := testCtx(t)
	clock := clockwork.NewFakeClock()
	a := newLock(t, srv, testCfg, "poolbot@deploy1003 [1]", clock)
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// Renewals fail; short of a whole ttl the instance stays active.
	for elapsed := time.Duration(0); elapsed+testCfg.RenewEvery < testCfg.TTL; elapsed += testCfg.RenewEvery {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(testCfg.RenewEvery)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !a.IsLeader() {
		t.Fatal("gave up before a whole ttl without renewal")
	}
	clock.Advance(testCfg.RenewEvery)
	select {
	case <-a.Lost():
	case <-ctx.Done():
		t.Fatal("Lost not closed after a whole ttl without renewal")
	}
}

func TestStandbyReportsForeignValue(t *testing.T) {
	srv := etcdFor(t)
	ctx := testCtx(t)
	srv.Put(t, testCfg.Key, "hand-written")
	clock := clockwork.NewFakeClock()
	b := newLock(t, srv, testCfg, "poolbot@deploy2002 [2]", clock)
	done := make(chan error, 1)
	go func() { done <- b.Acquire(ctx) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if h, ok := b.Holder(); !ok || h.Raw != "hand-written" || !strings.Contains(h.String(), "unknown holder") {
		t.Fatalf("holder %+v", h)
	}
	srv.Delete(t, testCfg.Key)
	clock.Advance(testCfg.Poll)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAcquireCancelled(t *testing.T) {
	srv := etcdFor(t)
	srv.Put(t, testCfg.Key, "held")
	b := newLock(t, srv, testCfg, "poolbot@deploy2002 [2]", clockwork.NewFakeClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Acquire(ctx); err == nil || b.IsLeader() {
		t.Fatalf("cancelled Acquire: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := Config{}.withDefaults()
	if d.Key != "/poolbot/leader" || d.TTL != 30*time.Second || d.RenewEvery != 10*time.Second || d.Poll != 5*time.Second {
		t.Fatalf("defaults %+v", d)
	}
	for _, bad := range []Config{
		{Key: "poolbot"}, {Key: "/poolbot/"}, {Key: "/a/../b"}, {Key: "/conftool/v1/x"}, {Key: "/spicerack/locks/x"},
		{TTL: time.Second}, {TTL: 2500 * time.Millisecond},
		{TTL: 10 * time.Second, RenewEvery: 6 * time.Second}, {RenewEvery: -1},
		{Poll: time.Minute}, {Poll: -1},
	} {
		if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), "leader.") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// BenchmarkTryAndRelease: one take (create with ttl) plus release (delete)
// against real etcd; a renewal costs one compare-and-swap write like the
// take.
func BenchmarkTryAndRelease(b *testing.B) {
	srv := etcdFor(b)
	ctx := context.Background()
	kv := kvFor(b, srv)
	for b.Loop() {
		l, err := New(kv, testCfg, Options{Owner: "poolbot@bench [1]", Clock: clockwork.NewFakeClock()})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
