package watch

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poolbot"
	"poolbot/chat"
	"poolbot/commands"
	"poolbot/integrations/conftool"
	"poolbot/integrations/logmsgbot"
	"poolbot/internal/testenv"
	etcdenv "poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

const (
	opsChannel  = "#wikimedia-operations"
	conftoolLog = "!log jdoe@cumin1003 conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"
)

// driftLab is a real etcd holding apus' discovery objects, the conftool
// client poolbot uses on it, a store, the command router (whose observers
// see channel lines and whose !status shows the watch), and the watch.
type driftLab struct {
	t        *testing.T
	clock    clockwork.Clock
	fake     *clockwork.FakeClock // nil on the real clock
	etcd     *etcdenv.Server
	conftool conftool.Client
	store    *store.Store
	notices  *site.Notices
	metrics  *prometheus.Registry
	watch    *Watch
	router   *commands.Router
	flushes  chan string // "service outcome" per flush

	stop func() // ends the watch as a shutdown does

	mu       sync.Mutex
	notified []string
	salWakes int
}

type labOptions struct {
	fake     bool
	mode     string
	debounce time.Duration
	// watcher builds the conftool watcher (default: WatcherFor the client).
	watcher func(c conftool.Client, clock clockwork.Clock) conftool.Watcher
	// client wraps the etcd client (e.g. as confctl would behave).
	client func(conftool.Client) conftool.Client
}

func newDriftLab(t *testing.T, o labOptions) *driftLab {
	t.Helper()
	l := &driftLab{t: t, notices: &site.Notices{}, metrics: prometheus.NewRegistry(), flushes: make(chan string, 16)}
	if o.fake {
		l.fake = clockwork.NewFakeClockAt(time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC))
		l.clock = l.fake
	} else {
		l.clock = clockwork.NewRealClock()
	}
	l.etcd = etcdenv.Start(t)
	l.etcd.PutDiscovery(t, "apus", "eqiad", true)
	l.etcd.PutDiscovery(t, "apus", "codfw", true)
	var err error
	l.conftool, err = conftool.New(conftool.Config{Backend: conftool.BackendEtcd,
		Etcd: conftool.EtcdConfig{Endpoints: []string{l.etcd.ClientURL}}}, conftool.Options{Clock: l.clock})
	if err != nil {
		t.Fatal(err)
	}
	if o.client != nil {
		l.conftool = o.client(l.conftool)
	}
	l.store = openStore(t, l.clock)

	cfg := DefaultConfig()
	cfg.Probe.Enabled = false
	cfg.Drift.Mode = o.mode
	cfg.Drift.Debounce = o.debounce
	deps := Deps{Store: l.store, Conftool: l.conftool, Announce: l.notices, Metrics: l.metrics, Clock: l.clock,
		Relay: logmsgbot.New(logmsgbot.Config{}),
		Notify: func(s string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.notified = append(l.notified, s)
		},
		SALWritten: func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.salWakes++
		}}
	if o.watcher != nil {
		deps.Watcher = o.watcher(l.conftool, l.clock)
	}
	l.watch, err = New(cfg, deps, Options{CommandPrefix: "!"}, []Service{{Name: "apus", Datacenters: []string{"eqiad", "codfw"}}})
	if err != nil {
		t.Fatal(err)
	}
	l.watch.drift.onFlush = func(service, outcome string) { l.flushes <- service + " " + outcome }

	ops, err := commands.NewOperators([]commands.Operator{{Name: "alice", IRCAccounts: []string{"alice"}}})
	if err != nil {
		t.Fatal(err)
	}
	l.router = commands.NewRouter(commands.Options{Prefix: "!", Services: map[string][]string{"apus": {"eqiad", "codfw"}}},
		ops, l.store, commands.Backends{Watch: l.watch}, l.clock, nil, l.watch.Observer())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.watch.Run(ctx); err != nil {
			t.Errorf("watch: %v", err)
		}
	}()
	l.stop = func() { cancel(); <-done }
	t.Cleanup(l.stop)
	// The watch has read the initial state.
	testenv.EventuallyReport(t, 10*time.Second, "the initial state", func() (bool, string) {
		_, a := l.watch.drift.knownState("apus", "eqiad")
		_, b := l.watch.drift.knownState("apus", "codfw")
		return a && b, ""
	})
	return l
}

