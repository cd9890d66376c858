// Package monitoring is poolbot's operational HTTP surface: Prometheus metrics on
// /metrics and a readiness check on /healthz, served on a loopback address
// by default (http.listen).
//
// Metrics live in a private prometheus.Registry that the daemon creates
// and other parts (the watch) register into; nothing uses the global
// registry. Values that the store holds (requests by state, the SAL
// outbox) are read at scrape time, so they are right after a restart and
// never drift from the database. The procedure reports gate states and
// host restart durations through the procedure.Metrics hooks, which this
// package implements.
//
// /healthz answers 200 only when a write to the SQLite store commits
// (store.Ping rewrites its heartbeat row) and every chat network is
// connected; otherwise 503. The
// body names every check and its result, so a probe's failure message
// says which one failed.
package monitoring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"poolbot"
)

// Store is what the metrics and health checks read from the store.
type Store interface {
	CountByState(ctx context.Context, finishedSince time.Time) (map[poolbot.State]int, error)
	SALBacklog(ctx context.Context) (int, error)
	Ping(ctx context.Context) error
}

// FinishedWindow is how long a finished request counts in
// poolbot_requests: the gauge shows recent outcomes, not all history.
const FinishedWindow = 24 * time.Hour

// Gates are the gate names the procedure reports; each service gets a
// series for every one, so an alert on a gate sees 0 rather than nothing.
var gateNames = []string{"calendar", "scap", "conftool", "force", "spicerack"}

// Options configure New.
type Options struct {
	// Registry receives every metric; required (never the global one).
	Registry *prometheus.Registry
	Store    Store
	// Services are the managed services, for the per-service series.
	Services []string
	// Version is reported in poolbot_build_info.
	Version string
	// CheckTimeout bounds each store read at scrape time and each health
	// check (default 5s).
	CheckTimeout time.Duration
	Clock        clockwork.Clock
	Logger       *slog.Logger
}

// Monitor holds the metrics and health checks. It implements the procedure's
// Metrics hooks.
type Monitor struct {
	reg     *prometheus.Registry
	store   Store
	clock   clockwork.Clock
	log     *slog.Logger
	timeout time.Duration

	gateClosed  *prometheus.GaugeVec
	hostRestart *prometheus.HistogramVec

	mu           sync.Mutex
	blockedSince map[string]time.Time // service → head request waiting since
	chats        []chatCheck
	leader       func() (active bool, holder string)
}

type chatCheck struct {
	network   string
	connected func() bool
}

// New creates the metrics and registers them with o.Registry.
func New(o Options) (*Monitor, error) {
	if o.Registry == nil {
		return nil, errors.New("monitoring: a private prometheus.Registry is required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 5 * time.Second
	}
	m := &Monitor{reg: o.Registry, store: o.Store, clock: o.Clock, log: o.Logger, timeout: o.CheckTimeout,
		blockedSince: map[string]time.Time{}}
	m.gateClosed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "poolbot", Name: "gate_closed",
		Help: "1 while the gate blocks the head request of the service's queue (calendar, scap, conftool, force, spicerack), else 0.",
	}, []string{"service", "gate"})
	m.hostRestart = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "poolbot", Name: "host_restart_duration_seconds",
		Help:    "Time to restart one host's units and see its registry instances healthy (and probed), by outcome.",
		Buckets: []float64{1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600},
	}, []string{"service", "host", "outcome"})
	for _, s := range o.Services {
		for _, g := range gateNames {
			m.gateClosed.WithLabelValues(s, g).Set(0)
		}
		m.blockedSince[s] = time.Time{}
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "poolbot", Name: "build_info", Help: "Always 1; the version label is the running build.",
		ConstLabels: prometheus.Labels{"version": o.Version},
	})
	buildInfo.Set(1)
	cs := []prometheus.Collector{m.gateClosed, m.hostRestart, buildInfo, storeCollector{m}, blockedCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	for _, c := range cs {
		if err := o.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("monitoring: metrics: %w", err)
		}
	}
	return m, nil
}

