package apus_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/haproxy"
	"poolbot/internal/testenv/registry"
)

// TestPushThroughTheBalancer is the incident end to end on real parts,
// without poolbot: two registry hosts behind HAProxy, one still on eqiad
// (not restarted after apus moved) and one on codfw. A push's requests
// alternate between them, so the PATCH of an upload opened on one host
// reaches the other, whose site has never heard of it: the push fails with
// the registry's BLOB_UPLOAD_UNKNOWN. Taking the host out of rotation in
// conftool (Pybal applies it) makes the push succeed; restarting it once its
// resolver gives the new site, and pooling it again, spreads pushes over
// both hosts again without errors.
func TestPushThroughTheBalancer(t *testing.T) {
	a := sites(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := startHost(t, a, "registry1001.eqiad.wmnet", "eqiad", registry.Options{})
	moved := startHost(t, a, "registry1002.eqiad.wmnet", "codfw", registry.Options{})
	lb := haproxy.Start(t, haproxy.Options{Servers: []haproxy.Server{
		{Name: old.name, Addr: old.reg.Addr}, {Name: moved.name, Addr: moved.reg.Addr},
	}})
	e := etcd.Start(t)
	key := func(h *host) string {
		return etcd.DefaultPrefix + "/pools/eqiad/docker-registry/docker-registry/" + h.name
	}
	e.Put(t, key(old), `{"pooled": "yes", "weight": 10}`)
	idx := e.Put(t, key(moved), `{"pooled": "yes", "weight": 10}`)
	pybal := &haproxy.Pybal{EtcdURL: e.ClientURL, DC: "eqiad", Cluster: "docker-registry", Service: "docker-registry", Balancer: lb}
	go func() { _ = pybal.Run(ctx) }()
	wait := func(idx uint64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := pybal.WaitApplied(wctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	wait(idx)

	var p registry.Pusher
	_, err := p.PushImage(ctx, lb.URL(), "restricted/mediawiki-multiversion", "split", randomLayer(t))
	var pe *registry.PushError
	if !errors.As(err, &pe) || pe.Code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("push over hosts on two sites: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
	t.Logf("push through the balancer: %v", err)

	// Depool the host on the other site.
	wait(e.Put(t, key(moved), `{"pooled": "no", "weight": 10}`))
	before, err := lb.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	layer := randomLayer(t)
	if _, err := p.PushImage(ctx, lb.URL(), "restricted/mediawiki-multiversion", "depooled", layer); err != nil {
		t.Fatalf("push with the codfw host depooled: %v", err)
	}
	after, _ := lb.Stats(ctx)
	if n := after[moved.name].Requests - before[moved.name].Requests; n != 0 {
		t.Fatalf("%d requests reached the depooled host", n)
	}
	if got := siteHolding(t, a, registry.Digest(layer)); !slices.Equal(got, []string{"eqiad"}) {
		t.Fatalf("layer in %v, want eqiad", got)
	}

	// Fix the host the way the procedure does: restart it (once its
	// resolver answers the site the other host uses), then pool it.
	if err := moved.hosts.Point(apus.Name, a.Address("eqiad")); err != nil {
		t.Fatal(err)
	}
	if err := moved.reg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wait(e.Put(t, key(moved), `{"pooled": "yes", "weight": 10}`))
	before, _ = lb.Stats(ctx)
	for i := range 3 {
		if _, err := p.PushImage(ctx, lb.URL(), "restricted/mediawiki-multiversion", "fixed", randomLayer(t)); err != nil {
			t.Fatalf("push %d after the restart: %v", i, err)
		}
	}
	after, _ = lb.Stats(ctx)
	for _, h := range []*host{old, moved} {
		if after[h.name].Requests == before[h.name].Requests {
			t.Fatalf("no request reached %s: the pushes did not spread", h.name)
		}
	}
}

// BenchmarkWorld measures the start of the storage world the lab stories
// need (two Ceph sites, two registries on S3, HAProxy) and its memory.
//
//	go test ./internal/testenv/apus/ -run '^$' -bench World -benchtime 1x
func BenchmarkWorld(b *testing.B) {
	if err := apus.CheckNamespaces(); err != nil {
		b.Skip(err)
	}
	bin := registry.Build(b)
	var rss, rssSites, rssRegs, rssLB int64
	var sitesT, regsT, lbT time.Duration
	for range b.N {
		dir, err := os.MkdirTemp("", "poolbot-apus-bench-")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		t0 := time.Now()
		a, err := apus.Launch(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		var regs []*registry.Instance
		var servers []haproxy.Server
		for i, dc := range apus.DCs {
			hf, err := apus.NewHostsFile(dir, dc, apus.Name, a.Address(dc))
			if err != nil {
				b.Fatal(err)
			}
			r, err := registry.Launch(ctx, registry.Options{Binary: bin, S3: a.RegistryS3(), Wrapper: hf.Wrapper()})
			if err != nil {
				b.Fatal(err)
			}
			regs = append(regs, r)
			servers = append(servers, haproxy.Server{Name: "registry" + string(rune('1'+i)), Addr: r.Addr})
		}
		t2 := time.Now()
		lb, err := haproxy.Launch(ctx, haproxy.Options{Servers: servers})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		sitesT, regsT, lbT = sitesT+t1.Sub(t0), regsT+t2.Sub(t1), lbT+time.Since(t2)
		add := func(into *int64, pids ...int) {
			for _, pid := range pids {
				n, err := testenv.RSS(pid)
				if err != nil {
					b.Fatal(err)
				}
				*into += n
				rss += n
			}
		}
		add(&rssLB, lb.PID())
		for _, s := range a.Sites {
			add(&rssSites, s.PIDs()...)
		}
		for _, r := range regs {
			add(&rssRegs, r.PID())
		}
		lb.Close()
		for _, r := range regs {
			r.Close()
		}
		a.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	mib := func(n int64) float64 { return float64(n) / float64(b.N) / (1 << 20) }
	b.ReportMetric(mib(rss), "MiB-RSS")
	b.ReportMetric(mib(rssSites), "MiB-sites")
	b.ReportMetric(mib(rssRegs), "MiB-registries")
	b.ReportMetric(mib(rssLB), "MiB-haproxy")
	b.ReportMetric(float64(sitesT.Milliseconds())/float64(b.N), "ms-sites")
	b.ReportMetric(float64(regsT.Milliseconds())/float64(b.N), "ms-registries")
	b.ReportMetric(float64(lbT.Milliseconds())/float64(b.N), "ms-haproxy")
}
