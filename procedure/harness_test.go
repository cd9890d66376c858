package procedure

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/integrations/logmsgbot"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/internal/testenv"
	etcdenv "poolbot/internal/testenv/etcd"
	regenv "poolbot/internal/testenv/registry"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

// The test binary doubles as the "systemctl" the local executor runs and
// as scap lock holders (see internal/testenv/site).
func TestMain(m *testing.M) {
	site.Main()
	// The lifecycle tests that run in parallel (each with its own store,
	// registries, DNS world and fake clock) spend their time waiting on
	// real servers, not on the CPU.
	testenv.WaitingParallel(4)
	code := m.Run()
	stopEtcdShared() // started by the first harness, if any ran
	os.Exit(code)
}

// etcdShared is the one etcd of the package's harnesses: each keeps its
// discovery objects under a prefix of its own (conftool's etcd prefix),
// so that they run in parallel without starting an etcd each.
var etcdShared struct {
	once     sync.Once
	dir      string
	srv      *etcdenv.Server
	err      error
	prefixes atomic.Int64
}

// sharedEtcd starts the package's etcd on first use and returns it with a
// conftool prefix no other harness uses.
func sharedEtcd(t *testing.T) (*etcdenv.Server, string) {
	t.Helper()
	testenv.Need(t, "etcd")
	etcdShared.once.Do(func() {
		if etcdShared.dir, etcdShared.err = os.MkdirTemp("", "poolbot-procedure-etcd-"); etcdShared.err != nil {
			return
		}
		etcdShared.srv, etcdShared.err = etcdenv.Launch(context.Background(), etcdShared.dir)
	})
	if etcdShared.err != nil {
		t.Fatalf("shared etcd: %v", etcdShared.err)
	}
	return etcdShared.srv, fmt.Sprintf("/poolbot-test/h%d/conftool/v1", etcdShared.prefixes.Add(1))
}

func stopEtcdShared() {
	if etcdShared.srv != nil {
		etcdShared.srv.Stop()
	}
	if etcdShared.dir != "" {
		os.RemoveAll(etcdShared.dir)
	}
}

// harness is the engine among real parts: etcd holding apus' discovery
// objects, one real registry per "host", scap lock files, a store, and an
// engine on a fake clock.
type harness struct {
	t        *testing.T
	clock    *clockwork.FakeClock
	timers   *engineClock // the engine's view of clock
	store    *store.Store
	etcd     *etcdenv.Server
	prefix   string // conftool's etcd prefix; "" for the default
	conftool conftool.Client
	scap     *scap.Scap
	lockDir  string
	hosts    []string
	regs     map[string]*regenv.Instance
	cal      *fakeCalendar
	engine   *Engine
	notices  *site.Notices
	cancel   context.CancelFunc
	done     chan struct{}

	systemctl *site.Systemctl
}

// fakeCalendar is the calendar as the cache would hand it over. The
// fetching and parsing of wikitech's page is tested in the calendar
// package against its real wire format.
type fakeCalendar struct {
	mu    sync.Mutex
	sched calendar.Schedule
	err   error
}

func (c *fakeCalendar) Schedule() (calendar.Schedule, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sched, c.sched.FetchedAt, c.err
}

func (c *fakeCalendar) set(s calendar.Schedule, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sched, c.err = s, err
}

var t0 = time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)

// harnessSetup is what a harnessOption may change before the engine
// starts.
type harnessSetup struct {
	scap *scap.Config
	// etcd, when set, is the server conftool uses, at prefix (the DNS
	// world renders gdnsd's state from it), instead of the package's
	// shared one at a prefix of the harness's own.
	etcd   *etcdenv.Server
	prefix string
	// service changes the service (e.g. adds its DNS step).
	service func(*harness, *Service)
}

// harnessOption changes the harness before the engine starts.
type harnessOption func(*harnessSetup)

// withoutLockProbe turns off the lock-file gate source while keeping the
// lockfile deploy block: a scap run the gate cannot see can then "slip
// in" between the gate check and the block.
func withoutLockProbe(s *harnessSetup) { s.scap.Locks.Enabled = boolPtr(false) }

