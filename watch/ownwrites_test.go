package watch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/conftool"
	etcdenv "poolbot/internal/testenv/etcd"
)

// An intent recorded before the write makes the write poolbot's own before
// SetPooled returns, and whether or not it ever returns: the first change
// to that value, whatever its index. Settled by Record, only that index is.
func TestOwnWritesIntent(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	own := NewOwnWrites(clock, 2*time.Minute)
	ev := func(pooled bool, index uint64) conftool.Change {
		return conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceEvent, ModifiedIndex: index, New: state(pooled, index)}
	}
	own.Intend("apus", "codfw", false)
	if own.Owns(ev(true, 50), clock.Now()) {
		t.Fatal("a change to the other value matched the intent")
	}
	if !own.mayOwn(ev(false, 51), clock.Now()) || !own.Owns(ev(false, 51), clock.Now()) || !own.Owns(ev(false, 51), clock.Now()) {
		t.Fatal("the intended write, seen before its answer, is not poolbot's")
	}
	if own.Owns(ev(false, 52), clock.Now()) {
		t.Fatal("a second change to the same value matched one intent")
	}
	own.Record("apus", "codfw", conftool.State{Pooled: false, ModifiedIndex: 51})
	if !own.Owns(ev(false, 51), clock.Now()) || own.Owns(ev(false, 53), clock.Now()) {
		t.Fatal("after Record, only the write's index is poolbot's")
	}

	// An intent whose write did not land is forgotten.
	own.Intend("apus", "codfw", true)
	own.Forget("apus", "codfw", true)
	if own.Owns(ev(true, 60), clock.Now()) {
		t.Fatal("a forgotten intent matched")
	}
	// An intent not settled expires with the window.
	own.Intend("apus", "codfw", true)
	if own.Owns(ev(true, 61), clock.Now().Add(3*time.Minute)) {
		t.Fatal("an intent matched outside the window")
	}
	var nilOwn *OwnWrites
	nilOwn.Intend("apus", "codfw", true)
	nilOwn.Forget("apus", "codfw", true)
}

// Issue 12 items 4 and 8: poolbot's write landed, its answer was lost (so
// SetPooled failed and nothing was Recorded). The watch saw the change and,
// 7.5 s later, queued restarts for a change "made outside poolbot (by whom
// unknown)": its own. With the intent recorded before the write, the change
// is poolbot's the moment it is seen: no drift, no request, and !status
// never lists it as a change outside poolbot.
func TestOwnWriteWithLostAnswerIsNotDrift(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto})
	proxy := etcdenv.StartProxy(t, l.etcd)
	proxy.LoseWriteAnswers(true)
	c, err := conftool.New(conftool.Config{Backend: conftool.BackendEtcd,
		Etcd: conftool.EtcdConfig{Endpoints: []string{proxy.URL}}}, conftool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	own := l.watch.OwnWrites()
	ctx := context.Background()

	own.Intend("apus", "codfw", false)
	if _, err := c.SetPooled(ctx, "apus", "codfw", false); err == nil {
		t.Fatal("SetPooled through a proxy that loses the answer succeeded")
	}
	node, _ := l.etcd.Get(t, etcdenv.DiscoveryKey("apus", "codfw"))
	l.waitSeen("codfw", node.ModifiedIndex)
	if n, _ := l.watch.drift.pendingSince("apus"); n != 0 {
		t.Fatalf("%d change(s) pending as drift", n)
	}
	if lines := l.statusLines(); strings.Contains(strings.Join(lines, "\n"), "drift") {
		t.Fatalf("!status:\n%s", strings.Join(lines, "\n"))
	}
	// What the procedure's read-back then records.
	own.Record("apus", "codfw", conftool.State{Pooled: false, ModifiedIndex: node.ModifiedIndex})
	l.fake.Advance(2 * DefaultDebounce)
	time.Sleep(50 * time.Millisecond)
	if rs := listRequests(t, l.store, "apus"); len(rs) != 0 {
		t.Fatalf("requests %+v", rs)
	}
	if ds := l.drifts(); len(ds) != 0 || len(l.notices.All()) != 0 {
		t.Fatalf("drifts %+v, notices %q", ds, l.notices.All())
	}

	// A change by someone else afterwards is drift; !status says when it
	// is ruled on, a time not yet past.
	l.etcd.PutDiscovery(t, "apus", "codfw", true)
	l.waitPending(1)
	want := "; ruled on at " + poolbot.FormatClock(l.clock.Now().Add(DefaultDebounce), l.clock.Now())
	if lines := strings.Join(l.statusLines(), "\n"); !strings.Contains(lines, "drift: 1 pooled change(s) not made by poolbot as far as known, seen 00m 00s ago"+want) {
		t.Fatalf("!status:\n%s", lines)
	}
	if f := l.flush(); f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
}

// Issue 12 item 8: a change held past its debounce (a request is switching
// to that value, so it may be that request's write) was listed as "acted on
// at" a time already past. !status says it is held instead.
func TestStatusOfAHeldChangeIsNotATimeInThePast(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto})
	insertRequest(t, l.store, poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "codfw",
		Reason: "T1 test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}, State: poolbot.StateSwitching})
	l.etcd.PutDiscovery(t, "apus", "codfw", false)
	l.waitPending(1)
	if f := l.flush(); f != "apus held" {
		t.Fatalf("flush %q", f)
	}
	lines := strings.Join(l.statusLines(), "\n")
	if !strings.Contains(lines, "held while a request is switching") || strings.Contains(lines, "acted on at") {
		t.Fatalf("!status:\n%s", lines)
	}
}

func (l *driftLab) statusLines() []string {
	l.t.Helper()
	lines, err := l.watch.StatusLines(context.Background(), "apus")
	if err != nil {
		l.t.Fatal(err)
	}
	return lines
}