// say feeds a channel line through the router, as the IRC adapter does.
func (l *driftLab) say(nick, account, text string) []string {
	out := &replies{}
	l.router.HandleMessage(context.Background(), chat.Message{Network: "irc", Channel: opsChannel, Nick: nick,
		Account: account, AccountKnown: true, Text: text, Time: l.clock.Now()}, out)
	return out.lines
}

// waitSeen waits until the watch has seen index for apus/dc.
func (l *driftLab) waitSeen(dc string, index uint64) {
	l.t.Helper()
	testenv.EventuallyReport(l.t, 10*time.Second, "the watch to see the write", func() (bool, string) {
		st, _ := l.watch.drift.knownState("apus", dc)
		return st.ModifiedIndex >= index, ""
	})
}

// waitPending waits until n changes wait for the debounce.
func (l *driftLab) waitPending(n int) {
	l.t.Helper()
	testenv.EventuallyReport(l.t, 10*time.Second, "pending changes", func() (bool, string) {
		got, _ := l.watch.drift.pendingSince("apus")
		return got == n, ""
	})
}

// flush advances the fake clock past the debounce and returns how the
// flush ended.
func (l *driftLab) flush() string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.fake.BlockUntilContext(ctx, 1); err != nil {
		l.t.Fatalf("no debounce timer: %v", err)
	}
	l.fake.Advance(DefaultDebounce)
	select {
	case f := <-l.flushes:
		return f
	case <-ctx.Done():
		l.t.Fatal("no flush")
	}
	return ""
}

func (l *driftLab) wakes() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.notified...), l.salWakes
}

func (l *driftLab) drifts() []store.Drift {
	l.t.Helper()
	ds, err := l.store.RecentDrifts(context.Background(), "apus", time.Time{}, 100)
	if err != nil {
		l.t.Fatal(err)
	}
	return ds
}

type replies struct{ lines []string }

func (r *replies) Reply(_ context.Context, text string) error {
	r.lines = append(r.lines, text)
	return nil
}

// A depool written straight to etcd (as confctl does), announced by
// conftool's !log line relayed by logmsgbot: within seconds the channel
// hears who did it, SAL gets the line, and a restart request is queued.
func TestDriftQueuesRestartWithinSeconds(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{mode: ModeAuto, debounce: 300 * time.Millisecond})
	// Every service × datacenter series exists at 0 before the first drift,
	// so increase() and rate() see the first one.
	if n, err := testutil.GatherAndCount(l.metrics, "poolbot_drift_total"); err != nil || n != 2 {
		t.Fatalf("poolbot_drift_total series before any drift: %d, %v; want 2 (eqiad, codfw)", n, err)
	}

	start := time.Now()
	index := l.etcd.PutDiscovery(t, "apus", "codfw", false)
	// confctl says its !log line after the write.
	l.say("logmsgbot", "", conftoolLog)
	testenv.EventuallyReport(t, 10*time.Second, "the drift announcement", func() (bool, string) {
		return len(l.notices.All()) > 0, ""
	})
	latency := time.Since(start)
	t.Logf("drift announced %s after the etcd write (debounce 300ms)", latency)
	if latency > 5*time.Second {
		t.Errorf("drift announced after %s", latency)
	}
	got := l.notices.All()
	if len(got) != 1 || !strings.HasPrefix(got[0], "drift: apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003) at ") ||
		!strings.Contains(got[0], "queued #1 restart apus (as poolbot)") || !strings.Contains(got[0], "!cancel 1 <reason>") {
		t.Fatalf("notices %q", got)
	}
	rs := listRequests(t, l.store, "apus")
	if len(rs) != 1 {
		t.Fatalf("requests %+v", rs)
	}
	r := rs[0]
	if r.Action != poolbot.ActionRestart || r.State != poolbot.StateQueued || r.Operator != "poolbot" ||
		r.Origin.Network != "poolbot" || r.Reason != "drift: apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003)" {
		t.Fatalf("request %+v", r)
	}
	events, err := l.store.Events(context.Background(), r.ID)
	if err != nil || len(events) != 1 || events[0].Kind != "created" || events[0].Actor != poolbot.ActorPoolbot {
		t.Fatalf("events %+v %v", events, err)
	}
	sal := unsentSAL(t, l.store)
	if len(sal) != 1 || sal[0] != "poolbot drift: apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003); restart queued as #1" {
		t.Fatalf("SAL %q", sal)
	}
	notified, wakes := l.wakes()
	if len(notified) != 1 || notified[0] != "apus" || wakes != 1 {
		t.Fatalf("engine notified %q, SAL sender woken %d times", notified, wakes)
	}
	ds := l.drifts()
	if len(ds) != 1 || ds[0].Who != "jdoe@cumin1003" || ds[0].PooledFrom != true || ds[0].PooledTo != false ||
		ds[0].RequestID != r.ID || ds[0].Mode != ModeAuto {
		t.Fatalf("drifts %+v", ds)
	}
	if st, _ := l.watch.drift.knownState("apus", "codfw"); st.ModifiedIndex != index || st.Pooled {
		t.Fatalf("known %+v, want index %d", st, index)
	}
	if v := testutil.ToFloat64(l.watch.metrics.drifts.WithLabelValues("apus", "codfw")); v != 1 {
		t.Fatalf("poolbot_drift_total = %v", v)
	}
	status := strings.Join(l.say("someone", "", "!status"), "\n")
	if !strings.Contains(status, "apus drift (last 24h): ") ||
		!strings.Contains(status, "apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003) → #1") {
		t.Fatalf("status:\n%s", status)
	}
}