// withOwnEtcd gives the harness an etcd of its own, at conftool's default
// prefix, for tests that stop and restart it (the others share one).
func withOwnEtcd(t *testing.T) harnessOption {
	return func(s *harnessSetup) { s.etcd = etcdenv.Start(t) }
}

func newHarness(t *testing.T, nHosts int, cfg Config, opts ...harnessOption) *harness {
	t.Helper()
	return newHarnessWith(t, nHosts, cfg, opts, nil)
}

// guardOption adds to the engine's dependencies and service before it
// starts (the per-host guards of hoststep_test.go); the world's etcd is
// up and its registries run.
type guardOption func(l *harness, deps *Deps, cfg *Config, svc *Service)

func newHarnessWith(t *testing.T, nHosts int, cfg Config, opts []harnessOption, guard guardOption) *harness {
	t.Helper()
	ctx := context.Background()
	l := &harness{t: t, clock: clockwork.NewFakeClockAt(t0), lockDir: t.TempDir(),
		regs: map[string]*regenv.Instance{}, notices: &site.Notices{}}
	l.timers = &engineClock{FakeClock: l.clock}
	scfg := scap.DefaultConfig()
	setup := harnessSetup{scap: &scfg}
	for _, o := range opts {
		o(&setup)
	}
	if guard != nil && setup.etcd == nil {
		// The guards (host pools, spicerack locks) use keys outside
		// conftool's prefix: an etcd of its own, as withOwnEtcd.
		setup.etcd = etcdenv.Start(t)
	}

	// Real registries, started in parallel.
	for i := 1; i <= nHosts; i++ {
		l.hosts = append(l.hosts, fmt.Sprintf("registry%d", i))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	// One storage for every host, as production's hosts share apus (the
	// probe across hosts needs it).
	storage := t.TempDir()
	for _, h := range l.hosts {
		wg.Go(func() {
			inst := regenv.Start(t, regenv.Options{StorageDir: storage})
			mu.Lock()
			l.regs[h] = inst
			mu.Unlock()
		})
	}
	// The DNS world's prefix is the one gdnsd's state is rendered from;
	// the others share the package's etcd under a prefix of their own.
	if l.etcd, l.prefix = setup.etcd, setup.prefix; l.etcd == nil {
		l.etcd, l.prefix = sharedEtcd(t)
	}
	wg.Wait()
	l.putDiscovery("eqiad", true)
	l.putDiscovery("codfw", true)
	var err error
	l.conftool, err = conftool.New(conftool.Config{Backend: conftool.BackendEtcd,
		Etcd: conftool.EtcdConfig{Endpoints: []string{l.etcd.ClientURL}, Prefix: l.prefix}}, conftool.Options{})
	if err != nil {
		t.Fatal(err)
	}

	l.store, err = store.Open(ctx, filepath.Join(t.TempDir(), "poolbot.db"), l.clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.store.Close() })

	// scap's lock files, probed and taken for real.
	global := filepath.Join(l.lockDir, "scap-global-lock")
	staging := filepath.Join(l.lockDir, "scap.srv_mediawiki-staging.lock")
	for _, f := range []string{global, staging} {
		// scap leaves its lock files behind; on a deploy host they exist.
		if err := os.WriteFile(f, []byte("{}"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	scfg.Locks.Files = []string{global, staging}
	scfg.DeployBlock.GlobalLock = global
	l.scap, err = scap.New(scfg, scap.Options{Clock: l.clock, Relay: logmsgbot.New(logmsgbot.Config{})})
	if err != nil {
		t.Fatal(err)
	}

	// The local executor runs this test binary as "systemctl" per host.
	// The control URL is passed through env(1) on each command rather
	// than set on this process, so that harnesses run in parallel.
	l.systemctl = site.StartSystemctl(t, l.regs)
	exec, err := restart.NewLocal(restart.LocalConfig{Command: []string{"/usr/bin/env", site.EnvCtl + "=" + l.systemctl.URL,
		os.Args[0], "{host}", "{argv}"}}, restart.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := registry.DefaultConfig()
	rcfg.Health.Interval, rcfg.Health.WaitTimeout, rcfg.Health.Consecutive = 100*time.Millisecond, 10*time.Second, 1
	regClient, err := registry.New(rcfg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Name: "apus", Datacenters: []string{"eqiad", "codfw"},
		Plan: restart.Plan{Hosts: l.hosts, Units: []string{"docker-registry-restricted.service"},
			PerHostTimeout: 20 * time.Second, RestartCommand: restart.DefaultRestartCommand(),
			CheckCommand: restart.DefaultCheckCommand()},
		Executor: exec, Registry: regClient, Probe: true,
		Instances: func(host string) []registry.Instance {
			r := l.regs[host]
			return []registry.Instance{{Name: "restricted", Host: "127.0.0.1", Port: r.Port, DebugPort: r.DebugPort}}
		},
	}
	if setup.service != nil {
		setup.service(l, svc)
	}
	l.cal = &fakeCalendar{}
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), nil), nil)
	if cfg.PerHostEstimate == 0 {
		cfg.PerHostEstimate = time.Minute
	}
	if cfg.LeadMargin == 0 && cfg.TailMargin == 0 {
		cfg.LeadMargin, cfg.TailMargin = 5*time.Minute, 5*time.Minute
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 24 * time.Hour
	}
	deps := Deps{Store: l.store, Calendar: l.cal, Scap: l.scap.Monitor, Blocker: l.scap.Blocker,
		Conftool: l.conftool, Announce: l.notices, Clock: l.timers}
	if guard != nil {
		guard(l, &deps, &cfg, svc)
	}
	l.engine, err = New(cfg, deps, []*Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.engine.Close() })
	l.start()
	return l
}

