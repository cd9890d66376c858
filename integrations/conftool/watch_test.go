package conftool

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/internal/testenv"
	etcdtest "poolbot/internal/testenv/etcd"
)

// changeTimeout bounds how long a test waits for a change from a real etcd.
const changeTimeout = 10 * time.Second

// startWatch starts w and stops it (draining the channel until the watcher
// goroutine has exited) when the test ends.
func startWatch(t *testing.T, w Watcher, service string) <-chan Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := w.Watch(ctx, service)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	return ch
}

// nextChange waits for the next change, bounded.
func nextChange(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		t.Logf("change: %s", c)
		return c
	case <-time.After(changeTimeout):
		t.Fatalf("no change within %s", changeTimeout)
	}
	return Change{}
}

// nextChangeFor skips changes until one for dc (or, with dc "", an error).
func nextChangeFor(t *testing.T, ch <-chan Change, dc string, source ChangeSource) Change {
	t.Helper()
	deadline := time.After(changeTimeout)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed")
			}
			t.Logf("change: %s", c)
			if c.Datacenter == dc && c.Source == source {
				return c
			}
		case <-deadline:
			t.Fatalf("no %s change for %q within %s", source, dc, changeTimeout)
		}
	}
}

func initialChanges(t *testing.T, ch <-chan Change, n int) map[string]Change {
	t.Helper()
	got := map[string]Change{}
	for range n {
		c := nextChange(t, ch)
		if c.Source != SourceInitial || c.Old != nil || c.New == nil {
			t.Fatalf("initial change %s", c)
		}
		got[c.Datacenter] = c
	}
	return got
}

func TestWatchSeesWritesStraightToEtcd(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	ch := startWatch(t, c, "apus")

	initial := initialChanges(t, ch, 2)
	if !initial["eqiad"].New.Pooled || !initial["codfw"].New.Pooled {
		t.Fatalf("initial %v", initial)
	}

	// An operator runs confctl: the write goes straight to etcd.
	idx := srv.PutDiscovery(t, "apus", "codfw", false)
	got := nextChange(t, ch)
	if got.Source != SourceEvent || got.Datacenter != "codfw" || got.Old == nil || !got.Old.Pooled ||
		got.New == nil || got.New.Pooled || got.ModifiedIndex != idx || !got.PooledChanged() {
		t.Fatalf("change %+v, want codfw pooled true => false at %d", got, idx)
	}

	// poolbot's own write shows up with the index SetPooled returned, so a
	// drift watcher can tell it from someone else's.
	st, err := c.SetPooled(testCtx(t), "apus", "codfw", true)
	if err != nil {
		t.Fatal(err)
	}
	got = nextChange(t, ch)
	if got.Source != SourceEvent || got.ModifiedIndex != st.ModifiedIndex || !got.New.Pooled {
		t.Fatalf("change %+v, want the write at %d", got, st.ModifiedIndex)
	}

	// A write that changes nothing is still an event, but not a flip.
	srv.PutDiscovery(t, "apus", "codfw", true)
	if got = nextChange(t, ch); got.PooledChanged() {
		t.Fatalf("rewrite reported as a flip: %s", got)
	}

	// Garbage and deletion.
	srv.Put(t, etcdtest.DiscoveryKey("apus", "codfw"), "not json")
	if got = nextChange(t, ch); got.Err == nil || got.New != nil {
		t.Fatalf("garbage: %s", got)
	}
	srv.Delete(t, etcdtest.DiscoveryKey("apus", "eqiad"))
	if got = nextChange(t, ch); !got.Deleted || got.Datacenter != "eqiad" || !got.PooledChanged() {
		t.Fatalf("delete: %s", got)
	}
	// Keys of other services are not reported.
	srv.PutDiscovery(t, "other", "eqiad", false)
	srv.PutDiscovery(t, "apus", "eqiad", true)
	if got = nextChange(t, ch); got.Datacenter != "eqiad" || got.Old != nil || !got.New.Pooled {
		t.Fatalf("re-created: %s", got)
	}
}

func TestWatchSurvivesEtcdRestart(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	c.backoffMin, c.backoffMax = 50*time.Millisecond, 400*time.Millisecond
	ch := startWatch(t, c, "apus")
	initialChanges(t, ch, 2)

	srv.Stop()
	lost := nextChange(t, ch)
	if lost.Source != SourceError || lost.Err == nil {
		t.Fatalf("after stop: %s", lost)
	}
	srv.Restart()

	// The watcher reconnects by itself; a write after the restart is seen.
	// It may arrive as an event, or through the resync if the write beats the
	// reconnect.
	idx := srv.PutDiscovery(t, "apus", "codfw", false)
	for {
		got := nextChange(t, ch)
		if got.Source == SourceError {
			continue // more failures reported before the restart finished
		}
		if got.Datacenter != "codfw" || got.New == nil || got.New.Pooled || got.ModifiedIndex != idx || !got.PooledChanged() {
			t.Fatalf("after restart: %s", got)
		}
		break
	}
	// And it keeps watching.
	srv.PutDiscovery(t, "apus", "eqiad", false)
	if got := nextChangeFor(t, ch, "eqiad", SourceEvent); got.New.Pooled {
		t.Fatalf("second change: %s", got)
	}
}

