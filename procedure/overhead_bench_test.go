package procedure

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/logmsgbot"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	"poolbot/internal/testenv/site"
	"poolbot/sal"
	"poolbot/store"
)

// BenchmarkOrchestrationOverhead100Hosts measures what the engine costs on
// top of the work it orchestrates: a restart of 100 registry hosts through
// the engine against a bare loop doing exactly the same per-host work, in
// the same run.
//
// Both sides restart 100 real registries (one process per host,
// 127.0.0.2 to .101 on the same ports, as in production) through the same
// local executor (this test binary as systemctl), wait for the same
// health checks and run the same write-then-read blob probe, with pace 0.
// The engine side adds what production adds: the store on disk with the
// production SQLite settings (WAL, synchronous FULL), every host step,
// audit event and SAL line stored before it is acted on, the SAL sender
// delivering the outbox as lines are queued, the notices ordered behind
// the SAL lines, the deploy block on a real lock file and the gates. Its
// time runs from queueing the request to the END notice, said once the
// END line is delivered (no polling of the store). The sides
// alternate, each one first in every other round, so that load from the
// rest of the machine hits both alike.
//
// Reported: engine-ms/host and bare-ms/host (totals over all rounds),
// overhead-ratio (their quotient) and overhead-ms/host (their difference),
// and the median of the per-round ratios. On a loaded machine the two
// sides of a round can differ by more than the overhead; own-ms/host is
// the engine's time outside the host work (executor, health checks,
// probe) of the same request, timed as it runs, and own-ratio the
// engine's time over that work: the same quantity, without the noise
// between the two sides.
func BenchmarkOrchestrationOverhead100Hosts(b *testing.B) { benchmarkOverhead(b, 100) }

