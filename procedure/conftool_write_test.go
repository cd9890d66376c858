package procedure

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/conftool"
	etcdenv "poolbot/internal/testenv/etcd"
)

// ownRecorder records what the procedure tells the drift watch's record
// of its own writes, in order.
type ownRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (o *ownRecorder) Intend(service, dc string, pooled bool) {
	o.add(fmt.Sprintf("intend %s/%s pooled=%t", service, dc, pooled))
}

func (o *ownRecorder) Record(service, dc string, st conftool.State) {
	o.add(fmt.Sprintf("record %s/%s pooled=%t index=%d", service, dc, st.Pooled, st.ModifiedIndex))
}

func (o *ownRecorder) Forget(service, dc string, pooled bool) {
	o.add(fmt.Sprintf("forget %s/%s pooled=%t", service, dc, pooled))
}

func (o *ownRecorder) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, s)
}

func (o *ownRecorder) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.calls...)
}

// viaProxy restarts the harness' engine with conftool talking to etcd
// through a proxy the test controls, and a recorder of its own writes.
func (l *harness) viaProxy() (*etcdenv.Proxy, *ownRecorder) {
	l.t.Helper()
	l.stop()
	proxy := etcdenv.StartProxy(l.t, l.etcd)
	c, err := conftool.New(conftool.Config{Backend: conftool.BackendEtcd,
		Etcd: conftool.EtcdConfig{Endpoints: []string{proxy.URL}, Prefix: l.prefix}}, conftool.Options{})
	if err != nil {
		l.t.Fatal(err)
	}
	own := &ownRecorder{}
	deps := l.engine.deps
	deps.Conftool, deps.OwnWrites = c, own
	e, err := New(l.engine.cfg, deps, []*Service{l.engine.services["apus"]})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = e.Close() })
	l.engine = e
	l.start()
	return proxy, own
}

// Issue 12 item 4: the write landed but its answer was lost. The request
// reads the object back, finds it depooled, and goes on to restart the
// registries (it used to end FAILED having restarted nothing, with apus
// depooled). The write was recorded as poolbot's own before it was made.
func TestLostWriteAnswerIsReadBackAndTheRequestGoesOn(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{}, withOwnEtcd(t))
	proxy, own := l.viaProxy()
	proxy.LoseWriteAnswers(true)

	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if proxy.Lost() != 1 || proxy.Puts() != 1 {
		t.Fatalf("proxy: %d PUTs, %d answers lost; want one write, its answer lost", proxy.Puts(), proxy.Lost())
	}
	if l.pooled("codfw") {
		t.Fatal("codfw pooled")
	}
	if got := l.restarted(); strings.Join(got, ",") != "registry1,registry2" {
		t.Fatalf("restarted %v", got)
	}
	sal := l.sal(id)
	if !hasLine(sal, "conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw; the write ended in an error") ||
		!hasLine(sal, "read back pooled=false") || !strings.Contains(sal[len(sal)-1], "END (PASS)") {
		t.Fatalf("SAL:\n%s", strings.Join(sal, "\n"))
	}
	calls := own.all()
	if len(calls) != 2 || calls[0] != "intend apus/codfw pooled=false" || !strings.HasPrefix(calls[1], "record apus/codfw pooled=false index=") {
		t.Fatalf("own writes told %q, want the intent before the write, then the state read back", calls)
	}
	if n, ok := l.etcd.Get(t, etcdenv.DiscoveryKey("apus", "codfw")); !ok ||
		calls[1] != fmt.Sprintf("record apus/codfw pooled=false index=%d", n.ModifiedIndex) {
		t.Fatalf("recorded %q, etcd holds index %d", calls[1], n.ModifiedIndex)
	}
}

// Issue 12 item 4, the incident: etcd dies after the write landed and
// before the answer. The request reads back (every endpoint) until etcd is
// back, then goes on.
func TestEtcdDownAfterTheWriteIsWaitedForThenTheRequestGoesOn(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{}, withOwnEtcd(t))
	proxy, _ := l.viaProxy()
	proxy.LoseWriteAnswers(true)
	proxy.AfterLostWrite(l.etcd.Stop)

	id := l.queue(poolbot.ActionDepool, "codfw")
	l.waitNotice("reading the object back", 0)
	// Some read-backs fail while etcd is down; the request still waits.
	l.clock.Advance(5 * time.Second)
	time.Sleep(100 * time.Millisecond)
	if r := l.request(id); r.State != poolbot.StateSwitching {
		t.Fatalf("while etcd is down: %s (%s) %s", r.State, r.Step, r.Error)
	}
	l.etcd.Restart()
	r := l.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if l.pooled("codfw") || len(l.restarted()) != 1 {
		t.Fatalf("codfw pooled=%t, restarted %v", l.pooled("codfw"), l.restarted())
	}
}

// When etcd stays down past the bound, the request fails, and its END line
// says that the state is unknown and must be checked, not that it failed
// to change.
func TestEtcdDownPastTheBoundEndsWithTheStateUnknown(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{}, withOwnEtcd(t))
	proxy, own := l.viaProxy()
	proxy.LoseWriteAnswers(true)
	proxy.AfterLostWrite(l.etcd.Stop)

	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateFailed {
		t.Fatalf("ended %s", r.State)
	}
	sal := l.sal(id)
	end := sal[len(sal)-1]
	if !strings.Contains(end, "END (FAIL)") || !strings.Contains(end, "pooled state unknown") ||
		!strings.Contains(end, "apus/codfw could not be read back for 01m 00s") || !strings.Contains(end, "CHECK it by hand") {
		t.Fatalf("END line %q", end)
	}
	// conftool is named once, by the write's own error, which comes first.
	if !strings.Contains(end, "depool apus in codfw: conftool: set apus/codfw pooled=false: ") {
		t.Fatalf("END line %q does not start its reason with the write's error", end)
	}
	if len(l.restarted()) != 0 {
		t.Fatalf("restarted %v", l.restarted())
	}
	// The intent stays: the write, if it landed, is poolbot's own.
	if calls := own.all(); len(calls) != 1 || calls[0] != "intend apus/codfw pooled=false" {
		t.Fatalf("own writes told %q", calls)
	}
	l.etcd.Restart()
}
