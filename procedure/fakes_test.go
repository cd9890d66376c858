package procedure

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
	"poolbot/requests"
	"poolbot/store"
)

// In-process fakes of the procedure's narrow interfaces, for unit tests of
// the lifecycle's logic (gates, cancel, force, the last-datacenter guard,
// a failing host) that need no etcd, registry or lock file. The same
// behaviour is tested against the real servers in procedure_test.go and
// cancel_test.go; these run in milliseconds and in parallel.

// fakeConftool is conftool's contract: SetPooled reads back what it
// wrote and refuses to depool the last pooled datacenter.
type fakeConftool struct {
	mu     sync.Mutex
	pooled map[string]bool // service/dc
	writes int
	// refuse, when set, is what SetPooled answers without writing.
	refuse error
}

func newFakeConftool() *fakeConftool {
	return &fakeConftool{pooled: map[string]bool{"apus/eqiad": true, "apus/codfw": true}}
}

func (c *fakeConftool) Get(_ context.Context, service, dc string) (conftool.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pooled[service+"/"+dc]
	if !ok {
		return conftool.State{}, conftool.ErrNotFound
	}
	return conftool.State{Pooled: p, TTL: 300}, nil
}

func (c *fakeConftool) List(_ context.Context, service string) (map[string]conftool.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]conftool.State{}
	for k, p := range c.pooled {
		if s, dc, _ := strings.Cut(k, "/"); s == service {
			out[dc] = conftool.State{Pooled: p, TTL: 300}
		}
	}
	if len(out) == 0 {
		return nil, conftool.ErrNotFound
	}
	return out, nil
}

func (c *fakeConftool) SetPooled(_ context.Context, service, dc string, pooled bool) (conftool.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := service + "/" + dc
	if _, ok := c.pooled[key]; !ok {
		return conftool.State{}, conftool.ErrNotFound
	}
	if c.refuse != nil {
		return conftool.State{}, c.refuse
	}
	if !pooled {
		others := 0
		for k, p := range c.pooled {
			if s, _, _ := strings.Cut(k, "/"); s == service && k != key && p {
				others++
			}
		}
		if others == 0 {
			return conftool.State{}, conftool.ErrLastPooled
		}
	}
	c.pooled[key] = pooled
	c.writes++
	return conftool.State{Pooled: pooled, TTL: 300}, nil
}

func (c *fakeConftool) set(service, dc string, pooled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pooled[service+"/"+dc] = pooled
}

func (c *fakeConftool) state(service, dc string) (pooled bool, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pooled[service+"/"+dc], c.writes
}

// fakeScap is scap as the gate and the deploy block see it: a deployment
// in progress holds the global lock, and poolbot's block is exclusive.
type fakeScap struct {
	mu     sync.Mutex
	busy   string // who deploys; "" when nobody does
	held   bool   // poolbot's deploy block
	blocks int
}

func (s *fakeScap) Check(context.Context) (scap.Activity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := scap.Activity{}
	if s.busy != "" {
		a.Busy = true
		a.Reasons = []scap.Reason{{Who: s.busy, What: "scap sync-world"}}
	}
	return a, nil
}

func (s *fakeScap) Block(context.Context, string) (scap.Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy != "" || s.held {
		return nil, scap.ErrLockHeld
	}
	s.held = true
	s.blocks++
	return func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held = false
		return nil
	}, nil
}

func (s *fakeScap) setBusy(who string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = who
}

func (s *fakeScap) state() (held bool, blocks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held, s.blocks
}

// fakeExecutor runs the restart commands in memory: it records each
// host's restart, fails the hosts in fail, and holds a host's restart
// until released when asked to.
type fakeExecutor struct {
	mu        sync.Mutex
	restarted []string
	fail      map[string]bool
	hold      map[string]chan struct{}
}

func (x *fakeExecutor) Run(ctx context.Context, host string, argv []string) (restart.Result, error) {
	x.mu.Lock()
	restarting := slices.Contains(argv, "restart")
	if restarting {
		x.restarted = append(x.restarted, host)
	}
	hold := x.hold[host]
	fail := x.fail[host]
	x.mu.Unlock()
	if restarting && hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return restart.Result{Host: host, Argv: argv, ExitCode: -1}, ctx.Err()
		}
	}
	if restarting && fail {
		return restart.Result{Host: host, Argv: argv, ExitCode: 1, Output: []byte("Job for docker-registry failed")}, nil
	}
	return restart.Result{Host: host, Argv: argv}, nil
}

func (x *fakeExecutor) holdHost(host string) (release func()) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.hold == nil {
		x.hold = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	x.hold[host] = ch
	return func() { close(ch) }
}

func (x *fakeExecutor) failHost(host string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.fail == nil {
		x.fail = map[string]bool{}
	}
	x.fail[host] = true
}

func (x *fakeExecutor) hosts() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.restarted)
}

// fakeRegistry answers healthy and probes fine.
type fakeRegistry struct{}

