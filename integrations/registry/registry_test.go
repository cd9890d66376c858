package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"poolbot/integrations/registry"
	"poolbot/internal/secret"
	"poolbot/internal/testenv"
	regtest "poolbot/internal/testenv/registry"
)

func TestHealthOK(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	c := newClient(t, testConfig(), registry.Options{})
	inst := target("restricted", ri)
	if err := c.Health(ctxT(t), inst); err != nil {
		t.Fatalf("Health: %v", err)
	}
	if err := c.WaitHealthy(ctxT(t), inst, registry.WaitOptions{Consecutive: 2}); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
}

func TestHealthBrokenStorageThenRecovery(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{HealthInterval: 200 * time.Millisecond, HealthThreshold: 1})
	c := newClient(t, testConfig(), registry.Options{})
	inst := target("ml", ri)
	ctx := ctxT(t)

	if err := ri.BreakStorage(); err != nil {
		t.Fatal(err)
	}
	// The registry notices on its next storage check (interval × threshold).
	var herr *registry.HealthError
	// One Health call asks /debug/health, then /v2/: a check that turns
	// between the two shows as /v2/ answering 503, a moment that passes.
	testenv.EventuallyReport(t, 5*time.Second, "health reports the broken storage on /debug/health", func() (bool, string) {
		err := c.Health(ctx, inst)
		return errors.As(err, &herr) && herr.Code == registry.HealthUnhealthy && herr.Endpoint == registry.EndpointDebugHealth, errString(err)
	})
	if herr.Endpoint != registry.EndpointDebugHealth || herr.Status != http.StatusServiceUnavailable {
		t.Errorf("endpoint %s status %d, want /debug/health 503", herr.Endpoint, herr.Status)
	}
	msg, ok := herr.Checks["storagedriver_filesystem"]
	if !ok || !strings.Contains(msg, "not a directory") {
		t.Errorf("failing checks %v, want storagedriver_filesystem: ... not a directory", herr.Checks)
	}
	for _, want := range []string{"ml@127.0.0.1:", "/debug/health", "unhealthy", "HTTP 503", "storagedriver_filesystem"} {
		if !strings.Contains(herr.Error(), want) {
			t.Errorf("error %q does not mention %q", herr.Error(), want)
		}
	}

	// While a check fails the main port answers everything 503 UNAVAILABLE.
	res := c.Probe(ctx, inst, "")
	if res.OK || res.Code != registry.CodeUnavailable || res.Step != registry.StepStartUpload || res.Status != 503 {
		t.Errorf("probe on unhealthy registry: %+v", res)
	}

	if err := ri.FixStorage(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, inst, registry.WaitOptions{Interval: 100 * time.Millisecond, Timeout: 10 * time.Second, Consecutive: 3}); err != nil {
		t.Fatalf("no recovery after FixStorage: %v", err)
	}
	if res := c.Probe(ctx, inst, ""); !res.OK {
		t.Fatalf("probe after recovery: %v", res)
	}
}

