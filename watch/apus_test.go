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

// TestProbeCatchesSplitBetweenSites: two registry hosts on apus (real
// Ceph RGW sites, no replication) behind a real HAProxy. While both use
// eqiad the periodic probe passes. Then someone changes apus by hand and
// restarts one host: it now writes to codfw, and on its own it still
// passes a write-then-read probe (testenv/apus's
// TestSplitNeedsACrossHostRead). The periodic probe writes on the first
// host and reads on the other and through the balancer: the other host
// fails with the registry's own BLOB_UPLOAD_UNKNOWN, the balancer (which
// sends the read there) with BLOB_UNKNOWN; one notice after
// failures_before_notice rounds quotes the registry and names both hosts;
// metrics and !status follow. (The recovery notice is tested by
// TestProbeSkipsHostsBeingRestartedAndSurvivesRestart: every round here
// costs about 2 s of Ceph.)
func TestProbeCatchesSplitBetweenSites(t *testing.T) {
	t.Parallel()
	sites := apusSites(t)
	const first, second = "registry1001.eqiad.wmnet", "registry1002.eqiad.wmnet"
	hostsFiles := map[string]*apus.HostsFile{}
	regs := map[string]*regenv.Instance{}
	for _, h := range []string{first, second} {
		hf, err := apus.NewHostsFile(t.TempDir(), h, apus.Name, sites.Address("eqiad"))
		if err != nil {
			t.Fatal(err)
		}
		hostsFiles[h] = hf
	}
	// Both hosts at once: they start in parallel.
	regs[first], regs[second] = startS3Pair(t, sites, hostsFiles[first], hostsFiles[second])
	lb := haproxy.Start(t, haproxy.Options{Servers: []haproxy.Server{
		{Name: first, Addr: regs[first].Addr}, {Name: second, Addr: regs[second].Addr}}})

	cfg := registry.DefaultConfig()
	cfg.BalancerURL = lb.URL()
	client, err := registry.New(cfg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := newProbeLab(t, 2, Service{Name: "apus", Datacenters: apus.DCs, Hosts: []string{first, second},
		Instances: instancesOf(regs), Registry: client})
	l.balancers = 1
	balancer := lb.Addr + "/restricted"

	l.round()
	if st := l.status(); st != "probes: "+balancer+" ok 00m 00s ago; registry1001/restricted ok 00m 00s ago; registry1002/restricted ok 00m 00s ago" {
		t.Fatalf("status with both hosts on eqiad: %q", st)
	}

	// By hand: apus moves, the second host is restarted and follows; the
	// first keeps its connections to eqiad. The balancer happens to send
	// reads to the second host.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	moveHost(ctx, t, hostsFiles[second], regs[second], sites, "codfw")
	if err := lb.SetState(ctx, first, haproxy.Maint); err != nil {
		t.Fatal(err)
	}

	for i := 1; i <= 2; i++ {
		l.next()
		l.round()
		s := l.state(second)
		if s.OK || s.Code != registry.CodeBlobUploadUnknown || s.Step != registry.StepHandoff || s.ConsecutiveFailures != i {
			t.Fatalf("round %d: %s %+v", i, second, s)
		}
		if s := l.state(lb.Addr); s.OK || s.Code != registry.CodeBlobUnknown || s.Step != registry.StepReadBalancer {
			t.Fatalf("round %d: balancer %+v", i, s)
		}
		if s := l.state(first); !s.OK {
			t.Fatalf("round %d: the writing host %+v", i, s)
		}
		want := 0
		if i >= 2 {
			want = 1
			testenv.Eventually(t, 10*time.Second, "the probe notice", func() bool { return len(l.notices.All()) > 0 })
		}
		if got := l.notices.All(); len(got) != want {
			t.Fatalf("after %d failed rounds: notices %q", i, got)
		}
	}
	notice := l.notices.All()[0]
	firstInst, secondInst := l.svc.Instances(first)[0], l.svc.Instances(second)[0]
	for _, want := range []string{
		"registry probe FAILING for apus: ",
		balancer + " BLOB_UNKNOWN at read_balancer x2 since 14:02 UTC (read_balancer on balancer " + lb.Addr,
		`{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"`,
		"registry1002/restricted BLOB_UPLOAD_UNKNOWN at handoff x2 since 14:02 UTC (handoff on " + secondInst.String() + ": PATCH /v2/poolbot/probe/blobs/uploads/",
		`BLOB_UPLOAD_UNKNOWN (HTTP 404): {"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}: upload opened on ` + firstInst.String() + ")",
		" — if apus's pooled state changed since the registries last restarted, run: !restart apus <reason>",
	} {
		if !strings.Contains(notice, want) {
			t.Errorf("the notice does not say %q", want)
		}
	}
	if strings.Contains(notice, "registry1001") {
		t.Errorf("the notice blames the writing host: %q", notice)
	}
	if st := l.status(); !strings.Contains(st, "registry1001/restricted ok 00m 00s ago; registry1002/restricted FAILING BLOB_UPLOAD_UNKNOWN at handoff x2 since 14:02 UTC (last 00m 00s ago)") {
		t.Fatalf("status %q", st)
	}
	expected := fmt.Sprintf(`
# HELP poolbot_registry_probe_failures_total Failed periodic registry probes, by failure code (a registry error code such as BLOB_UPLOAD_UNKNOWN, or network, timeout, http_5xx, ...).
# TYPE poolbot_registry_probe_failures_total counter
poolbot_registry_probe_failures_total{code="BLOB_UNKNOWN",host=%[1]q,instance="restricted",service="apus"} 2
poolbot_registry_probe_failures_total{code="BLOB_UPLOAD_UNKNOWN",host="registry1002.eqiad.wmnet",instance="restricted",service="apus"} 2
# HELP poolbot_registry_probe_ok 1 if the registry instance (of a host, or the balancer) passed its part of the latest periodic write-then-read probe across hosts, 0 if it failed.
# TYPE poolbot_registry_probe_ok gauge
poolbot_registry_probe_ok{host=%[1]q,instance="restricted",service="apus"} 0
poolbot_registry_probe_ok{host="registry1001.eqiad.wmnet",instance="restricted",service="apus"} 1
poolbot_registry_probe_ok{host="registry1002.eqiad.wmnet",instance="restricted",service="apus"} 0
`, lb.Addr)
	if err := testutil.GatherAndCompare(l.metrics, strings.NewReader(expected),
		"poolbot_registry_probe_failures_total", "poolbot_registry_probe_ok"); err != nil {
		t.Fatal(err)
	}
	if n := histogramCount(t, l.metrics, "poolbot_registry_probe_duration_seconds", second); n != 3 {
		t.Fatalf("probe duration observations of %s: %d, want 3", second, n)
	}
}

// startS3Pair starts two registries on apus in parallel, each resolving
// apus.discovery.wmnet through its own hosts file.
func startS3Pair(t *testing.T, sites *apus.Apus, a, b *apus.HostsFile) (*regenv.Instance, *regenv.Instance) {
	t.Helper()
	bin := regenv.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		regs [2]*regenv.Instance
		errs [2]error
		wg   sync.WaitGroup
	)
	for i, hf := range []*apus.HostsFile{a, b} {
		wg.Go(func() {
			regs[i], errs[i] = regenv.Launch(ctx, regenv.Options{Binary: bin, S3: sites.RegistryS3(), Wrapper: hf.Wrapper()})
		})
	}
	wg.Wait()
	for _, r := range regs {
		if r != nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("registry %s log tail:\n%s", r.Addr, r.LogTail(4096))
				}
				_ = r.Close()
			})
		}
	}
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatalf("start two registries on apus: %v", err)
	}
	return regs[0], regs[1]
}

// moveHost points the host's apus name at dc's site and restarts its
// registry, as an operator restarting it by hand does (killed: a clean
// stop's 2 s drain would only cost the test time).
func moveHost(ctx context.Context, t *testing.T, hf *apus.HostsFile, reg *regenv.Instance, sites *apus.Apus, dc string) {
	t.Helper()
	if err := hf.Point(apus.Name, sites.Address(dc)); err != nil {
		t.Fatal(err)
	}
	if err := reg.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
}