// Registry is the private registry, for other parts' metrics.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

// AddChat adds a chat network: its connection state becomes the
// poolbot_chat_connected{network} gauge and a /healthz check.
func (m *Monitor) AddChat(network string, connected func() bool) error {
	m.mu.Lock()
	m.chats = append(m.chats, chatCheck{network: network, connected: connected})
	m.mu.Unlock()
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "poolbot", Name: "chat_connected",
		Help:        "1 while the chat connection is up (IRC: registered with the server), else 0.",
		ConstLabels: prometheus.Labels{"network": network},
	}, func() float64 { return boolValue(connected()) }))
}

// AddCommandLimiter exports the commands refused over a person's command
// limit (chat.CommandLimiter.Limited) as
// poolbot_commands_rate_limited_total: they are counted here, not stored
// one by one.
func (m *Monitor) AddCommandLimiter(limited func() uint64) error {
	return m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "poolbot", Name: "commands_rate_limited_total",
		Help: "Commands ignored because their sender was over chat.command_limit (each sender is told once).",
	}, func() float64 { return float64(limited()) }))
}

// AddCalendar exports when the deployment calendar was last fetched
// successfully (lastFetch returns the zero time before the first).
func (m *Monitor) AddCalendar(lastFetch func() time.Time) error {
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "poolbot", Name: "calendar_last_success_timestamp_seconds",
		Help: "Unix time of the last successful deployment calendar fetch; 0 before the first.",
	}, func() float64 {
		t := lastFetch()
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}))
}

// Gates implements procedure.Metrics.
func (m *Monitor) Gates(service string, closed []string, since time.Time) {
	for _, g := range gateNames {
		m.gateClosed.WithLabelValues(service, g).Set(boolValue(slices.Contains(closed, g)))
	}
	for _, g := range closed {
		if !slices.Contains(gateNames, g) {
			m.gateClosed.WithLabelValues(service, g).Set(1)
		}
	}
	m.mu.Lock()
	m.blockedSince[service] = since
	m.mu.Unlock()
}

// SeedHosts creates the host-restart series of a service's hosts, both
// outcomes, at zero: an alert on increase(…_count{outcome="fail"}[1h])
// then sees the first failure, not only the second.
func (m *Monitor) SeedHosts(service string, hosts []string) {
	for _, h := range hosts {
		for _, outcome := range []string{"ok", "fail"} {
			m.hostRestart.WithLabelValues(service, h, outcome)
		}
	}
}

// HostRestarted implements procedure.Metrics.
func (m *Monitor) HostRestarted(service, host string, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "fail"
	}
	m.hostRestart.WithLabelValues(service, host, outcome).Observe(took.Seconds())
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	requestsDesc = prometheus.NewDesc("poolbot_requests", "Requests by state: every open one (queued to restarting), and those that ended in the last 24h (done, failed, cancelled, expired).",
		[]string{"state"}, nil)
	outboxDesc  = prometheus.NewDesc("poolbot_sal_outbox_depth", "SAL lines stored but not yet delivered.", nil, nil)
	blockedDesc = prometheus.NewDesc("poolbot_blocked_seconds", "How long the head request of the service's queue has waited, counted from when it was created (time queued behind another request of the service included); 0 when none waits.",
		[]string{"service"}, nil)
)

// storeCollector reads the store at scrape time.
type storeCollector struct{ m *Monitor }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- requestsDesc; ch <- outboxDesc }

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.m.timeout)
	defer cancel()
	if counts, err := c.m.store.CountByState(ctx, c.m.clock.Now().Add(-FinishedWindow)); err != nil {
		ch <- prometheus.NewInvalidMetric(requestsDesc, err)
	} else {
		for _, st := range poolbot.AllStates() {
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
	}
	if n, err := c.m.store.SALBacklog(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(outboxDesc, err)
	} else {
		ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(n))
	}
}