// poolbot's own SetPooled is not drift, whether the watch sees the write
// before or after the procedure records it.
func TestOwnWritesAreNotDrift(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto})
	own := l.watch.OwnWrites()
	ctx := context.Background()

	// As the procedure does it: SetPooled, then Record.
	st, err := l.conftool.SetPooled(ctx, "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	own.Record("apus", "codfw", st)
	l.waitSeen("codfw", st.ModifiedIndex)
	if n, _ := l.watch.drift.pendingSince("apus"); n == 1 {
		// The watch saw the write before Record: the flush drops it.
		if f := l.flush(); f != "apus own" {
			t.Fatalf("flush %q", f)
		}
	}

	// The race made certain: the write is seen, Record comes only later
	// (but within the debounce).
	index := l.etcd.PutDiscovery(t, "apus", "codfw", true)
	l.waitPending(1)
	own.Record("apus", "codfw", conftool.State{Pooled: true, TTL: 300, ModifiedIndex: index})
	if f := l.flush(); f != "apus own" {
		t.Fatalf("flush %q", f)
	}

	// Slower still: a request is switching, and its SetPooled has not
	// returned when the debounce ends: the watch holds the change.
	req := insertRequest(t, l.store, poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "codfw",
		Reason: "T1 test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}, State: poolbot.StateSwitching})
	index = l.etcd.PutDiscovery(t, "apus", "codfw", false)
	l.waitPending(1)
	if f := l.flush(); f != "apus held" {
		t.Fatalf("flush %q", f)
	}
	own.Record("apus", "codfw", conftool.State{Pooled: false, TTL: 300, ModifiedIndex: index})
	if f := l.flush(); f != "apus own" {
		t.Fatalf("flush %q", f)
	}

	if got := l.notices.All(); len(got) != 0 {
		t.Fatalf("notices %q", got)
	}
	if rs := listRequests(t, l.store, "apus"); len(rs) != 1 || rs[0].ID != req.ID {
		t.Fatalf("requests %+v", rs)
	}
	if ds := l.drifts(); len(ds) != 0 {
		t.Fatalf("drifts %+v", ds)
	}
	if sal := unsentSAL(t, l.store); len(sal) != 0 {
		t.Fatalf("SAL %q", sal)
	}

	// The watch is alive: a change by someone else is drift. A restart
	// request that already runs does not cover it.
	l.etcd.PutDiscovery(t, "apus", "codfw", true)
	l.waitPending(1)
	if f := l.flush(); f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	if rs := listRequests(t, l.store, "apus"); len(rs) != 2 || rs[1].Action != poolbot.ActionRestart {
		t.Fatalf("requests %+v", rs)
	}
}

// Two changes within the debounce are one drift and one request; a later
// change while that request still waits joins it.
func TestRapidChangesMakeOneRequest(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto})
	// An untrusted nick's !log line names nobody.
	l.say("mallory", "mallory", conftoolLog)

	l.etcd.PutDiscovery(t, "apus", "codfw", false)
	l.etcd.PutDiscovery(t, "apus", "codfw", true)
	l.waitPending(2)
	if f := l.flush(); f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	rs := listRequests(t, l.store, "apus")
	if len(rs) != 1 || rs[0].Reason != "drift: apus/codfw pooled=true changed outside poolbot (2 changes, was true) (by whom unknown)" {
		t.Fatalf("requests %+v", rs)
	}
	// #1 waits for its gates (as the engine records it) when someone
	// depools again: #1 will restart after that change too.
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		r := rs[0]
		r.State, r.Step = poolbot.StateWaiting, "deployment window"
		_, err := tx.UpdateRequest(r, poolbot.StateQueued)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	l.say("logmsgbot", "", conftoolLog)
	l.etcd.PutDiscovery(t, "apus", "codfw", false)
	l.waitPending(1)
	if f := l.flush(); f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	if rs := listRequests(t, l.store, "apus"); len(rs) != 1 {
		t.Fatalf("requests %+v", rs)
	}
	events, err := l.store.Events(context.Background(), rs[0].ID)
	if err != nil || len(events) != 2 || events[1].Kind != "drift" ||
		events[1].Detail != "drift: apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003)" {
		t.Fatalf("events %+v %v", events, err)
	}
	got := l.notices.All()
	if len(got) != 2 || !strings.Contains(got[1], "the restart already queued as #1 (waiting) covers it") {
		t.Fatalf("notices %q", got)
	}
	sal := unsentSAL(t, l.store)
	if len(sal) != 2 || sal[1] != "poolbot drift: apus/codfw pooled=false changed outside poolbot (by jdoe@cumin1003); covered by queued restart #1" {
		t.Fatalf("SAL %q", sal)
	}
	if ds := l.drifts(); len(ds) != 2 || ds[0].RequestID != 1 || ds[1].Changes != 2 {
		t.Fatalf("drifts %+v", ds)
	}
	if notified, _ := l.wakes(); len(notified) != 1 {
		t.Fatalf("engine notified %q", notified)
	}
	if v := testutil.ToFloat64(l.watch.metrics.drifts.WithLabelValues("apus", "codfw")); v != 3 {
		t.Fatalf("poolbot_drift_total = %v", v)
	}
}