func boolPtr(b bool) *bool { return &b }

// engineClock is the engine's view of the harness's fake clock: it notes
// when each timer set on it is due, so that a test can advance the clock
// once the engine waits. The engine reads the time, then sets a timer for
// what is left; an advance between the two would make the timer due a
// whole wait after the moment the test moved the clock to, and the
// request would never move.
type engineClock struct {
	*clockwork.FakeClock
	mu  sync.Mutex
	due []time.Time
}

func (c *engineClock) NewTimer(d time.Duration) clockwork.Timer {
	c.mu.Lock()
	c.due = append(c.due, c.FakeClock.Now().Add(d))
	c.mu.Unlock()
	return c.FakeClock.NewTimer(d)
}

func (c *engineClock) setFor(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.due, at.Equal)
}

// last is when the latest timer set is due.
func (c *engineClock) last() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.due) == 0 {
		return time.Time{}, false
	}
	return c.due[len(c.due)-1], true
}

// waitTimer waits (real time) until the engine has set a timer due at at.
func (l *harness) waitTimer(at time.Time) {
	l.t.Helper()
	testenv.EventuallyReport(l.t, 30*time.Second, "the engine to set a timer due at "+at.Format(time.TimeOnly), func() (bool, string) {
		return l.timers.setFor(at), "now " + l.clock.Now().Format(time.TimeOnly)
	})
}

// advanceWhenDue waits until the engine has set a timer due at at, then
// moves the fake clock to at.
func (l *harness) advanceWhenDue(at time.Time) {
	l.t.Helper()
	l.waitTimer(at)
	l.clock.Advance(at.Sub(l.clock.Now()))
}

// putDiscovery writes apus' discovery object of dc as confctl does.
func (l *harness) putDiscovery(dc string, pooled bool) {
	l.t.Helper()
	if l.prefix == "" {
		l.etcd.PutDiscovery(l.t, "apus", dc, pooled)
		return
	}
	l.etcd.PutDiscoveryAt(l.t, l.prefix, "apus", dc, pooled)
}

// start runs the engine; stop ends it as a shutdown would.
func (l *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	go func() { defer close(l.done); _ = l.engine.Run(ctx) }()
	l.t.Cleanup(l.stop)
}

func (l *harness) stop() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		l.cancel = nil
	}
}

func (l *harness) restarted() []string { return l.systemctl.Restarts() }

// queue stores a request as the command layer does and wakes the engine.
func (l *harness) queue(action poolbot.Action, dc string) poolbot.RequestID {
	l.t.Helper()
	return l.queueAs(action, dc, poolbot.Origin{Network: "irc", Account: "alice", Nick: "alice"})
}