// A freshly restarted registry says `{}` until its storage check has run
// (interval × threshold): one healthy answer right after a restart proves
// nothing about storage. Consecutive checks spanning the interval, or the
// probe, catch it.
func TestHealthRightAfterRestartHidesBrokenStorage(t *testing.T) {
	t.Parallel()
	// The registry's first storage check runs one interval after it starts.
	// The answer and the probe must come before it: a long interval keeps a
	// loaded machine inside that window, and an attempt that still took
	// longer is repeated, since it can tell nothing.
	const interval = 5 * time.Second
	ri := regtest.Start(t, regtest.Options{HealthInterval: interval, HealthThreshold: 1})
	c := newClient(t, testConfig(), registry.Options{})
	inst := target("restricted", ri)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := ri.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ri.BreakStorage(); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		// Taken before the process starts, so the elapsed time is at least
		// the registry's own time since its check's ticker began.
		began := time.Now()
		if err := ri.Start(ctx); err != nil {
			t.Fatal(err)
		}
		herr := c.Health(ctx, inst)
		res := c.Probe(ctx, inst, "")
		if elapsed := time.Since(began); elapsed >= interval*9/10 {
			if attempt == 3 {
				t.Fatalf("restart, health and probe took %s each time, the registry's storage check may have run (interval %s)", elapsed, interval)
			}
			t.Logf("attempt %d: restart, health and probe took %s, too close to the registry's first storage check (%s); again", attempt, elapsed, interval)
			if err := ri.Stop(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if herr != nil {
			t.Fatalf("expected the just-started registry to claim health before its first storage check: %v", herr)
		}
		if res.OK || res.Code != registry.CodeHTTP5xx {
			t.Errorf("probe against broken storage: %v, want http_5xx", res)
		}
		break
	}
	// Fourteen healthy answers 500ms apart span 6.5s, past the registry's
	// first check; the wait allows them all, were the registry to stay
	// healthy.
	err := c.WaitHealthy(ctx, inst, registry.WaitOptions{Interval: 500 * time.Millisecond, Timeout: interval + 4*time.Second, Consecutive: 14})
	var herr *registry.HealthError
	if !errors.As(err, &herr) || herr.Code != registry.HealthUnhealthy {
		t.Fatalf("WaitHealthy over 6.5s = %v, want unhealthy", err)
	}
}

func TestProbeOK(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	noDelete := regtest.Start(t, regtest.Options{DisableDelete: true})
	inst := target("restricted", ri)

	t.Run("chunked", func(t *testing.T) {
		t.Parallel()
		rt := &reroute{base: baseTransport()}
		c := newClient(t, testConfig(), registry.Options{Transport: rt})
		res := c.Probe(ctxT(t), inst, "")
		if !res.OK || res.Code != registry.CodeOK || res.Err != nil || res.Step != "" || !res.Deleted {
			t.Fatalf("probe: %+v", res)
		}
		if !strings.HasPrefix(res.Digest, "sha256:") || res.Repository != registry.DefaultProbeRepository {
			t.Errorf("digest %q repository %q", res.Digest, res.Repository)
		}
		host := ri.Addr
		want := []string{"POST " + host, "PATCH " + host, "PUT " + host, "HEAD " + host, "GET " + host, "DELETE " + host}
		if got := rt.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("requests %v, want %v", got, want)
		}
		// Deleted means gone.
		req, _ := http.NewRequest(http.MethodHead, ri.URL()+"/v2/"+res.Repository+"/blobs/"+res.Digest, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD deleted blob = %d, want 404", resp.StatusCode)
		}
	})
	t.Run("monolithic", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig()
		cfg.Probe.Monolithic = true
		cfg.Probe.BlobSize = 64 << 10
		rt := &reroute{base: baseTransport()}
		c := newClient(t, cfg, registry.Options{Transport: rt})
		res := c.Probe(ctxT(t), inst, "restricted/poolbot-probe")
		if !res.OK || res.Repository != "restricted/poolbot-probe" {
			t.Fatalf("probe: %+v", res)
		}
		if got := rt.requests(); len(got) != 5 || !strings.HasPrefix(got[1], "PUT ") {
			t.Errorf("requests %v, want POST PUT HEAD GET DELETE", got)
		}
	})
	t.Run("deletion disabled", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, testConfig(), registry.Options{})
		res := c.Probe(ctxT(t), target("ml", noDelete), "")
		if !res.OK || res.Deleted {
			t.Fatalf("probe: %+v, want OK without deletion", res)
		}
	})
	t.Run("invalid repository", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, testConfig(), registry.Options{})
		res := c.Probe(ctxT(t), inst, "Poolbot/Probe")
		if res.OK || res.Code != registry.CodeInvalidRepository || res.Step != registry.StepValidate {
			t.Fatalf("probe: %+v", res)
		}
	})
}

// Upload state is in storage, so restarting the registry process between the
// steps of a push does not break the push.
func TestProbeSurvivesRestartBetweenSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		method string // restart before this request
		stop   func(*regtest.Instance) error
	}{
		{"systemctl restart before PUT", http.MethodPut, (*regtest.Instance).Stop},
		{"crash before PATCH", http.MethodPatch, (*regtest.Instance).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ri := regtest.Start(t, regtest.Options{})
			firstPID := ri.PID()
			var restarted atomic.Bool
			rt := &reroute{base: baseTransport(), before: func(r *http.Request) error {
				if r.Method != tc.method || restarted.Swap(true) {
					return nil
				}
				if err := tc.stop(ri); err != nil {
					return err
				}
				return ri.Start(r.Context())
			}}
			c := newClient(t, testConfig(), registry.Options{Transport: rt})
			res := c.Probe(ctxT(t), target("restricted", ri), "")
			if !restarted.Load() || ri.PID() == firstPID {
				t.Fatalf("the registry was not restarted during the probe (pid %d)", ri.PID())
			}
			if !res.OK {
				t.Fatalf("probe across a restart: %v", res)
			}
		})
	}
}