// blockedCollector turns "waiting since" into seconds at scrape time.
type blockedCollector struct{ m *Monitor }

func (c blockedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- blockedDesc }

func (c blockedCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.clock.Now()
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for s, since := range c.m.blockedSince {
		v := 0.0
		if !since.IsZero() {
			v = max(now.Sub(since).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(blockedDesc, prometheus.GaugeValue, v, s)
	}
}

// Check is one /healthz check's outcome.
type Check struct {
	Name string
	Err  error
	// Note says more about a passing check (the leader role).
	Note string
}

// AddLeader exports the leader lock's state (see integrations/leader):
// poolbot_leader is 1 while this instance is the active poolbot and 0
// while it is standby, poolbot_leader_holder_info{holder} names the
// active one, and /healthz says "leader: ok (active)" or "leader: ok
// (standby; active: <holder>)". A standby is healthy: it is ready to take
// over.
func (m *Monitor) AddLeader(state func() (active bool, holder string)) error {
	m.mu.Lock()
	m.leader = state
	m.mu.Unlock()
	if err := m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "poolbot", Name: "leader",
		Help: "1 while this poolbot holds the leader lock and acts, 0 while it is standby.",
	}, func() float64 { a, _ := state(); return boolValue(a) })); err != nil {
		return err
	}
	return m.reg.Register(leaderHolderCollector{state})
}

var leaderHolderDesc = prometheus.NewDesc("poolbot_leader_holder_info",
	"Always 1; the holder label names the active poolbot (owner and instance), as this one last read it.",
	[]string{"holder"}, nil)

type leaderHolderCollector struct{ state func() (bool, string) }

func (c leaderHolderCollector) Describe(ch chan<- *prometheus.Desc) { ch <- leaderHolderDesc }

func (c leaderHolderCollector) Collect(ch chan<- prometheus.Metric) {
	if _, h := c.state(); h != "" {
		ch <- prometheus.MustNewConstMetric(leaderHolderDesc, prometheus.GaugeValue, 1, h)
	}
}

// Health runs every readiness check: the store is writable, every chat
// network is connected.
func (m *Monitor) Health(ctx context.Context) []Check {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	checks := []Check{{Name: "store", Err: m.store.Ping(ctx)}}
	if checks[0].Err != nil {
		checks[0].Err = fmt.Errorf("not writable: %w", checks[0].Err)
	}
	m.mu.Lock()
	chats := slices.Clone(m.chats)
	leader := m.leader
	m.mu.Unlock()
	if leader != nil {
		c := Check{Name: "leader", Note: "active"}
		if active, holder := leader(); !active {
			c.Note = "standby; active: " + cmpOr(holder, "unknown")
		}
		checks = append(checks, c)
	}
	for _, c := range chats {
		var err error
		if !c.connected() {
			err = errors.New("not connected")
		}
		checks = append(checks, Check{Name: "chat " + c.network, Err: err})
	}
	return checks
}

// Handler serves /metrics and /healthz.
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:      m.reg,
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // a failed store read must not hide the other metrics
		Timeout:       2 * m.timeout,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		checks := m.Health(r.Context())
		var failed []string
		var body strings.Builder
		for _, c := range checks {
			if c.Err != nil {
				failed = append(failed, c.Name)
				fmt.Fprintf(&body, "%s: FAIL: %v\n", c.Name, c.Err)
			} else if c.Note != "" {
				fmt.Fprintf(&body, "%s: ok (%s)\n", c.Name, c.Note)
			} else {
				fmt.Fprintf(&body, "%s: ok\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n%s", strings.Join(failed, ", "), body.String())
			return
		}
		fmt.Fprintf(w, "ready\n%s", body.String())
	})
	return mux
}

// Listen opens the listener for http.listen before anything else starts,
// so a bad or taken address stops poolbot at once with a clear error.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
