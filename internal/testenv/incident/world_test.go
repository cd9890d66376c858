package incident_test

import (
	"context"
	"os"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/incident"
)

// BenchmarkWorld measures the start of the incident world (to every host
// resolving apus) and its memory: the RSS of every server process.
//
//	go test ./internal/testenv/incident/ -run '^$' -bench World -benchtime 2x
func BenchmarkWorld(b *testing.B) {
	if err := incident.Check(); err != nil {
		if testenv.InCI() {
			b.Fatal(err)
		}
		b.Skip(err)
	}
	var rss int64
	var start time.Duration
	for range b.N {
		dir, err := os.MkdirTemp("", "poolbot-incident-bench-")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		t0 := time.Now()
		w, err := incident.Launch(ctx, dir, incident.Options{Pooled: map[string]bool{"eqiad": true, "codfw": false}})
		if err == nil {
			err = w.WaitResolves(ctx, "eqiad", 30*time.Second)
		}
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		b.StopTimer()
		start += time.Since(t0)
		for _, pid := range w.PIDs() {
			n, err := testenv.RSS(pid)
			if err != nil {
				b.Fatal(err)
			}
			rss += n
		}
		w.Close()
		cancel()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(rss)/float64(b.N)/(1<<20), "MiB-RSS")
	b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "ms-start")
}