// The incident's mechanism: one push whose requests reach two registries
// that share http.secret but not storage (two apus datacenters that have
// not replicated each other's writes yet).
func TestProbeAcrossStorages(t *testing.T) {
	t.Parallel()
	a, b := regtest.StartPair(t, regtest.Options{})
	sharedDir := t.TempDir()
	sa, sb := regtest.StartPair(t, regtest.Options{StorageDir: sharedDir})
	otherSecret := regtest.Start(t, regtest.Options{Secret: "another-secret"})

	for _, tc := range []struct {
		name       string
		from       *regtest.Instance
		method, to string
		wantCode   string
		wantStep   string
		wantStatus int
	}{
		{"PUT reaches the other storage", a, http.MethodPut, b.Addr, registry.CodeBlobUploadUnknown, registry.StepCompleteUpload, 404},
		{"PATCH reaches the other storage", a, http.MethodPatch, b.Addr, registry.CodeBlobUploadUnknown, registry.StepUploadChunk, 404},
		{"read before replication", a, http.MethodHead, b.Addr, registry.CodeBlobUnknown, registry.StepCheckBlob, 404},
		{"GET from the other storage", a, http.MethodGet, b.Addr, registry.CodeBlobUnknown, registry.StepFetchBlob, 404},
		{"other http.secret", a, http.MethodPut, otherSecret.Addr, registry.CodeBlobUploadInvalid, registry.StepCompleteUpload, 404},
		{"shared storage and secret", sa, http.MethodPut, sb.Addr, registry.CodeOK, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := &reroute{base: baseTransport(), to: onMethod(tc.method, tc.to)}
			c := newClient(t, testConfig(), registry.Options{Transport: rt})
			res := c.Probe(ctxT(t), target("restricted", tc.from), "")
			if res.Code != tc.wantCode || res.Step != tc.wantStep || res.Status != tc.wantStatus {
				t.Fatalf("probe = code %q step %q status %d (%v), want %q %q %d",
					res.Code, res.Step, res.Status, res.Err, tc.wantCode, tc.wantStep, tc.wantStatus)
			}
			if tc.wantCode == registry.CodeOK {
				if !res.OK {
					t.Fatalf("probe: %v", res)
				}
				return
			}
			var pe *registry.ProbeError
			if res.OK || !errors.As(res.Err, &pe) {
				t.Fatalf("probe error %T %v", res.Err, res.Err)
			}
			if tc.method != http.MethodHead && (len(pe.Registry) == 0 || pe.Registry[0].Code != tc.wantCode) {
				t.Errorf("registry errors %v, want %s from the body", pe.Registry, tc.wantCode)
			}
			if !strings.Contains(res.String(), tc.wantCode) || !strings.Contains(res.String(), tc.wantStep) {
				t.Errorf("summary %q lacks code or step", res.String())
			}
		})
	}
}

func TestProbeAndHealthOnStoppedInstance(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	if err := ri.Stop(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, testConfig(), registry.Options{})
	inst := target("ml", ri)
	res := c.Probe(ctxT(t), inst, "")
	if res.OK || res.Code != registry.CodeNetwork || res.Step != registry.StepStartUpload || res.Status != 0 {
		t.Fatalf("probe on stopped registry: %+v", res)
	}
	var herr *registry.HealthError
	if err := c.Health(ctxT(t), inst); !errors.As(err, &herr) || herr.Code != registry.CodeNetwork || herr.Endpoint != registry.EndpointDebugHealth {
		t.Fatalf("health on stopped registry: %v", err)
	}
}

// A wedged registry (SIGSTOPped: the kernel still accepts connections) must
// end in a timeout, not hang the procedure.
func TestProbeAndHealthOnFrozenInstance(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	if err := ri.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ri.Resume() })
	cfg := testConfig()
	cfg.Probe.Timeout = 300 * time.Millisecond
	cfg.Health.Timeout = 300 * time.Millisecond
	c := newClient(t, cfg, registry.Options{})
	inst := target("restricted", ri)
	start := time.Now()
	res := c.Probe(ctxT(t), inst, "")
	if res.OK || res.Code != registry.CodeTimeout || res.Step != registry.StepStartUpload {
		t.Fatalf("probe on frozen registry: %+v", res)
	}
	var herr *registry.HealthError
	if err := c.Health(ctxT(t), inst); !errors.As(err, &herr) || herr.Code != registry.CodeTimeout {
		t.Fatalf("health on frozen registry: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s with 300ms timeouts", d)
	}
	// A caller's cancellation is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := c.Probe(ctx, inst, ""); res.Code != registry.CodeCanceled {
		t.Errorf("cancelled probe: code %q", res.Code)
	}
}

