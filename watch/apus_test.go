package watch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"poolbot/integrations/registry"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/haproxy"
	regenv "poolbot/internal/testenv/registry"
)

// TestProbeCatchesSplitBetweenSites: three registry hosts on apus (real
// Ceph RGW sites, no replication) behind a real HAProxy. Two use eqiad;
// the third was restarted by hand after apus moved and uses codfw: on its
// own it passes a write-then-read probe (testenv/apus's
// TestSplitNeedsACrossHostRead), so the old periodic probe saw nothing.
// The periodic probe writes on the first host and reads on the others
// and through the balancer: the healthy pair passes, the host on codfw
// fails with the registry's own BLOB_UPLOAD_UNKNOWN and the balancer
// (which sends the read there) with BLOB_UNKNOWN; the notice quotes the
// registry and names both hosts; metrics and !status follow. One round
// (failures_before_notice 1): a round here costs 1-3 s of Ceph, and the
// counting of failures before the notice and the recovery notice are
// TestProbeSkipsHostsBeingRestartedAndSurvivesRestart's.
func TestProbeCatchesSplitBetweenSites(t *testing.T) {
	t.Parallel()
	sites := apusSites(t)
	const writer, healthy, split = "registry1001.eqiad.wmnet", "registry1002.eqiad.wmnet", "registry1003.eqiad.wmnet"
	hosts := []string{writer, healthy, split}
	regs := startOnApus(t, sites, map[string]string{writer: "eqiad", healthy: "eqiad", split: "codfw"})
	var servers []haproxy.Server
	for _, h := range hosts {
		servers = append(servers, haproxy.Server{Name: h, Addr: regs[h].Addr})
	}
	lb := haproxy.Start(t, haproxy.Options{Servers: servers})
	// The balancer happens to send the read to the host on codfw.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range []string{writer, healthy} {
		if err := lb.SetState(ctx, h, haproxy.Maint); err != nil {
			t.Fatal(err)
		}
	}

	cfg := registry.DefaultConfig()
	cfg.BalancerURL = lb.URL()
	client, err := registry.New(cfg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := newProbeLab(t, 1, Service{Name: "apus", Datacenters: apus.DCs, Hosts: hosts, Instances: instancesOf(regs), Registry: client})
	l.balancers = 1
	balancer := lb.Addr + "/restricted"

	l.round()
	for _, h := range []string{writer, healthy} {
		if s := l.state(h); !s.OK {
			t.Fatalf("%s on eqiad like the writer: %+v", h, s)
		}
	}
	if s := l.state(split); s.OK || s.Code != registry.CodeBlobUploadUnknown || s.Step != registry.StepHandoff {
		t.Fatalf("%s on codfw: %+v", split, s)
	}
	if s := l.state(lb.Addr); s.OK || s.Code != registry.CodeBlobUnknown || s.Step != registry.StepReadBalancer {
		t.Fatalf("balancer %+v", s)
	}
	// The notice is said just after the round's states are stored.
	testenv.Eventually(t, 10*time.Second, "the probe notice", func() bool { return len(l.notices.All()) > 0 })
	if got := l.notices.All(); len(got) != 1 {
		t.Fatalf("notices %q", got)
	}
	notice := l.notices.All()[0]
	writerInst, splitInst := l.svc.Instances(writer)[0], l.svc.Instances(split)[0]
	for _, want := range []string{
		"registry probe FAILING for apus: registry1003/restricted BLOB_UPLOAD_UNKNOWN at handoff x1 since 14:00 UTC (handoff on " + splitInst.String() + ": PATCH /v2/poolbot/probe/blobs/uploads/",
		`: BLOB_UPLOAD_UNKNOWN (HTTP 404): {"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}: upload opened on ` + writerInst.String() + "); ",
		balancer + " BLOB_UNKNOWN at read_balancer x1 since 14:00 UTC (read_balancer on balancer " + lb.Addr + ": GET /v2/poolbot/probe/blobs/sha256:",
		`: BLOB_UNKNOWN (HTTP 404): {"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:`,
		"written through " + writerInst.String() + ") — if apus's pooled state changed since the registries last restarted, run: !restart apus <reason>",
	} {
		if !strings.Contains(notice, want) {
			t.Errorf("the notice does not say %q:\n%s", want, notice)
		}
	}
	if strings.Contains(notice, "registry1001/") || strings.Contains(notice, "registry1002") {
		t.Errorf("the notice blames a host on the writer's site: %q", notice)
	}
	if st, want := l.status(), "probes: "+balancer+" FAILING BLOB_UNKNOWN at read_balancer x1 since 14:00 UTC (last 00m 00s ago); "+
		"registry1001/restricted ok 00m 00s ago; registry1002/restricted ok 00m 00s ago; "+
		"registry1003/restricted FAILING BLOB_UPLOAD_UNKNOWN at handoff x1 since 14:00 UTC (last 00m 00s ago)"; st != want {
		t.Fatalf("status\n%s\nwant\n%s", st, want)
	}
	expected := fmt.Sprintf(`
# HELP poolbot_registry_probe_failures_total Failed periodic registry probes, by failure code (a registry error code such as BLOB_UPLOAD_UNKNOWN, or network, timeout, http_5xx, ...).
# TYPE poolbot_registry_probe_failures_total counter
poolbot_registry_probe_failures_total{code="BLOB_UNKNOWN",host=%[1]q,instance="restricted",service="apus"} 1
poolbot_registry_probe_failures_total{code="BLOB_UPLOAD_UNKNOWN",host="registry1003.eqiad.wmnet",instance="restricted",service="apus"} 1
# HELP poolbot_registry_probe_ok 1 if the registry instance (of a host, or the balancer) passed its part of the latest periodic write-then-read probe across hosts, 0 if it failed.
# TYPE poolbot_registry_probe_ok gauge
poolbot_registry_probe_ok{host=%[1]q,instance="restricted",service="apus"} 0
poolbot_registry_probe_ok{host="registry1001.eqiad.wmnet",instance="restricted",service="apus"} 1
poolbot_registry_probe_ok{host="registry1002.eqiad.wmnet",instance="restricted",service="apus"} 1
poolbot_registry_probe_ok{host="registry1003.eqiad.wmnet",instance="restricted",service="apus"} 0
`, lb.Addr)
	if err := testutil.GatherAndCompare(l.metrics, strings.NewReader(expected),
		"poolbot_registry_probe_failures_total", "poolbot_registry_probe_ok"); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, l.metrics, "poolbot_registry_probe_duration_seconds", split); n != 1 {
		t.Fatalf("probe duration observations of %s: %d, want 1", split, n)
	}
}

// startOnApus starts one registry per host in parallel, each on apus
// through its own hosts file answering the discovery name with the site of
// the datacenter given.
func startOnApus(t *testing.T, sites *apus.Apus, dcOf map[string]string) map[string]*regenv.Instance {
	t.Helper()
	bin := regenv.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	regs := map[string]*regenv.Instance{}
	for host, dc := range dcOf {
		hf, err := apus.NewHostsFile(t.TempDir(), host, apus.Name, sites.Address(dc))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			r, err := regenv.Launch(ctx, regenv.Options{Binary: bin, S3: sites.RegistryS3(), Wrapper: hf.Wrapper()})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", host, err))
				return
			}
			regs[host] = r
		})
	}
	wg.Wait()
	for _, r := range regs {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("registry %s log tail:\n%s", r.Addr, r.LogTail(4096))
			}
			_ = r.Close()
		})
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start registries on apus: %v", err)
	}
	return regs
}