func (fakeRegistry) Health(context.Context, registry.Instance) error { return nil }
func (fakeRegistry) WaitHealthy(context.Context, registry.Instance, registry.WaitOptions) error {
	return nil
}
func (fakeRegistry) Probe(_ context.Context, inst registry.Instance, _ string) registry.ProbeResult {
	return registry.ProbeResult{Instance: inst, OK: true, Code: "ok"}
}

var (
	_ conftool.Client      = (*fakeConftool)(nil)
	_ scap.ActivityChecker = (*fakeScap)(nil)
	_ scap.Blocker         = (*fakeScap)(nil)
	_ restart.Executor     = (*fakeExecutor)(nil)
	_ registry.Checker     = fakeRegistry{}
	_ poolbot.Announcer    = (*site.Notices)(nil)
	_ Calendar             = (*fakeCalendar)(nil)
)

// unit is an engine on fakes, a real store (SQLite in the test's
// directory) and a fake clock.
type unit struct {
	t       *testing.T
	clock   *clockwork.FakeClock
	store   *store.Store
	conf    *fakeConftool
	scap    *fakeScap
	exec    *fakeExecutor
	cal     *fakeCalendar
	notices *site.Notices
	engine  *Engine
	changes *requests.Changes
	own     *ownRecorder
}

func newUnit(t *testing.T, nHosts int, cfg Config) *unit {
	t.Helper()
	u := &unit{t: t, clock: clockwork.NewFakeClockAt(t0), conf: newFakeConftool(), scap: &fakeScap{},
		exec: &fakeExecutor{}, cal: &fakeCalendar{}, notices: &site.Notices{}, own: &ownRecorder{}}
	u.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), nil), nil)
	var err error
	u.store, err = store.Open(context.Background(), filepath.Join(t.TempDir(), "poolbot.db"), u.clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.store.Close() })
	var hosts []string
	for i := 1; i <= nHosts; i++ {
		hosts = append(hosts, fmt.Sprintf("registry%d", i))
	}
	svc := &Service{Name: "apus", Datacenters: []string{"eqiad", "codfw"},
		Plan: restart.Plan{Hosts: hosts, Units: []string{"docker-registry-restricted.service"},
			RestartCommand: restart.DefaultRestartCommand(), CheckCommand: restart.DefaultCheckCommand()},
		Executor: u.exec, Registry: fakeRegistry{}, Probe: true,
		Instances: func(host string) []registry.Instance {
			return []registry.Instance{{Name: "restricted", Host: "127.0.0.1", Port: 5000}}
		},
	}
	cfg.PerHostEstimate = time.Minute
	cfg.LeadMargin, cfg.TailMargin, cfg.MaxWait = 5*time.Minute, 5*time.Minute, 24*time.Hour
	u.engine, err = New(cfg, Deps{Store: u.store, Calendar: u.cal, Scap: u.scap, Blocker: u.scap,
		Conftool: u.conf, OwnWrites: u.own, Announce: u.notices, Clock: u.clock}, []*Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	u.changes = requests.New(u.store, requests.Policy{ForceNeedsConfirm: cfg.ForceNeedsConfirm,
		ConfirmWindow: 10 * time.Minute, Prefix: "!"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = u.engine.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; _ = u.engine.Close() })
	return u
}

// queue queues a request as !depool/!pool/!restart does.
func (u *unit) queue(action poolbot.Action, dc string) poolbot.RequestID {
	u.t.Helper()
	r, _, err := u.changes.Queue(context.Background(), requests.Actor{Name: "alice"}, poolbot.Request{Action: action,
		Service: "apus", Datacenter: dc, Reason: "T422166 test", Task: "T422166", Operator: "alice"})
	if err != nil {
		u.t.Fatal(err)
	}
	u.engine.Notify("apus")
	return r.ID
}

func (u *unit) request(id poolbot.RequestID) poolbot.Request {
	u.t.Helper()
	r, err := u.store.Request(context.Background(), id)
	if err != nil {
		u.t.Fatal(err)
	}
	return r
}

// waitFor waits until request id satisfies cond.
func (u *unit) waitFor(id poolbot.RequestID, what string, cond func(poolbot.Request) bool) poolbot.Request {
	u.t.Helper()
	var r poolbot.Request
	testenv.EventuallyReport(u.t, 10*time.Second, fmt.Sprintf("%s: %s", id, what), func() (bool, string) {
		r = u.request(id)
		return cond(r), fmt.Sprintf("%s %q %s; notices:\n%s", r.State, r.Step, r.Error, strings.Join(u.notices.All(), "\n"))
	})
	return r
}

func (u *unit) waitState(id poolbot.RequestID, states ...poolbot.State) poolbot.Request {
	u.t.Helper()
	return u.waitFor(id, fmt.Sprintf("in %v", states), func(r poolbot.Request) bool { return slices.Contains(states, r.State) })
}

func (u *unit) sal(id poolbot.RequestID) []string {
	u.t.Helper()
	lines, err := u.store.SALLines(context.Background(), id)
	if err != nil {
		u.t.Fatal(err)
	}
	return lines
}