// queueFrom stores a restart from origin (the drift watch's is poolbot).
func (l *harness) queueFrom(action poolbot.Action, origin poolbot.Origin) poolbot.RequestID {
	l.t.Helper()
	return l.queueAs(action, "", origin)
}

func (l *harness) queueAs(action poolbot.Action, dc string, origin poolbot.Origin) poolbot.RequestID {
	l.t.Helper()
	var r poolbot.Request
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		var err error
		r, err = tx.InsertRequest(poolbot.Request{Action: action, Service: "apus", Datacenter: dc,
			Reason: "T422166 test", Task: "T422166", Operator: "alice", Origin: origin})
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.engine.Notify("apus")
	return r.ID
}

func (l *harness) request(id poolbot.RequestID) poolbot.Request {
	l.t.Helper()
	r, err := l.store.Request(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	return r
}

// waitState waits (real time) until the request is in one of states,
// advancing the fake clock by tick each round when tick > 0.
func (l *harness) waitState(id poolbot.RequestID, tick time.Duration, states ...poolbot.State) poolbot.Request {
	l.t.Helper()
	var r poolbot.Request
	testenv.EventuallyReport(l.t, 60*time.Second, fmt.Sprintf("%s to be %v", id, states), func() (bool, string) {
		r = l.request(id)
		if slices.Contains(states, r.State) {
			return true, ""
		}
		if tick > 0 {
			l.clock.Advance(tick)
		}
		return false, fmt.Sprintf("%s is %s (%s); notices:\n%s", id, r.State, r.Step, strings.Join(l.notices.All(), "\n"))
	})
	return r
}

func (l *harness) sal(id poolbot.RequestID) []string {
	l.t.Helper()
	lines, err := l.store.SALLines(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	return lines
}

func (l *harness) pooled(dc string) bool {
	l.t.Helper()
	st, err := l.conftool.Get(context.Background(), "apus", dc)
	if err != nil {
		l.t.Fatal(err)
	}
	return st.Pooled
}

// globalLock says who holds scap's global lock, probed from another
// process.
func (l *harness) globalLock() string {
	l.t.Helper()
	return site.ProbeLock(l.t, filepath.Join(l.lockDir, "scap-global-lock"))
}

// holdScapLock makes a child process hold a lock on a scap lock file, as
// a running scap command does; release ends it.
func (l *harness) holdScapLock(name, mode string) (release func()) {
	l.t.Helper()
	return site.HoldLock(l.t, filepath.Join(l.lockDir, name), mode)
}

// edit changes a stored request while the engine is stopped or running,
// as a command or a previous run of poolbot would have left it.
func (l *harness) edit(id poolbot.RequestID, change func(*poolbot.Request)) {
	l.t.Helper()
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		r, err := tx.Request(id)
		if err != nil {
			return err
		}
		from := r.State
		change(&r)
		_, err = tx.UpdateRequest(r, from)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
}

// waitNotice waits (real time) for a notice containing sub, advancing the
// fake clock by tick each round when tick > 0.
func (l *harness) waitNotice(sub string, tick time.Duration) {
	l.t.Helper()
	testenv.EventuallyReport(l.t, 60*time.Second, fmt.Sprintf("a notice %q", sub), func() (bool, string) {
		if len(l.notices.Matching(sub)) > 0 {
			return true, ""
		}
		if tick > 0 {
			l.clock.Advance(tick)
		}
		return false, "notices:\n" + strings.Join(l.notices.All(), "\n")
	})
}

// checkEnd asserts the request's last SAL line contains want and that
// the deploy block is released.
func (l *harness) checkEnd(id poolbot.RequestID, want string) {
	l.t.Helper()
	sal := l.sal(id)
	if len(sal) == 0 || !strings.Contains(sal[len(sal)-1], want) {
		l.t.Fatalf("last SAL line of %s lacks %q:\n%s", id, want, strings.Join(sal, "\n"))
	}
	if got := l.globalLock(); got != "none" {
		l.t.Fatalf("global lock after the end: %s", got)
	}
}

func (l *harness) eventKinds(id poolbot.RequestID) map[string]int {
	l.t.Helper()
	evs, err := l.store.Events(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Kind]++
	}
	return kinds
}
