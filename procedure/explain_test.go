package procedure

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/store"
)

// Explain evaluates the gates for real (a deployment window, a scap run,
// the queue) and lays out the plan with live registry health, changing
// nothing: no request stored, conftool untouched, no host restarted, no
// lock taken.
func TestExplainChangesNothing(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{})
	ctx := context.Background()
	w := window("deploycal-item-20261123T1400", "UTC afternoon backport window",
		t0.Add(-10*time.Minute), t0.Add(50*time.Minute), "Amir1")
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	release := l.holdScapLock("scap-global-lock", "shared")

	x, err := l.engine.Explain(ctx, poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "codfw"})
	if err != nil {
		t.Fatal(err)
	}
	gates := map[string]GateStatus{}
	for _, g := range x.Gates {
		gates[g.Gate] = g
	}
	if !gates["queue"].Open || !gates["conftool"].Open || gates["calendar"].Open || gates["scap"].Open {
		t.Fatalf("gates %+v", x.Gates)
	}
	if !strings.Contains(gates["calendar"].Detail, "UTC afternoon backport window") || !strings.Contains(gates["scap"].Detail, "scap") {
		t.Fatalf("gate details %+v", x.Gates)
	}
	if x.Clear || !x.Start.IsZero() { // scap has no known end
		t.Fatalf("clear %v start %v", x.Clear, x.Start)
	}
	if len(x.Hosts) != 2 || len(x.Hosts[0].Steps) != 2 || x.Hosts[0].Steps[0].Argv[0] != "systemctl" ||
		len(x.Hosts[1].Instances) != 1 || x.Hosts[1].Instances[0].Health != nil {
		t.Fatalf("hosts %+v", x.Hosts)
	}
	if !strings.Contains(x.Switch, "pooled=false") || !strings.Contains(x.PoolState, "codfw pooled") {
		t.Fatalf("switch %q pool state %q", x.Switch, x.PoolState)
	}
	text := strings.Join(x.Lines(), "\n")
	for _, want := range []string{"DRY RUN: depool apus in codfw", "calendar CLOSED", "scap     CLOSED", "1/2 registry1: systemctl restart docker-registry-restricted.service",
		"write-then-read blob probe", "would start: unknown"} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}

	// Scap done and the window over: clear, starting now.
	release()
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), nil), nil)
	x, err = l.engine.Explain(ctx, poolbot.Request{Action: poolbot.ActionRestart, Service: "apus"})
	if err != nil {
		t.Fatal(err)
	}
	if !x.Clear || !x.Start.Equal(l.clock.Now()) || x.Switch != "" {
		t.Fatalf("restart explanation %+v", x)
	}

	// Nothing changed anywhere.
	reqs, _ := l.store.List(ctx, store.Filter{})
	if len(reqs) != 0 || !l.pooled("codfw") || len(l.restarted()) != 0 || l.globalLock() != "none" {
		t.Fatalf("explain changed something: %d requests, pooled %v, restarts %v, lock %s",
			len(reqs), l.pooled("codfw"), l.restarted(), l.globalLock())
	}

	// A request in the queue closes the queue gate.
	l.stop()
	id := l.queue(poolbot.ActionPool, "codfw")
	x, _ = l.engine.Explain(ctx, poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "codfw"})
	if x.Gates[0].Open || !strings.Contains(x.Gates[0].Detail, id.String()) || x.Clear {
		t.Fatalf("queue gate %+v", x.Gates[0])
	}
	for _, bad := range []poolbot.Request{{Action: poolbot.ActionDepool, Service: "nope", Datacenter: "codfw"},
		{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "ulsfo"}, {Action: "drain", Service: "apus"}} {
		if _, err := l.engine.Explain(ctx, bad); err == nil {
			t.Errorf("Explain(%+v) accepted", bad)
		}
	}
}

// recordingMetrics keeps what the procedure reports.
type recordingMetrics struct {
	mu    sync.Mutex
	gates []string // "service:gate,gate" per report
	hosts []string // "host ok|fail"
}

func (m *recordingMetrics) Gates(service string, closed []string, since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(closed) > 0 && since.IsZero() {
		panic("closed gates without a since")
	}
	m.gates = append(m.gates, service+":"+strings.Join(closed, ","))
}

func (m *recordingMetrics) HostRestarted(_, host string, took time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	outcome := "ok"
	if err != nil {
		outcome = "fail"
	}
	m.hosts = append(m.hosts, host+" "+outcome)
}

func (m *recordingMetrics) snapshot() ([]string, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.gates), slices.Clone(m.hosts)
}

// The procedure reports which gates block the head request and how long
// each host took, success and failure alike.
func TestMetricsHooks(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 2, Config{})
	// The same world with an engine that reports to recordingMetrics.
	l.stop()
	m := &recordingMetrics{}
	deps := l.engine.deps
	deps.Metrics = m
	var err error
	l.engine, err = New(l.engine.cfg, deps, []*Service{l.engine.services["apus"]})
	if err != nil {
		t.Fatal(err)
	}
	l.start()

	w := window("deploycal-item-20261123T1400", "UTC afternoon backport window",
		t0.Add(-10*time.Minute), t0.Add(50*time.Minute))
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	id := l.queue(poolbot.ActionDepool, "codfw")
	l.waitState(id, 0, poolbot.StateWaiting)
	gates, _ := m.snapshot()
	if !slices.Contains(gates, "apus:calendar") {
		t.Fatalf("gate reports %q", gates)
	}
	l.systemctl.Fail("registry2", true)
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), nil), nil)
	l.engine.Notify("apus")
	l.waitState(id, time.Second, poolbot.StateFailed)
	gates, hosts := m.snapshot()
	if !slices.Equal(hosts, []string{"registry1 ok", "registry2 fail"}) {
		t.Fatalf("host reports %q", hosts)
	}
	if gates[len(gates)-1] != "apus:" {
		t.Fatalf("gates not reported open at the end: %q", gates)
	}
}