// In propose mode the drift is announced with the one command that queues
// the restarts, and that command works.
func TestProposeMode(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModePropose})
	l.etcd.PutDiscovery(t, "apus", "codfw", false)
	l.say("logmsgbot", "", conftoolLog)
	l.waitPending(1)
	if f := l.flush(); f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	if rs := listRequests(t, l.store, "apus"); len(rs) != 0 {
		t.Fatalf("requests %+v", rs)
	}
	got := l.notices.All()
	const cmd = "!restart apus registries after drift: apus/codfw pooled=false by jdoe@cumin1003 outside poolbot"
	if len(got) != 1 || !strings.HasSuffix(got[0], "the registries need restarting; an operator runs: "+cmd) {
		t.Fatalf("notices %q", got)
	}
	if sal := unsentSAL(t, l.store); len(sal) != 1 || !strings.HasSuffix(sal[0], "; restart proposed to operators") {
		t.Fatalf("SAL %q", sal)
	}
	if reply := l.say("alice", "alice", cmd); len(reply) != 1 || !strings.HasPrefix(reply[0], "#1 queued: restart apus") {
		t.Fatalf("the proposed command: %q", reply)
	}
	if ds := l.drifts(); len(ds) != 1 || ds[0].Mode != ModePropose || ds[0].RequestID != 0 {
		t.Fatalf("drifts %+v", ds)
	}
}

// confctlLike is the etcd client seen as the confctl backend shows it: no
// modifiedIndex (confctl's output has none).
type confctlLike struct{ conftool.Client }

func (c confctlLike) Get(ctx context.Context, service, dc string) (conftool.State, error) {
	st, err := c.Client.Get(ctx, service, dc)
	st.ModifiedIndex = 0
	return st, err
}

func (c confctlLike) List(ctx context.Context, service string) (map[string]conftool.State, error) {
	m, err := c.Client.List(ctx, service)
	for dc, st := range m {
		st.ModifiedIndex = 0
		m[dc] = st
	}
	return m, err
}