func TestProbeAndHealthWithBasicAuth(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{Users: map[string]string{"poolbot": "correct horse"}})
	inst := target("restricted", ri)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	writeFile(t, good, "correct horse\n")
	writeFile(t, bad, "battery staple\n")

	withAuth := func(pwFile string) registry.Config {
		cfg := testConfig()
		cfg.Auth = registry.AuthConfig{Username: "poolbot", Password: secret.Ref{File: pwFile}}
		return cfg
	}
	t.Run("credentials", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, withAuth(good), registry.Options{})
		if err := c.Health(ctxT(t), inst); err != nil {
			t.Fatalf("health: %v", err)
		}
		if res := c.Probe(ctxT(t), inst, ""); !res.OK {
			t.Fatalf("probe: %v", res)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, withAuth(bad), registry.Options{})
		if res := c.Probe(ctxT(t), inst, ""); res.Code != registry.CodeUnauthorized || res.Status != 401 {
			t.Fatalf("probe: %+v", res)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, testConfig(), registry.Options{})
		var herr *registry.HealthError
		err := c.Health(ctxT(t), inst)
		if !errors.As(err, &herr) || herr.Endpoint != registry.EndpointV2 || herr.Code != registry.HealthBadStatus || herr.Status != 401 {
			t.Fatalf("health: %v", err)
		}
		if len(herr.Registry) == 0 || herr.Registry[0].Code != registry.CodeUnauthorized {
			t.Errorf("registry errors %v", herr.Registry)
		}
		if res := c.Probe(ctxT(t), inst, ""); res.Code != registry.CodeUnauthorized {
			t.Fatalf("probe: %+v", res)
		}
		// Behind an authenticating proxy 401 on /v2/ is what "up" looks like.
		cfg := testConfig()
		cfg.Health.V2ExpectStatus = http.StatusUnauthorized
		if err := newClient(t, cfg, registry.Options{}).Health(ctxT(t), inst); err != nil {
			t.Fatalf("health expecting 401: %v", err)
		}
	})
}

// A corrupt blob in storage (cf. the 2025-03-31 corrupt-blob incident): the
// upload succeeds because the registry trusts the blob it already has, and
// only reading the bytes back shows the damage.
func TestProbeDetectsCorruptStoredBlob(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	inst := target("restricted", ri)
	clock := fakeClock()
	cfg := testConfig()
	// Learn the blob this client will write: same config, same clock, same random stream.
	learner := newClient(t, cfg, registry.Options{Clock: clock, Rand: &patternReader{next: 1}})
	first := learner.Probe(ctxT(t), inst, "")
	if !first.OK {
		t.Fatalf("learning probe: %v", first)
	}
	for _, tc := range []struct {
		name     string
		corrupt  func(data []byte) []byte
		wantStep string
	}{
		{"flipped byte", func(d []byte) []byte { d[100] ^= 0xff; return d }, registry.StepFetchBlob},
		{"truncated", func(d []byte) []byte { return d[:200] }, registry.StepCheckBlob},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, cfg, registry.Options{Clock: clock, Rand: &patternReader{next: 1}})
			// Recreate the blob bytes the same way Probe does.
			blob := make([]byte, cfg.Probe.BlobSize)
			_, _ = (&patternReader{next: 1}).Read(blob)
			copy(blob, "poolbot write-then-read probe restricted "+clock.Now().UTC().Format(time.RFC3339Nano)+"\n")
			sum := sha256.Sum256(blob)
			hexSum := hex.EncodeToString(sum[:])
			if "sha256:"+hexSum != first.Digest {
				t.Fatalf("test does not reproduce the probe blob: %s vs %s", hexSum, first.Digest)
			}
			data := filepath.Join(ri.RootDir(), "docker/registry/v2/blobs/sha256", hexSum[:2], hexSum, "data")
			writeFile(t, data, string(tc.corrupt(append([]byte(nil), blob...))))

			res := c.Probe(ctxT(t), inst, "")
			if res.OK || res.Code != registry.CodeBlobMismatch || res.Step != tc.wantStep {
				t.Fatalf("probe over corrupt blob: %+v", res)
			}
		})
	}
}

