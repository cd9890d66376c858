package procedure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

// recordingBlocker notes when the deploy block is taken: the first
// mutating action of a request.
type recordingBlocker struct {
	mu    sync.Mutex
	taken chan time.Time
}

func (b *recordingBlocker) Block(context.Context, string) (scap.Release, error) {
	b.taken <- time.Now()
	return func(context.Context) error { return nil }, nil
}

// noRegistry has no instances to check: the benchmarks measure the
// engine, not registries.
type noRegistry struct{}

func (noRegistry) WaitHealthy(context.Context, registry.Instance, registry.WaitOptions) error {
	return nil
}
func (noRegistry) Probe(context.Context, registry.Instance, string) registry.ProbeResult {
	return registry.ProbeResult{OK: true}
}
func (noRegistry) Health(context.Context, registry.Instance) error { return nil }

func benchEngine(b *testing.B, hosts []string, exec restart.Executor, cal Calendar, blocker scap.Blocker, more ...func(*Deps)) (*Engine, *store.Store, func()) {
	b.Helper()
	st, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	svc := &Service{Name: "apus", Datacenters: []string{"eqiad", "codfw"},
		Plan: restart.Plan{Hosts: hosts, Units: []string{"docker-registry-restricted.service"},
			PerHostTimeout: time.Minute, RestartCommand: restart.DefaultRestartCommand(), CheckCommand: restart.DefaultCheckCommand()},
		Executor: exec, Registry: noRegistry{}, Instances: func(string) []registry.Instance { return nil }}
	deps := Deps{Store: st, Calendar: cal, Blocker: blocker}
	for _, m := range more {
		m(&deps)
	}
	e, err := New(Config{PerHostEstimate: time.Millisecond, MaxWait: time.Hour}, deps, []*Service{svc})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return e, st, func() { cancel(); <-done; st.Close() }
}

func queueRestart(b *testing.B, e *Engine, st *store.Store) poolbot.RequestID {
	var r poolbot.Request
	err := st.Tx(context.Background(), func(tx *store.Tx) error {
		var err error
		r, err = tx.InsertRequest(poolbot.Request{Action: poolbot.ActionRestart, Service: "apus",
			Reason: "bench", Operator: "alice", Origin: poolbot.Origin{Network: "console"}})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	e.Notify("apus")
	return r.ID
}

func waitDone(b *testing.B, st *store.Store, id poolbot.RequestID) poolbot.Request {
	for {
		r, err := st.Request(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if r.State.Terminal() {
			return r
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkReactionLatency measures, on the real clock, the time from the
// end of a blocking deployment window (the last gate opening) to the
// deploy block being taken (the first mutating action). The window's end
// is a gocron one-time job, not a poll. Reports p50 and p99.
func BenchmarkReactionLatency(b *testing.B) {
	cal := &fakeCalendar{}
	blocker := &recordingBlocker{taken: make(chan time.Time, 1)}
	e, st, stop := benchEngine(b, []string{"h1"}, okExecutor{}, cal, blocker)
	defer stop()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now()
		end := now.Add(30 * time.Millisecond)
		cal.set(calendar.NewSchedule(now, now.Add(24*time.Hour),
			[]calendar.Window{{ID: fmt.Sprint(i), Name: "w", Start: now.Add(-time.Minute), End: end}}), nil)
		id := queueRestart(b, e, st)
		taken := <-blocker.taken
		lat = append(lat, taken.Sub(end))
		waitDone(b, st, id)
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// BenchmarkReactionLatencyScapRelease measures, on the real clock, the
// time from a scap command releasing its (real, fcntl) lock on scap's
// global lock file — the holder process exits — to the deploy block being
// taken. The release is found by the periodic F_GETLK probe (scap_poll,
// default 250 ms), so p50 is about half the period and max about one
// period. Reports p50, p99 and max.
func BenchmarkReactionLatencyScapRelease(b *testing.B) {
	dir := b.TempDir()
	global := filepath.Join(dir, "scap-global-lock")
	if err := os.WriteFile(global, []byte("{}"), 0o666); err != nil {
		b.Fatal(err)
	}
	scfg := scap.DefaultConfig()
	scfg.Locks.Files = []string{global}
	scfg.DeployBlock.GlobalLock = global
	sc, err := scap.New(scfg, scap.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cal := &fakeCalendar{}
	cal.set(calendar.NewSchedule(time.Now(), time.Now().Add(24*time.Hour), nil), nil)
	blocker := &recordingBlocker{taken: make(chan time.Time, 1)}
	e, st, stop := benchEngine(b, []string{"h1"}, okExecutor{}, cal, blocker, func(d *Deps) { d.Scap = sc.Monitor })
	defer stop()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		release := site.HoldLock(b, global, "shared") // a scap sync runs
		id := queueRestart(b, e, st)
		for r, _ := st.Request(context.Background(), id); r.State != poolbot.StateWaiting; r, _ = st.Request(context.Background(), id) {
			time.Sleep(time.Millisecond)
		}
		// Release at a random phase of the probe period.
		time.Sleep(time.Duration(rand.Int64N(int64(250 * time.Millisecond))))
		release()
		released := time.Now()
		taken := <-blocker.taken
		lat = append(lat, taken.Sub(released))
		waitDone(b, st, id)
	}
	b.StopTimer()
	reportLatencies(b, lat)
}

// reportLatencies reports p50, p99 and max of lat.
func reportLatencies(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
}

// okExecutor succeeds at once, so the latency benchmark measures the
// engine alone.
type okExecutor struct{}

func (okExecutor) Run(_ context.Context, host string, argv []string) (restart.Result, error) {
	return restart.Result{Host: host, Argv: argv}, nil
}
