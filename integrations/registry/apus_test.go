package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"poolbot/integrations/registry"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/ceph"
	"poolbot/internal/testenv/haproxy"
	regtest "poolbot/internal/testenv/registry"
)

// s3Host is a registry host on apus: its registry resolves
// apus.discovery.wmnet through its own hosts file.
type s3Host struct {
	name string
	reg  *regtest.Instance
}

func (h s3Host) inst() registry.Instance { return target("restricted", h.reg) }

// TestProbeAcrossHostsOnApus runs the probe against real registries on
// two real Ceph RGW sites (testenv/apus) that do not replicate, as
// T422166's hosts were after apus moved: the subtests share the sites
// and run in order, since two of them stop a site.
func TestProbeAcrossHostsOnApus(t *testing.T) {
	for _, b := range ceph.Binaries {
		testenv.Need(t, b)
	}
	if err := apus.CheckNamespaces(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	a := apus.Start(t)
	start := func(name, dc string) s3Host {
		hf, err := apus.NewHostsFile(t.TempDir(), name, apus.Name, a.Address(dc))
		if err != nil {
			t.Fatal(err)
		}
		return s3Host{name: name, reg: regtest.Start(t, regtest.Options{S3: a.RegistryS3(), Wrapper: hf.Wrapper()})}
	}
	eqiad1, eqiad2, codfw1 := start("registry1001", "eqiad"), start("registry1002", "eqiad"), start("registry2001", "codfw")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := testConfig()
	cfg.Probe.Timeout = 30 * time.Second
	c := newClient(t, cfg, registry.Options{})

	t.Run("same site", func(t *testing.T) {
		res := c.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{Peers: []registry.Instance{eqiad2.inst()}})
		if !res.OK {
			t.Fatalf("probe across two hosts of eqiad: %v", res)
		}
	})

	t.Run("hosts on two sites", func(t *testing.T) {
		// Each host alone passes: that is the gap.
		for _, h := range []s3Host{eqiad1, codfw1} {
			if res := c.Probe(ctx, h.inst(), ""); !res.OK {
				t.Fatalf("same-instance probe on %s: %v", h.name, res)
			}
		}
		res := c.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{Peers: []registry.Instance{eqiad2.inst(), codfw1.inst()}})
		t.Logf("probe across sites: %v", res)
		var pe *registry.ProbeError
		if res.OK || !errors.As(res.Err, &pe) {
			t.Fatalf("probe across sites passed: %v", res)
		}
		if res.Code != registry.CodeBlobUploadUnknown || res.Step != registry.StepHandoff || res.Status != http.StatusNotFound || pe.Target != codfw1.inst().String() {
			t.Fatalf("probe across sites: code %s step %s status %d target %s, want BLOB_UPLOAD_UNKNOWN at handoff (404) on %s",
				res.Code, res.Step, res.Status, pe.Target, codfw1.inst())
		}
		// The registry's own answer, as a push through the balancer gets it.
		const said = `{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}`
		for _, want := range []string{said, "handoff on " + codfw1.inst().String(), "upload opened on " + eqiad1.inst().String()} {
			if !strings.Contains(res.String(), want) {
				t.Errorf("summary %q does not quote %q", res.String(), want)
			}
		}
		// The other way round, the read shows it too.
		res = c.ProbeAcross(ctx, codfw1.inst(), registry.ProbeOptions{Peers: []registry.Instance{eqiad1.inst()}})
		if res.OK || res.Code != registry.CodeBlobUploadUnknown {
			t.Fatalf("probe from codfw to eqiad: %v", res)
		}
		// EveryTarget goes on past the failing peer: one write tells
		// which peer disagrees and which agrees.
		res = c.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{Peers: []registry.Instance{codfw1.inst(), eqiad2.inst()}, EveryTarget: true})
		if res.OK || res.Code != registry.CodeBlobUploadUnknown || len(res.Targets) != 2 {
			t.Fatalf("probe of every target: %v, targets %+v", res, res.Targets)
		}
		if got := res.Targets[0]; got.Peer != codfw1.inst() || got.Err == nil || got.Err.Code != registry.CodeBlobUploadUnknown || got.Err != res.Err {
			t.Fatalf("codfw peer: %+v", got)
		}
		if got := res.Targets[1]; got.Peer != eqiad2.inst() || got.Err != nil {
			t.Fatalf("eqiad peer: %+v", got)
		}
	})

	t.Run("through the balancer", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			servers []s3Host
			ok      bool
		}{
			{"same site", []s3Host{eqiad2}, true},
			{"other site", []s3Host{codfw1}, false},
		} {
			var servers []haproxy.Server
			for _, h := range tc.servers {
				servers = append(servers, haproxy.Server{Name: h.name, Addr: h.reg.Addr})
			}
			lb := haproxy.Start(t, haproxy.Options{Servers: servers})
			bcfg := cfg
			bcfg.BalancerURL = lb.URL()
			bc := newClient(t, bcfg, registry.Options{})
			res := bc.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{ViaBalancer: true})
			t.Logf("%s: %v", tc.name, res)
			if tc.ok != res.OK {
				t.Fatalf("%s behind the balancer: %v", tc.name, res)
			}
			if !tc.ok && (res.Code != registry.CodeBlobUnknown || res.Step != registry.StepReadBalancer ||
				!strings.Contains(res.String(), `"code":"BLOB_UNKNOWN","message":"blob unknown to registry"`) ||
				!strings.Contains(res.String(), "balancer "+lb.Addr)) {
				t.Fatalf("%s behind the balancer: %v, want BLOB_UNKNOWN quoted at %s", tc.name, res, registry.StepReadBalancer)
			}
			if len(res.Targets) != 1 || res.Targets[0].Balancer != lb.Addr || (res.Targets[0].Err == nil) != tc.ok {
				t.Fatalf("%s behind the balancer: targets %+v", tc.name, res.Targets)
			}
			// Without ViaBalancer the balancer is not asked.
			if res := bc.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{}); !res.OK {
				t.Fatalf("probe without the balancer: %v", res)
			}
		}
	})

	// One site down: the probe fails closed, and its message names the
	// endpoint and the address the registry dialled (the site), before
	// and after the registry's own storage check has noticed.
	t.Run("site down", func(t *testing.T) {
		site := a.Sites["codfw"]
		if err := site.StopGateway(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := site.StartGateway(context.Background()); err != nil {
				t.Errorf("restart codfw gateway: %v", err)
			}
		}()
		addr := a.Address("codfw")
		for _, tc := range []struct {
			name  string
			probe func() registry.ProbeResult
		}{
			{"probed host on the site", func() registry.ProbeResult { return c.Probe(ctx, codfw1.inst(), "") }},
			{"peer on the site", func() registry.ProbeResult {
				return c.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{Peers: []registry.Instance{codfw1.inst()}})
			}},
		} {
			// 500 with the S3 error until the registry's storage check
			// fails (every 250 ms here), then 503 UNAVAILABLE with the
			// cause on /debug/health: both must name the site.
			deadline := time.Now().Add(15 * time.Second)
			seen := map[int]bool{}
			for !seen[http.StatusServiceUnavailable] {
				res := tc.probe()
				if res.OK {
					t.Fatalf("%s: probe passed with codfw down", tc.name)
				}
				msg := res.String()
				if !strings.Contains(msg, "connection refused") || !strings.Contains(msg, addr) || !strings.Contains(msg, apus.Name) {
					t.Fatalf("%s: the failure does not name the site (%s, %s): %s", tc.name, apus.Name, addr, msg)
				}
				if !seen[res.Status] {
					t.Logf("%s, HTTP %d: %s", tc.name, res.Status, msg)
				}
				seen[res.Status] = true
				if time.Now().After(deadline) {
					t.Fatalf("%s: no 503 after 15 s; seen %v", tc.name, seen)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})

	// The other site hangs (its gateway frozen): a probe whose peer writes
	// there fails within its timeout, naming the peer.
	t.Run("site hangs", func(t *testing.T) {
		// codfw's gateway may still be coming back from the last subtest.
		testenv.EventuallyReport(t, 30*time.Second, "codfw serves again", func() (bool, string) {
			res := c.Probe(ctx, codfw1.inst(), "")
			return res.OK, res.String()
		})
		site := a.Sites["codfw"]
		if err := site.FreezeGateway(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := site.ThawGateway(); err != nil {
				t.Errorf("thaw codfw gateway: %v", err)
			}
		}()
		// The timeout bounds the whole probe, eqiad's steps included: 5 s
		// leaves them room on a loaded machine (the suite runs packages in
		// parallel on 2 cores) while codfw's hang still has to end it.
		short := testConfig()
		short.Probe.Timeout = 5 * time.Second
		sc := newClient(t, short, registry.Options{})
		began := time.Now()
		res := sc.ProbeAcross(ctx, eqiad1.inst(), registry.ProbeOptions{Peers: []registry.Instance{eqiad2.inst(), codfw1.inst()}})
		took := time.Since(began)
		t.Logf("codfw hanging: %v (after %s)", res, took.Round(time.Millisecond))
		var pe *registry.ProbeError
		if res.OK || res.Code != registry.CodeTimeout || res.Step != registry.StepHandoff || !errors.As(res.Err, &pe) || pe.Target != codfw1.inst().String() {
			t.Fatalf("probe with a peer on a hanging site: %v, want a timeout at handoff on %s", res, codfw1.inst())
		}
		// Bounded: the 5 s probe timeout plus the 5 s cleanup bound of
		// cancelling the upload and deleting the blob (on eqiad, which
		// answers), with room for a loaded machine.
		if took > 20*time.Second {
			t.Errorf("probe took %s with a 2 s timeout", took)
		}
	})
}