func TestWaitHealthyOnFakeClock(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	ctx := ctxT(t)

	t.Run("consecutive", func(t *testing.T) {
		clock := fakeClock()
		c := newClient(t, testConfig(), registry.Options{Clock: clock})
		done := make(chan error, 1)
		go func() {
			done <- c.WaitHealthy(ctx, target("ml", ri), registry.WaitOptions{Interval: 10 * time.Second, Timeout: time.Minute, Consecutive: 3})
		}()
		for range 2 {
			if err := clock.BlockUntilContext(ctx, 1); err != nil {
				t.Fatal(err)
			}
			clock.Advance(10 * time.Second)
		}
		if err := <-done; err != nil {
			t.Fatalf("WaitHealthy: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		clock := fakeClock()
		c := newClient(t, testConfig(), registry.Options{Clock: clock})
		down := registry.Instance{Name: "ml", Host: "127.0.0.1", Port: closedPort(t), DebugPort: closedPort(t)}
		done := make(chan error, 1)
		go func() {
			done <- c.WaitHealthy(ctx, down, registry.WaitOptions{Interval: 10 * time.Second, Timeout: 25 * time.Second})
		}()
		for _, step := range []time.Duration{10 * time.Second, 10 * time.Second, 5 * time.Second} {
			if err := clock.BlockUntilContext(ctx, 1); err != nil {
				t.Fatal(err)
			}
			clock.Advance(step)
		}
		err := <-done
		var werr *registry.WaitError
		var herr *registry.HealthError
		if !errors.As(err, &werr) || werr.Checks != 4 || werr.Elapsed != 25*time.Second || werr.Cause != nil {
			t.Fatalf("WaitHealthy = %#v", err)
		}
		if !errors.As(err, &herr) || herr.Code != registry.CodeNetwork {
			t.Fatalf("last error %v, want network", err)
		}
		if !strings.Contains(err.Error(), "not healthy after 00m 25s (4 checks)") {
			t.Errorf("message %q", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		clock := fakeClock()
		c := newClient(t, testConfig(), registry.Options{Clock: clock})
		down := registry.Instance{Name: "ml", Host: "127.0.0.1", Port: closedPort(t), DebugPort: closedPort(t)}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.WaitHealthy(cctx, down, registry.WaitOptions{}) }()
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		var werr *registry.WaitError
		if err := <-done; !errors.As(err, &werr) || !errors.Is(werr.Cause, context.Canceled) {
			t.Fatalf("WaitHealthy = %v", err)
		}
	})
}

// Ports that answer, but not as a healthy registry's debug or API listener.
func TestHealthWrongListeners(t *testing.T) {
	t.Parallel()
	ri := regtest.Start(t, regtest.Options{})
	c := newClient(t, testConfig(), registry.Options{})
	var herr *registry.HealthError

	// The debug port where the API port should be: /v2/ is 404 there.
	swapped := registry.Instance{Name: "ml", Host: "127.0.0.1", Port: ri.DebugPort, DebugPort: ri.DebugPort}
	if err := c.Health(ctxT(t), swapped); !errors.As(err, &herr) || herr.Endpoint != registry.EndpointV2 || herr.Code != registry.HealthBadStatus || herr.Status != 404 {
		t.Fatalf("health with debug port as API port: %v", err)
	}
	// The API port where the debug port should be: no /debug/health there.
	swapped = registry.Instance{Name: "ml", Host: "127.0.0.1", Port: ri.Port, DebugPort: ri.Port}
	if err := c.Health(ctxT(t), swapped); !errors.As(err, &herr) || herr.Endpoint != registry.EndpointDebugHealth || herr.Code != registry.HealthBadStatus {
		t.Fatalf("health with API port as debug port: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// The incident itself, on one registry: its storage endpoint flips to the
// other datacenter (apus repooled) in the middle of a push. The session
// started in eqiad is unknown in codfw; later pushes that stay on one side work.
func TestProbeWhenStorageFlipsMidPush(t *testing.T) {
	t.Parallel()
	eqiad, codfw := t.TempDir(), t.TempDir()
	apus := filepath.Join(t.TempDir(), "apus.discovery.wmnet")
	if err := os.Symlink(eqiad, apus); err != nil {
		t.Fatal(err)
	}
	ri := regtest.Start(t, regtest.Options{StorageDir: apus})
	var flipped atomic.Bool
	rt := &reroute{base: baseTransport(), before: func(r *http.Request) error {
		if r.Method == http.MethodPut && !flipped.Swap(true) {
			return ri.RepointStorage(codfw)
		}
		return nil
	}}
	c := newClient(t, testConfig(), registry.Options{Transport: rt})
	inst := target("restricted", ri)
	res := c.Probe(ctxT(t), inst, "")
	if res.Code != registry.CodeBlobUploadUnknown || res.Step != registry.StepCompleteUpload {
		t.Fatalf("probe across the flip: %+v", res)
	}
	if res := c.Probe(ctxT(t), inst, ""); !res.OK {
		t.Fatalf("probe after the flip: %v", res)
	}
}
