package monitoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poolbot"
	"poolbot/store"
)

var t0 = time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)

// newMonitor returns a Monitor over a real SQLite store holding two queued requests
// and one undelivered SAL line.
func newMonitor(t *testing.T) (*Monitor, *store.Store, *clockwork.FakeClock) {
	t.Helper()
	ctx := context.Background()
	clock := clockwork.NewFakeClockAt(t0)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "poolbot.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := st.Tx(ctx, func(tx *store.Tx) error {
			r, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: dc,
				Reason: "T1 test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
			if err != nil {
				return err
			}
			if dc == "codfw" {
				return tx.QueueSAL(r.ID, "poolbot #2 alice: START - test")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(Options{Registry: prometheus.NewRegistry(), Store: st, Services: []string{"apus"}, Version: "v1.2.3", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return m, st, clock
}

func TestMetrics(t *testing.T) {
	m, _, clock := newMonitor(t)
	var connected atomic.Bool
	connected.Store(true)
	if err := m.AddChat("irc", connected.Load); err != nil {
		t.Fatal(err)
	}
	fetched := t0.Add(-3 * time.Minute)
	if err := m.AddCalendar(func() time.Time { return fetched }); err != nil {
		t.Fatal(err)
	}

	// Nothing reported yet: every gate open, nothing blocked.
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP poolbot_blocked_seconds How long the head request of the service's queue has waited, counted from when it was created (time queued behind another request of the service included); 0 when none waits.
# TYPE poolbot_blocked_seconds gauge
poolbot_blocked_seconds{service="apus"} 0
`), "poolbot_blocked_seconds"); err != nil {
		t.Fatal(err)
	}

	// The head request waits on the calendar and scap since 90 s ago.
	// Every host's series exist at 0, both outcomes, before any restart.
	m.SeedHosts("apus", []string{"registry1003", "registry1004"})
	if n := testutil.CollectAndCount(m.hostRestart, "poolbot_host_restart_duration_seconds"); n != 4 {
		t.Fatalf("%d host restart series before any restart, want 4 (2 hosts × ok, fail)", n)
	}
	m.Gates("apus", []string{"calendar", "scap"}, t0.Add(-90*time.Second))
	clock.Advance(10 * time.Second)
	m.HostRestarted("apus", "registry1003", 12*time.Second, nil)
	m.HostRestarted("apus", "registry1004", 3*time.Second, errors.New("unit failed"))

	want := `
# HELP poolbot_blocked_seconds How long the head request of the service's queue has waited, counted from when it was created (time queued behind another request of the service included); 0 when none waits.
# TYPE poolbot_blocked_seconds gauge
poolbot_blocked_seconds{service="apus"} 100
# HELP poolbot_build_info Always 1; the version label is the running build.
# TYPE poolbot_build_info gauge
poolbot_build_info{version="v1.2.3"} 1
# HELP poolbot_calendar_last_success_timestamp_seconds Unix time of the last successful deployment calendar fetch; 0 before the first.
# TYPE poolbot_calendar_last_success_timestamp_seconds gauge
poolbot_calendar_last_success_timestamp_seconds 1.79544282e+09
# HELP poolbot_chat_connected 1 while the chat connection is up (IRC: registered with the server), else 0.
# TYPE poolbot_chat_connected gauge
poolbot_chat_connected{network="irc"} 1
# HELP poolbot_gate_closed 1 while the gate blocks the head request of the service's queue (calendar, scap, conftool, force, spicerack), else 0.
# TYPE poolbot_gate_closed gauge
poolbot_gate_closed{gate="calendar",service="apus"} 1
poolbot_gate_closed{gate="conftool",service="apus"} 0
poolbot_gate_closed{gate="force",service="apus"} 0
poolbot_gate_closed{gate="scap",service="apus"} 1
poolbot_gate_closed{gate="spicerack",service="apus"} 0
# HELP poolbot_sal_outbox_depth SAL lines stored but not yet delivered.
# TYPE poolbot_sal_outbox_depth gauge
poolbot_sal_outbox_depth 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "poolbot_blocked_seconds", "poolbot_build_info",
		"poolbot_calendar_last_success_timestamp_seconds", "poolbot_chat_connected", "poolbot_gate_closed", "poolbot_sal_outbox_depth"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.gateClosed.WithLabelValues("apus", "calendar")); got != 1 {
		t.Fatalf("calendar gate %v", got)
	}
	if n := testutil.CollectAndCount(m.hostRestart, "poolbot_host_restart_duration_seconds"); n != 4 {
		t.Fatalf("%d host restart series, want 4 (2 hosts × ok, fail)", n)
	}

	// Over HTTP, with the store-backed requests gauge.
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	body := get(t, srv.URL+"/metrics", http.StatusOK)
	for _, line := range []string{
		`poolbot_requests{state="queued"} 2`,
		`poolbot_requests{state="done"} 0`,
		`poolbot_host_restart_duration_seconds_bucket{host="registry1003",outcome="ok",service="apus",le="20"} 1`,
		`poolbot_host_restart_duration_seconds_count{host="registry1004",outcome="fail",service="apus"} 1`,
		`poolbot_host_restart_duration_seconds_count{host="registry1003",outcome="fail",service="apus"} 0`,
		`go_goroutines `, `process_open_fds `,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// The gates open: nothing blocked, every gate 0.
	m.Gates("apus", nil, time.Time{})
	connected.Store(false)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP poolbot_blocked_seconds How long the head request of the service's queue has waited, counted from when it was created (time queued behind another request of the service included); 0 when none waits.
# TYPE poolbot_blocked_seconds gauge
poolbot_blocked_seconds{service="apus"} 0
# HELP poolbot_chat_connected 1 while the chat connection is up (IRC: registered with the server), else 0.
# TYPE poolbot_chat_connected gauge
poolbot_chat_connected{network="irc"} 0
`), "poolbot_blocked_seconds", "poolbot_chat_connected"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.gateClosed.WithLabelValues("apus", "scap")); got != 0 {
		t.Fatalf("scap gate %v after it opened", got)
	}
}

// A store that cannot be read hides only its own metrics.
func TestMetricsStoreDown(t *testing.T) {
	m, st, _ := newMonitor(t)
	st.Close()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	body := get(t, srv.URL+"/metrics", http.StatusOK)
	if strings.Contains(body, "poolbot_requests{") || !strings.Contains(body, "poolbot_build_info") {
		t.Fatalf("metrics with the store down:\n%s", body)
	}
}

func TestHealthz(t *testing.T) {
	m, st, _ := newMonitor(t)
	var connected atomic.Bool
	if err := m.AddChat("irc", connected.Load); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	body := get(t, srv.URL+"/healthz", http.StatusServiceUnavailable)
	if body != "not ready: chat irc\nstore: ok\nchat irc: FAIL: not connected\n" {
		t.Fatalf("disconnected: %q", body)
	}
	connected.Store(true)
	if body := get(t, srv.URL+"/healthz", http.StatusOK); body != "ready\nstore: ok\nchat irc: ok\n" {
		t.Fatalf("ready: %q", body)
	}
	st.Close()
	body = get(t, srv.URL+"/healthz", http.StatusServiceUnavailable)
	if !strings.HasPrefix(body, "not ready: store\nstore: FAIL: not writable: ") {
		t.Fatalf("store closed: %q", body)
	}
	resp, err := http.Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %d", resp.StatusCode)
	}
}

// Serve answers on the listener and stops with its context.
func TestServe(t *testing.T) {
	m, _, _ := newMonitor(t)
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ctx, ln.Addr().String()); err == nil || !strings.HasPrefix(err.Error(), "http.listen ") {
		t.Fatalf("second listen on a taken port: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, m.Handler(), nil) }()
	get(t, "http://"+ln.Addr().String()+"/metrics", http.StatusOK)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a registry")
	}
}

func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, status, b)
	}
	return string(b)
}

// /healthz writes: a store whose file cannot be written is not ready,
// although it answers reads and could take a TEMP table.
func TestHealthzReadOnlyStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "poolbot.db")
	st, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	ro, err := store.OpenReadOnly(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	m, err := New(Options{Registry: prometheus.NewRegistry(), Store: ro, Services: []string{"apus"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	body := get(t, srv.URL+"/healthz", http.StatusServiceUnavailable)
	if !strings.HasPrefix(body, "not ready: store\nstore: FAIL: not writable: ") || !strings.Contains(body, "readonly database") {
		t.Fatalf("read-only store: %q", body)
	}
	// Reads still work: /metrics has the requests gauge.
	if body := get(t, srv.URL+"/metrics", http.StatusOK); !strings.Contains(body, `poolbot_requests{state="queued"} 0`) {
		t.Fatalf("metrics:\n%s", body)
	}
}

// A standby says so in /healthz and in the metrics, with the holder; the
// active one says it is active.
func TestLeaderState(t *testing.T) {
	m, _, _ := newMonitor(t)
	var active atomic.Bool
	holder := "poolbot@deploy1003 [4242] (instance 4e2677c7, since 14:10:00 UTC)"
	if err := m.AddLeader(func() (bool, string) { return active.Load(), holder }); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	if body := get(t, srv.URL+"/healthz", http.StatusOK); body != "ready\nstore: ok\nleader: ok (standby; active: "+holder+")\n" {
		t.Fatalf("standby: %q", body)
	}
	checkLeaderGauge(t, m, 0)
	want := `
# HELP poolbot_leader_holder_info Always 1; the holder label names the active poolbot (owner and instance), as this one last read it.
# TYPE poolbot_leader_holder_info gauge
poolbot_leader_holder_info{holder="` + holder + `"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "poolbot_leader_holder_info"); err != nil {
		t.Fatal(err)
	}
	active.Store(true)
	if body := get(t, srv.URL+"/healthz", http.StatusOK); body != "ready\nstore: ok\nleader: ok (active)\n" {
		t.Fatalf("active: %q", body)
	}
	checkLeaderGauge(t, m, 1)
}

func checkLeaderGauge(t *testing.T, m *Monitor, v int) {
	t.Helper()
	want := fmt.Sprintf(`
# HELP poolbot_leader 1 while this poolbot holds the leader lock and acts, 0 while it is standby.
# TYPE poolbot_leader gauge
poolbot_leader %d
`, v)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "poolbot_leader"); err != nil {
		t.Fatal(err)
	}
}