// TestWatchOutdatedIndexResyncs forces etcd's errorCode 401: between two
// polls, apus/codfw changes and then 1001 other writes push that change out
// of etcd's 1000-event history. The next poll is refused and the watcher must
// find the change by re-reading.
func TestWatchOutdatedIndexResyncs(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	paused := make(chan chan struct{})
	testDone := make(chan struct{})
	t.Cleanup(func() { close(testDone) })
	var polls atomic.Int32
	c.beforePoll = func(uint64) {
		if polls.Add(1) != 1 {
			return
		}
		resume := make(chan struct{})
		select {
		case paused <- resume:
			<-resume
		case <-testDone:
		}
	}
	ch := startWatch(t, c, "apus")
	initialChanges(t, ch, 2)

	resume := <-paused // the watcher is about to issue its first poll
	idx := srv.PutDiscovery(t, "apus", "codfw", false)
	srv.FillHistory(t, 1001)
	close(resume)

	got := nextChange(t, ch)
	if got.Source != SourceResync || got.Datacenter != "codfw" || got.Old == nil || !got.Old.Pooled ||
		got.New == nil || got.New.Pooled || got.ModifiedIndex != idx {
		t.Fatalf("change %s, want a resync of codfw true => false at %d", got, idx)
	}
	// Watching continues from the resync's index.
	srv.PutDiscovery(t, "apus", "codfw", true)
	if got := nextChange(t, ch); got.Source != SourceEvent || !got.New.Pooled {
		t.Fatalf("after resync: %s", got)
	}
}

// TestWatchIdlePollsKeepUp checks that an idle watch re-polls from the index
// etcd registered it at, so unrelated writes (1200 here, more than etcd's
// history) never make it fall behind: it never has to read everything again
// (a watch that fell behind would get error 401, resync, and still see the
// final write).
func TestWatchIdlePollsKeepUp(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	// Short polls, so several end during the writes, but long enough for
	// etcd's headers (the index to go on from) to arrive on a loaded machine.
	c.watchPollTimeout = 500 * time.Millisecond
	var polls, resyncs atomic.Int32
	c.beforePoll = func(uint64) { polls.Add(1) }
	c.afterSync = func(source ChangeSource) {
		if source != SourceInitial {
			resyncs.Add(1)
		}
	}
	ch := startWatch(t, c, "apus")
	initialChanges(t, ch, 2)

	for range 4 {
		before := polls.Load()
		srv.FillHistory(t, 300)
		// Wait for the poll that was open during the writes to time out and
		// a new one to start after them.
		testenv.Eventually(t, changeTimeout, "the watcher to poll again", func() bool { return polls.Load() >= before+2 })
	}
	idx := srv.PutDiscovery(t, "apus", "codfw", false)
	if got := nextChange(t, ch); got.Source != SourceEvent || got.ModifiedIndex != idx {
		t.Fatalf("change %s, want an event at %d (not a resync)", got, idx)
	}
	if n := resyncs.Load(); n != 0 {
		t.Fatalf("the watch read everything again %d times after the initial read: it fell behind", n)
	}
}

func TestPollWatcher(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	c := etcdClientFor(t, srv)
	clock := clockwork.NewFakeClock()
	pw := NewPollWatcher(c, 30*time.Second, Options{Clock: clock, Logger: testLogger(t)})
	ch := startWatch(t, pw, "apus")
	initialChanges(t, ch, 2)

	idx := srv.PutDiscovery(t, "apus", "codfw", false)
	ctx := testCtx(t)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	got := nextChange(t, ch)
	if got.Source != SourceResync || got.Datacenter != "codfw" || !got.PooledChanged() || got.ModifiedIndex != idx {
		t.Fatalf("change %s", got)
	}

	// etcd down: one error change, then recovery without repeating it.
	srv.Stop()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if got := nextChange(t, ch); got.Source != SourceError {
		t.Fatalf("change %s", got)
	}
	srv.Restart()
	srv.PutDiscovery(t, "apus", "eqiad", false)
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if got := nextChange(t, ch); got.Source != SourceResync || got.Datacenter != "eqiad" || got.New.Pooled {
		t.Fatalf("change %s", got)
	}
}
