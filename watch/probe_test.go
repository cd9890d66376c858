package watch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poolbot"
	"poolbot/integrations/registry"
	"poolbot/internal/testenv"
	regenv "poolbot/internal/testenv/registry"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

var t0 = time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC)

// probeLab runs the watch's probe on a fake clock against real registries.
type probeLab struct {
	t       *testing.T
	clock   *clockwork.FakeClock
	store   *store.Store
	notices *site.Notices
	metrics *prometheus.Registry
	cfg     Config
	svc     Service
	// balancers is how many balancer rows a round stores besides the
	// hosts' (one per instance name when registry.balancer_url is set).
	balancers int
	watch     *Watch
	stop      func()
}

func newProbeLab(t *testing.T, failuresBeforeNotice int, svc Service) *probeLab {
	t.Helper()
	l := &probeLab{t: t, clock: clockwork.NewFakeClockAt(t0), notices: &site.Notices{}, svc: svc}
	l.store = openStore(t, l.clock)
	l.cfg = DefaultConfig()
	l.cfg.Drift.Enabled = false
	l.cfg.Probe.FailuresBeforeNotice = failuresBeforeNotice
	l.start()
	return l
}

// start runs a new Watch (as a freshly started poolbot would) on the
// lab's store; its first round runs at once.
func (l *probeLab) start() {
	l.t.Helper()
	l.metrics = prometheus.NewRegistry()
	var err error
	l.watch, err = New(l.cfg, Deps{Store: l.store, Announce: l.notices, Metrics: l.metrics, Clock: l.clock},
		Options{CommandPrefix: "!"}, []Service{l.svc})
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.watch.Run(ctx); err != nil {
			l.t.Errorf("watch: %v", err)
		}
	}()
	l.stop = func() { cancel(); <-done }
	l.t.Cleanup(l.stop)
}

// round waits until every instance not in skip was probed at the fake
// clock's current time.
func (l *probeLab) round(skip ...string) []store.ProbeState {
	l.t.Helper()
	var states []store.ProbeState
	now := l.clock.Now()
	testenv.EventuallyReport(l.t, 60*time.Second, "a probe round", func() (bool, string) {
		var err error
		states, err = l.store.ProbeStates(context.Background(), l.svc.Name)
		if err != nil {
			return false, err.Error()
		}
		done := 0
		for _, s := range states {
			if s.At.Equal(now) {
				done++
			}
		}
		return done == len(l.svc.Hosts)+l.balancers-len(skip), ""
	})
	return states
}

// next advances the fake clock to the next scheduled round; the caller
// waits for it with round.
func (l *probeLab) next() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.clock.BlockUntilContext(ctx, 1); err != nil {
		l.t.Fatalf("the probe schedule armed no timer: %v", err)
	}
	l.clock.Advance(l.cfg.Probe.Interval)
}

func (l *probeLab) state(host string) store.ProbeState {
	l.t.Helper()
	states, err := l.store.ProbeStates(context.Background(), l.svc.Name)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, s := range states {
		if s.Host == host {
			return s
		}
	}
	l.t.Fatalf("no probe state for %s", host)
	return store.ProbeState{}
}

