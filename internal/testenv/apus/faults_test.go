package apus_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	intreg "poolbot/integrations/registry"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/registry"
)

func probeClient(t *testing.T, timeout time.Duration) *intreg.Client {
	t.Helper()
	cfg := intreg.DefaultConfig()
	cfg.Probe.Timeout = timeout
	cfg.Health.Timeout = 2 * time.Second
	c, err := intreg.New(cfg, intreg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func target(h *host) intreg.Instance {
	return intreg.Instance{Name: "restricted", Host: "127.0.0.1", Port: h.reg.Port, DebugPort: h.reg.DebugPort}
}

// TestProbeFailsClosedWhenTheSiteIsDown: the registry's S3 site stops
// answering (gateway stopped: connections refused). The write-then-read
// probe fails at its first step with the registry's error; which one
// depends on whether the registry's storage health check has failed yet:
// before (WMF: 3 × 10 s), the S3 error itself (500); after, 503
// UNAVAILABLE, with /debug/health naming the s3 driver, the endpoint and
// the address it dialled.
func TestProbeFailsClosedWhenTheSiteIsDown(t *testing.T) {
	a := sites(t)
	ctx := context.Background()
	slowHealth := startHost(t, a, "registry2002", "codfw", registry.Options{HealthInterval: time.Hour})
	fastHealth := startHost(t, a, "registry2003", "codfw", registry.Options{})
	c := probeClient(t, 30*time.Second)
	for _, h := range []*host{slowHealth, fastHealth} {
		if res := c.Probe(ctx, target(h), "lab/probe"); !res.OK {
			t.Fatalf("probe with the site up: %v", res)
		}
	}

	site := a.Sites["codfw"]
	if err := site.StopGateway(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := site.StartGateway(context.Background()); err != nil {
			t.Errorf("restart codfw gateway: %v", err)
		}
	})
	res := c.Probe(ctx, target(slowHealth), "lab/probe")
	t.Logf("site down, health check not yet failed: %v", res)
	if res.OK || res.Step != intreg.StepStartUpload || res.Status != http.StatusInternalServerError {
		t.Fatalf("probe with the site down: %v, want a failure at %s with HTTP 500", res, intreg.StepStartUpload)
	}

	// Health: the storage check (interval 250 ms, threshold 1) fails.
	var body string
	testenv.EventuallyReport(t, 15*time.Second, "health to fail with the site down", func() (bool, string) {
		var status int
		status, body = get(t, "http://"+fastHealth.reg.DebugAddr+"/debug/health")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "storagedriver_s3"), fmt.Sprintf("%d %s", status, body)
	})
	t.Logf("health with the site down: %s", body)
	if !strings.Contains(body, "connection refused") || !strings.Contains(body, a.Address("codfw")) {
		t.Errorf("health body does not say what failed: %s", body)
	}
	res = c.Probe(ctx, target(fastHealth), "lab/probe")
	t.Logf("site down, health check failed: %v", res)
	if res.OK || res.Step != intreg.StepStartUpload || res.Status != http.StatusServiceUnavailable {
		t.Fatalf("probe with the site down and health failed: %v, want %s with HTTP 503", res, intreg.StepStartUpload)
	}
}

// TestProbeIsBoundedWhenTheSiteHangs: the site accepts connections but
// answers nothing (gateway frozen). The driver sets no timeout of its own
// (registry.S3Storage), so what bounds the probe is its own timeout: it
// fails in that time, and the registry gives up the S3 call when the
// client goes away. After the thaw the registry works again.
func TestProbeIsBoundedWhenTheSiteHangs(t *testing.T) {
	a := sites(t)
	ctx := context.Background()
	h := startHost(t, a, "registry1004", "eqiad", registry.Options{})
	const timeout = 3 * time.Second
	c := probeClient(t, timeout)
	if res := probeClient(t, 30*time.Second).Probe(ctx, target(h), "lab/probe"); !res.OK {
		t.Fatalf("probe with the site up: %v", res)
	}
	site := a.Sites["eqiad"]
	if err := site.FreezeGateway(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := site.ThawGateway(); err != nil {
				t.Errorf("thaw eqiad gateway: %v", err)
			}
		}
	}
	t.Cleanup(thaw)

	start := time.Now()
	res := c.Probe(ctx, target(h), "lab/probe") // timeout 3 s
	took := time.Since(start)
	t.Logf("site hanging: %v (returned after %s)", res, took.Round(time.Millisecond))
	if res.OK || res.Code != intreg.CodeTimeout {
		t.Fatalf("probe with the site hanging: %v, want %s", res, intreg.CodeTimeout)
	}
	// The registry gave up its S3 call when the probe's connection closed.
	testenv.EventuallyReport(t, 5*time.Second, "the registry to cancel its S3 call when the client left", func() (bool, string) {
		return strings.Contains(h.reg.LogTail(8192), "s3aws: RequestCanceled: request context canceled"), h.reg.LogTail(2048)
	})
	// What the registry's own health check does meanwhile: its Stat has no
	// timeout either, so the check hangs and its last result, healthy,
	// stays: /debug/health hides a hanging S3 (here for 8 intervals; it
	// would forever). Only a write-then-read probe with a deadline sees it.
	for range 8 {
		time.Sleep(250 * time.Millisecond)
		if status, body := get(t, "http://"+h.reg.DebugAddr+"/debug/health"); status != http.StatusOK || body != "{}" {
			t.Fatalf("health with the site hanging: %d %q; distribution's health check now notices a hanging S3", status, body)
		}
	}
	t.Logf("health with the site hanging: still 200 {} after 2 s")

	thaw()
	thawedAt := time.Now()
	deadline := thawedAt.Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		res = probeClient(t, 30*time.Second).Probe(ctx, target(h), "lab/probe")
		if res.OK {
			t.Logf("probe ok %s after the thaw (attempt %d)", time.Since(thawedAt).Round(time.Millisecond), attempt)
			break
		}
		t.Logf("probe after the thaw: %v", res)
		if time.Now().After(deadline) {
			t.Fatalf("probe after the thaw: %v", res)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