func benchmarkOverhead(b *testing.B, n int) {
	w := site.New(b, n)
	ctx := context.Background()

	// This test binary is every host's systemctl (site.Main), reached
	// through env(1) with the site's control URL.
	executor, err := restart.NewLocal(restart.LocalConfig{Command: []string{"/usr/bin/env", site.EnvCtl + "=" + w.Systemctl.URL,
		os.Args[0], "{host}", "{argv}"}}, restart.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rcfg := registry.DefaultConfig()
	rcfg.Health.Interval, rcfg.Health.WaitTimeout, rcfg.Health.Consecutive = 100*time.Millisecond, 20*time.Second, 1
	regClient, err := registry.New(rcfg, registry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	plan := restart.Plan{Hosts: w.Hosts, Units: []string{"docker-registry-restricted.service"},
		PerHostTimeout: time.Minute, RestartCommand: restart.DefaultRestartCommand(), CheckCommand: restart.DefaultCheckCommand()}
	instances := func(host string) []registry.Instance {
		return []registry.Instance{{Name: "restricted", Host: host, Port: w.Port, DebugPort: w.DebugPort}}
	}
	health := registry.WaitOptions{}

	// The bare loop: per host exactly what restartOneHost does.
	bare := func() {
		for _, h := range w.Hosts {
			if _, err := restart.RestartHost(ctx, executor, plan, h); err != nil {
				b.Fatal(err)
			}
			for _, inst := range instances(h) {
				if err := regClient.WaitHealthy(ctx, inst, health); err != nil {
					b.Fatal(err)
				}
				if res := regClient.Probe(ctx, inst, ""); !res.OK {
					b.Fatalf("probe %s: %s", inst, res)
				}
			}
		}
	}

	// The engine, as poolbot wires it.
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "poolbot.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	scfg := scap.DefaultConfig()
	scfg.Locks.Files = []string{w.GlobalLock(), filepath.Join(w.LockDir, "scap.srv_mediawiki-staging.lock")}
	scfg.DeployBlock.GlobalLock = w.GlobalLock()
	sc, err := scap.New(scfg, scap.Options{Relay: logmsgbot.New(logmsgbot.Config{})})
	if err != nil {
		b.Fatal(err)
	}
	sink := &countingSink{}
	sender := sal.NewSender(st, sink, nil, nil)
	ends := endNotices(make(chan poolbot.Notice, 4))
	// As in poolbot: each notice follows the SAL lines queued before it,
	// so the END notice comes once the END line was delivered.
	ordered := sal.NewOrderedAnnouncer(st, ends, nil)
	sender.Delivered = ordered.Delivered
	cal := &fakeCalendar{}
	cal.set(calendar.NewSchedule(time.Now(), time.Now().Add(30*24*time.Hour), nil), nil)
	// The engine's host work is timed as it runs, so that its own cost
	// is also seen apart from the bare loop's, in the same request.
	work := &hostWork{}
	svc := &Service{Name: "apus", Datacenters: []string{"eqiad", "codfw"}, Plan: plan,
		Executor: timedExecutor{executor, work}, Registry: timedChecker{regClient, work}, Probe: true, Instances: instances}
	e, err := New(Config{PerHostEstimate: 150 * time.Millisecond, MaxWait: time.Hour, Health: health},
		Deps{Store: st, Calendar: cal, Scap: sc.Monitor, Blocker: sc.Blocker, Announce: ordered, SALWritten: sender.Wake},
		[]*Service{svc})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	runCtx, stop := context.WithCancel(ctx)
	engineDone, senderDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(engineDone); _ = e.Run(runCtx) }()
	go func() { defer close(senderDone); _ = sender.Run(runCtx) }()
	defer func() { stop(); <-engineDone; <-senderDone }()

	engine := func() {
		var r poolbot.Request
		if err := st.Tx(ctx, func(tx *store.Tx) error {
			r, err = tx.InsertRequest(poolbot.Request{Action: poolbot.ActionRestart, Service: "apus",
				Reason: "overhead benchmark", Operator: "alice", Origin: poolbot.Origin{Network: "console"}})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		e.Notify("apus")
		end := <-ends
		if end.Request != r.ID || end.State != poolbot.StateDone {
			b.Fatalf("END notice: %s", end)
		}
		if n, err := st.SALBacklog(ctx); err != nil || n != 0 {
			b.Fatalf("END notice said with %d SAL lines undelivered (%v)", n, err)
		}
	}
	var engineTotal, bareTotal, workTotal time.Duration
	var ratios []float64
	round := 0
	for b.Loop() {
		var te, tb time.Duration
		sides := []func(){
			func() {
				work.total.Store(0)
				start := time.Now()
				engine()
				te = time.Since(start)
				workTotal += time.Duration(work.total.Load())
			},
			func() { start := time.Now(); bare(); tb = time.Since(start) },
		}
		if round%2 == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			side()
		}
		round++
		engineTotal += te
		bareTotal += tb
		ratios = append(ratios, float64(te)/float64(tb))
	}
	if want := int64(round * (n + 4)); sink.lines.Load() != want {
		b.Fatalf("%d SAL lines delivered, want %d (START, block taken, %d hosts, block released, END per round)", sink.lines.Load(), want, n)
	}
	perHost := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(round*n) }
	slices.Sort(ratios)
	b.ReportMetric(perHost(engineTotal), "engine-ms/host")
	b.ReportMetric(perHost(bareTotal), "bare-ms/host")
	b.ReportMetric(perHost(engineTotal-bareTotal), "overhead-ms/host")
	b.ReportMetric(float64(engineTotal)/float64(bareTotal), "overhead-ratio")
	b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
	b.ReportMetric(perHost(engineTotal-workTotal), "own-ms/host")
	b.ReportMetric(float64(engineTotal)/float64(workTotal), "own-ratio")
	b.Logf("per-round ratios: %s", fmt.Sprint(ratios))
}

// endNotices passes on the END notices the engine announces.
type endNotices chan poolbot.Notice

func (c endNotices) Announce(_ context.Context, n poolbot.Notice) {
	if n.Kind == poolbot.NoticeEnded {
		c <- n
	}
}

// countingSink delivers SAL lines nowhere and counts them: the benchmark
// measures storing and marking them, not a chat network.
type countingSink struct{ lines atomic.Int64 }

func (s *countingSink) Send(context.Context, string) error {
	s.lines.Add(1)
	return nil
}

// hostWork adds up the time spent in the per-host work: the executor's
// commands, the health checks and the probes.
type hostWork struct{ total atomic.Int64 }

func (w *hostWork) since(start time.Time) { w.total.Add(int64(time.Since(start))) }

// timedExecutor is the real executor, timed.
type timedExecutor struct {
	restart.Executor
	work *hostWork
}

func (t timedExecutor) Run(ctx context.Context, host string, argv []string) (restart.Result, error) {
	defer t.work.since(time.Now())
	return t.Executor.Run(ctx, host, argv)
}

// timedChecker is the real registry client, timed.
type timedChecker struct {
	registry.Checker
	work *hostWork
}

func (t timedChecker) WaitHealthy(ctx context.Context, inst registry.Instance, opts registry.WaitOptions) error {
	defer t.work.since(time.Now())
	return t.Checker.WaitHealthy(ctx, inst, opts)
}

func (t timedChecker) Probe(ctx context.Context, inst registry.Instance, repo string) registry.ProbeResult {
	defer t.work.since(time.Now())
	return t.Checker.Probe(ctx, inst, repo)
}