func (c confctlLike) SetPooled(ctx context.Context, service, dc string, pooled bool) (conftool.State, error) {
	st, err := c.Client.SetPooled(ctx, service, dc, pooled)
	st.ModifiedIndex = 0
	return st, err
}

// With confctl the watch polls; poolbot's own write is matched by value
// and time, someone else's is drift.
func TestPolledBackend(t *testing.T) {
	t.Parallel()
	const poll = 30 * time.Second
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto,
		client: func(c conftool.Client) conftool.Client { return confctlLike{c} },
		watcher: func(c conftool.Client, clock clockwork.Clock) conftool.Watcher {
			w := conftool.WatcherFor(c, poll, conftool.Options{Clock: clock})
			if _, ok := w.(*conftool.PollWatcher); !ok {
				t.Fatalf("WatcherFor gave %T for a client without a watch", w)
			}
			return w
		}})
	ctx := context.Background()
	nextPoll := func() {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := l.fake.BlockUntilContext(c, 1); err != nil {
			t.Fatalf("poll timer: %v", err)
		}
		l.fake.Advance(poll)
	}

	st, err := l.conftool.SetPooled(ctx, "apus", "codfw", false)
	if err != nil || st.ModifiedIndex != 0 {
		t.Fatalf("SetPooled: %+v %v", st, err)
	}
	l.watch.OwnWrites().Record("apus", "codfw", st)
	nextPoll()
	testenv.EventuallyReport(t, 10*time.Second, "the poll to see the write", func() (bool, string) {
		st, _ := l.watch.drift.knownState("apus", "codfw")
		return !st.Pooled, ""
	})
	if n, _ := l.watch.drift.pendingSince("apus"); n != 0 {
		t.Fatalf("own write pending as drift")
	}

	// Someone repools by hand: the next poll sees it.
	l.etcd.PutDiscovery(t, "apus", "codfw", true)
	nextPoll()
	l.waitPending(1)
	if f := l.flush(); f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	if rs := listRequests(t, l.store, "apus"); len(rs) != 1 {
		t.Fatalf("requests %+v", rs)
	}
	if got := l.notices.All(); len(got) != 1 || !strings.Contains(got[0], "apus/codfw pooled=true changed outside poolbot") {
		t.Fatalf("notices %q", got)
	}
}

// etcd goes away: !status says so. A depool made while the watch could not
// see it is found by the resync when etcd is back, compared with what was
// known before.
func TestResyncAfterOutage(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto})
	l.etcd.Stop()
	testenv.EventuallyReport(t, 10*time.Second, "the watch error", func() (bool, string) {
		err, _ := l.watch.drift.watchError("apus")
		return err != nil, ""
	})
	lines, err := l.watch.StatusLines(context.Background(), "apus")
	if err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "drift watch: conftool error 00m 00s ago (conftool: watch apus: ") {
		t.Fatalf("status %q %v", lines, err)
	}
	l.etcd.Restart()
	l.etcd.PutDiscovery(t, "apus", "codfw", false)
	// The watch retries after its backoff (on the fake clock).
	testenv.EventuallyReport(t, 20*time.Second, "the resync", func() (bool, string) {
		if n, _ := l.watch.drift.pendingSince("apus"); n == 1 {
			return true, ""
		}
		l.fake.Advance(time.Second)
		return false, ""
	})
	l.fake.Advance(DefaultDebounce)
	if f := <-l.flushes; f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	if got := l.notices.All(); len(got) != 1 || !strings.Contains(got[0], "apus/codfw pooled=false changed outside poolbot (by whom unknown) [seen on resync]") {
		t.Fatalf("notices %q", got)
	}
}

// A drift still in its debounce window when poolbot stops is acted on
// before the watch returns, not lost.
func TestPendingDriftActedOnAtShutdown(t *testing.T) {
	t.Parallel()
	l := newDriftLab(t, labOptions{fake: true, mode: ModeAuto})
	l.etcd.PutDiscovery(t, "apus", "codfw", false)
	l.waitPending(1)
	l.stop()
	if f := <-l.flushes; f != "apus drift" {
		t.Fatalf("flush %q", f)
	}
	if rs := listRequests(t, l.store, "apus"); len(rs) != 1 {
		t.Fatalf("requests %+v", rs)
	}
	if sal := unsentSAL(t, l.store); len(sal) != 1 {
		t.Fatalf("SAL %q", sal)
	}
}