func (l *probeLab) status() string {
	l.t.Helper()
	lines, err := l.watch.StatusLines(context.Background(), l.svc.Name)
	if err != nil {
		l.t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func instancesOf(regs map[string]*regenv.Instance) func(string) []registry.Instance {
	return func(host string) []registry.Instance {
		r := regs[host]
		return []registry.Instance{{Name: "restricted", Host: "127.0.0.1", Port: r.Port, DebugPort: r.DebugPort}}
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, host string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "host" && lp.GetValue() == host {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// A stopped registry: the notice comes once failures_before_notice
// probes failed in a row, and names the open request instead of
// suggesting one; a restart of poolbot does not repeat the notice; a host
// a running request is restarting is not probed; the recovery notice
// comes once when the registry is back.
func TestProbeSkipsHostsBeingRestartedAndSurvivesRestart(t *testing.T) {
	t.Parallel()
	r1 := regenv.Start(t, regenv.Options{})
	client, err := registry.New(registry.DefaultConfig(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := newProbeLab(t, 2, Service{Name: "apus", Hosts: []string{"registry1001.eqiad.wmnet"},
		Instances: instancesOf(map[string]*regenv.Instance{"registry1001.eqiad.wmnet": r1}), Registry: client})
	const host = "registry1001.eqiad.wmnet"
	l.round()

	req := insertRequest(t, l.store, poolbot.Request{Action: poolbot.ActionRestart, Service: "apus",
		Reason: "T2 test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
	if err := r1.Stop(); err != nil {
		t.Fatal(err)
	}
	l.next()
	l.round()
	if got := l.notices.All(); len(got) != 0 {
		t.Fatalf("notice after one failure: %q", got)
	}
	l.next()
	l.round()
	// The notice quotes the failure: here the writer's own POST.
	testenv.Eventually(t, 10*time.Second, "the probe notice", func() bool { return len(l.notices.All()) > 0 })
	if got := l.notices.All(); len(got) != 1 ||
		!strings.HasPrefix(got[0], "registry probe FAILING for apus: registry1001/restricted network at start_upload x2 since 14:02 UTC (start_upload: POST /v2/poolbot/probe/blobs/uploads/: network: ") ||
		!strings.Contains(got[0], "connection refused) — #1 restart apus is already queued") {
		t.Fatalf("notices %q", got)
	}

	// poolbot restarts: the failure is still out, not announced again.
	l.stop()
	l.clock.Advance(time.Minute)
	l.start()
	l.round()
	if s := l.state(host); s.ConsecutiveFailures != 3 || !s.Notified || s.Code != registry.CodeNetwork {
		t.Fatalf("state after restart %+v", s)
	}
	if got := l.notices.All(); len(got) != 1 {
		t.Fatalf("notices %q", got)
	}

	// The request runs and is restarting the host: no probe there.
	if err := startRestarting(l.store, req.ID, host); err != nil {
		t.Fatal(err)
	}
	l.next()
	skipped := l.watch.metrics.probeSkipped.WithLabelValues("apus", host)
	testenv.EventuallyReport(t, 10*time.Second, "the skipped round", func() (bool, string) {
		return testutil.ToFloat64(skipped) == 1, ""
	})
	if s := l.state(host); s.ConsecutiveFailures != 3 || s.At.Equal(l.clock.Now()) {
		t.Fatalf("probed while restarting: %+v", s)
	}

	// The host is done and the registry is back.
	if err := r1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = l.store.Tx(context.Background(), func(tx *store.Tx) error {
		return tx.UpdateHostStep(req.ID, 1, poolbot.HostDone, "ok")
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		l.next()
		l.round()
	}
	notices := l.notices.All()
	if len(notices) != 2 || notices[1] != "registry probe OK again for apus: registry1001/restricted" {
		t.Fatalf("notices %q", notices)
	}
	if v := testutil.ToFloat64(skipped); v != 1 {
		t.Fatalf("skipped %v", v)
	}
}

// probeHook runs during before each probe of the real registries: what
// happens on the hosts while poolbot's periodic probe is talking to them.
type probeHook struct {
	*registry.Client
	during func()
}

func (c probeHook) ProbeAcross(ctx context.Context, inst registry.Instance, opts registry.ProbeOptions) registry.ProbeResult {
	if c.during != nil {
		c.during()
	}
	return c.Client.ProbeAcross(ctx, inst, opts)
}

// A request that starts restarting a host after the round read which
// hosts are busy, and restarts it while the probe talks to it, makes the
// probe fail for a reason poolbot caused: the failure is dropped, not
// counted, stored or announced (TestWatchInDaemon's !status showed such a
// failure for the host the drift restart had just restarted), whether the
// host wrote the round's blob or was to read it.
func TestProbeDropsFailureOfHostRestartedDuringProbe(t *testing.T) {
	t.Parallel()
	const writer, peer = "registry1001.eqiad.wmnet", "registry1002.eqiad.wmnet"
	for _, restarted := range []string{writer, peer} {
		t.Run(restarted, func(t *testing.T) {
			t.Parallel()
			// One datacenter: the two hosts share storage.
			r1, r2 := regenv.StartPair(t, regenv.Options{StorageDir: t.TempDir()})
			regs := map[string]*regenv.Instance{writer: r1, peer: r2}
			client, err := registry.New(registry.DefaultConfig(), registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			hook := &probeHook{Client: client}
			l := newProbeLab(t, 1, Service{Name: "apus", Hosts: []string{writer, peer}, Instances: instancesOf(regs), Registry: hook})
			l.round()
			for _, h := range []string{writer, peer} {
				if s := l.state(h); !s.OK {
					t.Fatalf("first round: %s %+v", h, s)
				}
			}

			req := insertRequest(t, l.store, poolbot.Request{Action: poolbot.ActionRestart, Service: "apus",
				Reason: "T2 test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
			var once sync.Once
			hook.during = func() {
				once.Do(func() {
					// The request starts and restarts the host: its
					// registry is down while the probe runs.
					if err := regs[restarted].Stop(); err != nil {
						t.Error(err)
					}
					if err := startRestarting(l.store, req.ID, restarted); err != nil {
						t.Error(err)
					}
				})
			}
			l.next()
			// The other host's result is stored: with the peer restarted
			// the writer's own write and read; with the writer restarted
			// the peer, which writes next.
			l.round(restarted)
			skipped := l.watch.metrics.probeSkipped.WithLabelValues("apus", restarted)
			testenv.EventuallyReport(t, 30*time.Second, "the dropped probe", func() (bool, string) {
				return testutil.ToFloat64(skipped) == 1, fmt.Sprintf("skipped %v", testutil.ToFloat64(skipped))
			})
			if s := l.state(restarted); s.ConsecutiveFailures != 0 || s.At.Equal(l.clock.Now()) {
				t.Fatalf("a failure caused by poolbot's own restart was stored: %+v", s)
			}
			if got := l.notices.All(); len(got) != 0 {
				t.Fatalf("notices %q", got)
			}
		})
	}
}

// startRestarting records the queued request id as restarting host, as
// the procedure does when it gets to it.
func startRestarting(st *store.Store, id poolbot.RequestID, host string) error {
	return st.Tx(context.Background(), func(tx *store.Tx) error {
		r, err := tx.Request(id)
		if err != nil {
			return err
		}
		r.State = poolbot.StateRestarting
		if _, err := tx.UpdateRequest(r, poolbot.StateQueued); err != nil {
			return err
		}
		if err := tx.InsertHostSteps(id, []string{host}); err != nil {
			return err
		}
		return tx.UpdateHostStep(id, 1, poolbot.HostRestarting, "")
	})
}
