package procedure

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/dns"
	"poolbot/internal/testenv"
	dnsworld "poolbot/internal/testenv/dns"
	etcdenv "poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/hostns"
)

// Each DNS test has a DNS world of its own (two gdnsd, one pdns_recursor
// per datacenter, gdnsd's state rendered from the package's etcd under a
// conftool prefix of the test's own) and one host namespace per
// datacenter resolving through its recursor, so that the DNS tests run in
// parallel: most of their time is the recursors' TTLs in real time.
type dnsSite struct {
	etcd   *etcdenv.Server
	prefix string // conftool's etcd prefix the world renders from
	world  *dnsworld.World
	hosts  map[string]*hostns.Host // by datacenter
}

var (
	eqiadIP = netip.MustParseAddr("10.2.2.10")
	codfwIP = netip.MustParseAddr("10.2.1.10")
)

// newDNSSite starts the test's DNS world and host namespaces, stopped
// with the test; it skips when they cannot run here (fails in CI).
func newDNSSite(t *testing.T) *dnsSite {
	t.Helper()
	if os.Geteuid() != 0 && !testenv.InCI() {
		t.Skip("the DNS world binds port 53 and makes mount namespaces: needs root")
	}
	srv, prefix := sharedEtcd(t)
	s := &dnsSite{etcd: srv, prefix: prefix, hosts: map[string]*hostns.Host{}}
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := s.putDiscovery(t.Context(), dc, true, 3); err != nil {
			t.Fatal(err)
		}
	}
	s.world = dnsworld.Start(t, dnsworld.Options{EtcdURL: srv.ClientURL, Prefix: prefix, HTTPClient: srv.HTTPClient()})
	for _, rec := range s.world.Recursors {
		s.hosts[rec.DC] = hostns.Start(t, "host-"+rec.DC, rec.ResolvConf)
	}
	return s
}

// putDiscovery writes apus' discovery object of dc as confctl does, with
// its ttl, where the world renders it from.
func (s *dnsSite) putDiscovery(ctx context.Context, dc string, pooled bool, ttl int) error {
	_, err := s.etcd.PutValue(ctx, s.prefix+"/discovery/apus/"+dc,
		fmt.Sprintf(`{"pooled": %t, "references": [], "ttl": %d}`, pooled, ttl))
	return err
}

// reset pools both datacenters with ttl, waits until every authoritative
// server answers that, and empties the recursors' caches, so a test
// starts from no cached answer.
func (s *dnsSite) reset(t *testing.T, ttl int) {
	t.Helper()
	ctx := t.Context()
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := s.putDiscovery(ctx, dc, true, ttl); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dns.New(s.config(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Expect(map[string]netip.Addr{"eqiad": eqiadIP, "codfw": codfwIP}, map[string]bool{"eqiad": true, "codfw": true})
	if err != nil {
		t.Fatal(err)
	}
	// The TTL too: the addresses may already be right before the state
	// file with the new ttl is rendered.
	testenv.EventuallyReport(t, 10*time.Second, fmt.Sprintf("reset: TTL %ds", ttl), func() (bool, string) {
		rep, err := c.WaitConverged(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		return rep.MaxTTL() == time.Duration(ttl)*time.Second, "TTL " + rep.MaxTTL().String()
	})
	for _, r := range s.world.Recursors {
		if err := r.WipeCache(ctx, s.world.Record); err != nil {
			t.Fatal(err)
		}
	}
}

// resolve runs getent ahosts for apus in dc's host namespace (priming
// its recursor's cache).
func (s *dnsSite) resolve(t *testing.T, dc string) string {
	t.Helper()
	h := s.hosts[dc]
	out, err := h.Run(t.Context(), h.Name, []string{"getent", "ahosts", "apus.discovery.wmnet"})
	if err != nil {
		t.Fatalf("getent in %s: %v %q", dc, err, out)
	}
	return string(out)
}

// config is the dns section for the world: its servers, spicerack's
// client subnets, the service addresses resolved from apus.svc.<dc>.wmnet,
// and the lab's hosts placed by host_datacenters.
func (s *dnsSite) config(hostDCs map[string]string) dns.Config {
	return dns.Config{
		Record:        s.world.Record,
		Authoritative: s.world.Servers,
		Datacenters: []dns.Datacenter{
			{Name: "eqiad", ClientSubnet: "10.64.0.1"},
			{Name: "codfw", ClientSubnet: "10.192.0.1"},
		},
		PollInterval:    100 * time.Millisecond,
		ConvergeTimeout: 10 * time.Second,
		HostTimeout:     20 * time.Second,
		HostDatacenters: hostDCs,
	}
}

// withFlush makes the dns section flush both recursors (rec_control
// wipe-cache, as sre.dns.wipe-cache runs it) and check them after.
func withFlush(s *dnsSite, c *dns.Config) {
	for i := range c.Datacenters {
		rec := s.world.Recursor(c.Datacenters[i].Name)
		c.FlushCommands = append(c.FlushCommands, rec.WipeArgv("{record}"))
		c.Datacenters[i].Recursors = []string{rec.Addr.String()}
	}
}

// getentLog is a host runner that runs getent in the host's datacenter
// namespace and records what each host resolved and how many restarts
// had been issued by then.
type getentLog struct {
	l       *harness
	site    *dnsSite
	hostDCs map[string]string
	mu      sync.Mutex
	seen    []resolved
}

type resolved struct {
	host     string
	addrs    []netip.Addr
	restarts int // restarts issued (on any host) when the answer came
	hostDone bool
}

func (g *getentLog) Run(ctx context.Context, host string, argv []string) ([]byte, error) {
	h, ok := g.site.hosts[g.hostDCs[host]]
	if !ok {
		return nil, fmt.Errorf("no namespace for host %s", host)
	}
	out, err := h.Run(ctx, h.Name, argv) // the namespace stands for every host of its datacenter
	addrs, _ := dns.ParseGetentAhosts(out)
	restarted := g.l.restarted()
	hostDone := false
	for _, r := range restarted {
		hostDone = hostDone || r == host
	}
	g.mu.Lock()
	g.seen = append(g.seen, resolved{host: host, addrs: addrs, restarts: len(restarted), hostDone: hostDone})
	g.mu.Unlock()
	return out, err
}

func (g *getentLog) answers() []resolved {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]resolved(nil), g.seen...)
}

// newDNSHarness is newHarness with the service's DNS step on a DNS world
// of the test's own: hosts registry1.. alternate codfw, eqiad; edit
// changes the dns section.
func newDNSHarness(t *testing.T, nHosts int, cfg Config, edit func(*dnsSite, *dns.Config), opts ...harnessOption) (*harness, *getentLog, *dnsSite) {
	t.Helper()
	site := newDNSSite(t)
	hostDCs := map[string]string{}
	for i := 1; i <= nHosts; i++ {
		hostDCs[fmt.Sprintf("registry%d", i)] = []string{"codfw", "eqiad"}[(i-1)%2]
	}
	var g *getentLog
	setup := func(s *harnessSetup) {
		if s.etcd == nil {
			s.etcd, s.prefix = site.etcd, site.prefix
		}
		s.service = func(l *harness, svc *Service) {
			dcfg := site.config(hostDCs)
			if edit != nil {
				edit(site, &dcfg)
			}
			c, err := dns.New(dcfg, nil) // queries and polls in real time
			if err != nil {
				t.Fatal(err)
			}
			g = &getentLog{l: l, site: site, hostDCs: hostDCs}
			svc.DNS = &ServiceDNS{Checker: c, Hosts: g}
		}
	}
	l := newHarness(t, nHosts, cfg, append([]harnessOption{setup}, opts...)...)
	return l, g, site
}

// waitDNSWait waits until request id waits for the caches and returns its
// stored DNS step.
func (l *harness) waitDNSWait(id poolbot.RequestID) poolbot.DNSStep {
	l.t.Helper()
	var step poolbot.DNSStep
	testenv.EventuallyReport(l.t, 30*time.Second, fmt.Sprintf("%s to wait for the caches", id), func() (bool, string) {
		r := l.request(id)
		var ok bool
		var err error
		step, ok, err = l.store.DNSStep(context.Background(), id)
		if err != nil {
			l.t.Fatal(err)
		}
		if r.State == poolbot.StateDNS && ok && !step.ConvergedAt.IsZero() && strings.HasPrefix(r.Step, "DNS: waiting") {
			return true, ""
		}
		last := fmt.Sprintf("%s (%s %s); notices:\n%s", r.State, r.Step, r.Error, strings.Join(l.notices.All(), "\n"))
		if r.State.Terminal() {
			l.t.Fatalf("%s never waited for the caches: %s", id, last)
		}
		return false, last
	})
	return step
}

// eventAt is when the request's first event of kind was stored.
func (l *harness) eventAt(id poolbot.RequestID, kind string) time.Time {
	l.t.Helper()
	evs, err := l.store.Events(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == kind {
			return e.At
		}
	}
	l.t.Fatalf("no %q event of %s", kind, id)
	return time.Time{}
}

// After the conftool write the request waits in state dns until every
// authoritative server answers the new state, then exactly the old TTL
// counted from that moment (on the fake clock), shown in the channel and
// in the step !status reads; no host is restarted before. The estimate
// the calendar gate uses includes the wait.
func TestDNSWaitsOldTTLFromConvergence(t *testing.T) {
	t.Parallel()
	l, g, site := newDNSHarness(t, 2, Config{}, nil)
	site.reset(t, 300)
	id := l.queue(poolbot.ActionDepool, "codfw")
	step := l.waitDNSWait(id)
	if step.OldTTL != 300*time.Second {
		t.Fatalf("old TTL %s", step.OldTTL)
	}
	// 2 hosts at a minute each, plus the servers following and the TTL.
	if len(l.notices.Matching("estimated 07m 10s")) == 0 {
		t.Fatalf("estimate without the DNS wait; notices:\n%s", strings.Join(l.notices.All(), "\n"))
	}
	want := "DNS: waiting 05m 00s for cached answers to expire; restarts start at " + step.CachesClearAt().Format("15:04:05") + " UTC"
	l.waitNotice(want, 0)
	if r := l.request(id); r.Step != want || len(l.notices.Matching(want)) != 1 {
		t.Fatalf("step %q, want %q; notices:\n%s", r.Step, want, strings.Join(l.notices.All(), "\n"))
	}
	// A second short of the TTL nothing moves.
	l.waitTimer(step.CachesClearAt())
	l.clock.Advance(step.CachesClearAt().Sub(l.clock.Now()) - time.Second)
	time.Sleep(300 * time.Millisecond)
	if r := l.request(id); r.State != poolbot.StateDNS || len(l.restarted()) > 0 || len(g.answers()) > 0 {
		t.Fatalf("a second before the TTL ran out: %s, restarts %v, host checks %d", r.State, l.restarted(), len(g.answers()))
	}
	l.clock.Advance(time.Second)
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	waited := l.eventAt(id, "dns").Sub(step.ConvergedAt)
	if waited < 300*time.Second || waited > 301*time.Second {
		t.Fatalf("waited %s after convergence, want the 300s TTL to within a second", waited)
	}
	sal := l.sal(id)
	if !hasLine(sal, "DNS: apus.discovery.wmnet answers eqiad for codfw clients on 2/2 authoritative servers; waited 05m 00s for caches") {
		t.Fatalf("SAL %q", sal)
	}
	if !hasLine(sal, "restarted docker-registry-restricted.service on registry1 (1/2): resolves apus.discovery.wmnet to 10.2.2.10;") ||
		!hasLine(sal, "on registry2 (2/2): resolves apus.discovery.wmnet to 10.2.2.10;") {
		t.Fatalf("host lines without the host check: %q", sal)
	}
}

// A host still resolving the old address is not restarted: with the
// recursor holding the old answer in real time while the fake clock says
// the TTL is over, the host check waits until the host resolves the new
// address, and only then is the host restarted.
func TestDNSNoRestartWhileHostResolvesOld(t *testing.T) {
	t.Parallel()
	l, g, site := newDNSHarness(t, 2, Config{}, nil)
	// The recursor keeps the old answer for the TTL in real time: long
	// enough for the switch and the DNS step to reach registry1's check
	// while parallel tests load the machine, short enough to wait out.
	site.reset(t, 10)
	// registry1 is in codfw: cache codfw's old answer in its recursor.
	if out := site.resolve(t, "codfw"); !strings.HasPrefix(out, codfwIP.String()) {
		t.Fatalf("priming the codfw recursor: %q", out)
	}
	id := l.queue(poolbot.ActionDepool, "codfw")
	step := l.waitDNSWait(id)
	l.advanceWhenDue(step.CachesClearAt()) // the fake clock's TTL is over; the recursor's is not
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	var old, fresh int
	for _, a := range g.answers() {
		if a.host != "registry1" {
			continue
		}
		if len(a.addrs) == 1 && a.addrs[0] == codfwIP {
			old++
			if a.hostDone {
				t.Fatalf("registry1 was restarted while it resolved the old address")
			}
		} else if len(a.addrs) == 1 && a.addrs[0] == eqiadIP {
			fresh++
		}
	}
	if old == 0 || fresh != 1 {
		t.Fatalf("registry1 resolved the old address %d times, the new %d times; want the check to have waited: %+v", old, fresh, g.answers())
	}
	t.Logf("registry1 resolved the old address %d times before its restart", old)
}

// A configured flush (rec_control wipe-cache on every recursor, checked
// by asking them) replaces the TTL wait: the request goes on without the
// fake clock moving, though the recursors held the old answer.
func TestDNSFlushShortensWait(t *testing.T) {
	t.Parallel()
	l, _, site := newDNSHarness(t, 2, Config{}, withFlush)
	site.reset(t, 300)
	if out := site.resolve(t, "codfw"); !strings.HasPrefix(out, codfwIP.String()) {
		t.Fatalf("priming the codfw recursor: %q", out)
	}
	start := l.clock.Now()
	id := l.queue(poolbot.ActionDepool, "codfw")
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	if spent := l.clock.Since(start); spent != 0 {
		t.Fatalf("fake clock moved %s", spent)
	}
	if sal := l.sal(id); !hasLine(sal, "DNS: apus.discovery.wmnet answers eqiad for codfw clients on 2/2 authoritative servers; caches flushed") {
		t.Fatalf("SAL %q", sal)
	}
	if n := l.notices.Matching("waiting"); len(n) > 0 {
		t.Fatalf("waited although flushed: %q", n)
	}
}

// Authoritative servers that do not follow the conftool change (here:
// their state is rendered from another etcd than the one conftool wrote)
// make the request fail before any restart; END says conftool was changed
// and DNS did not follow, and the deploy block is released.
func TestDNSNotConvergedFailsClosed(t *testing.T) {
	t.Parallel()
	other := etcdenv.Start(t) // conftool writes here; the DNS world never sees it
	l, _, site := newDNSHarness(t, 2, Config{}, func(_ *dnsSite, c *dns.Config) { c.ConvergeTimeout = 2 * time.Second },
		func(s *harnessSetup) { s.etcd, s.prefix = other, "" })
	site.reset(t, 3)
	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, 0, poolbot.StateFailed, poolbot.StateDone)
	if r.State != poolbot.StateFailed || len(l.restarted()) > 0 {
		t.Fatalf("%s, restarts %v", r.State, l.restarted())
	}
	want := "conftool was changed (apus/codfw pooled=false now) but DNS did not follow: DNS did not follow within 00m 02s: authoritative server "
	if !strings.Contains(r.Error, want) || !strings.Contains(r.Error, "answered 10.2.1.10 (codfw) for codfw clients, want 10.2.2.10 (eqiad)") ||
		!strings.HasSuffix(r.Error, "no host was restarted") {
		t.Fatalf("error %q", r.Error)
	}
	l.checkEnd(id, "END (FAIL) - depool apus in codfw: "+want)
}

// !cancel during the cache wait ends the request at once, before any host
// is touched; END names the conftool state as it is.
func TestDNSCancelDuringWait(t *testing.T) {
	t.Parallel()
	l, g, site := newDNSHarness(t, 2, Config{}, nil)
	site.reset(t, 300)
	id := l.queue(poolbot.ActionDepool, "codfw")
	l.waitDNSWait(id)
	l.edit(id, func(r *poolbot.Request) { r.CancelRequested, r.CancelledBy = true, "bob" })
	l.engine.Notify("apus")
	r := l.waitState(id, 0, poolbot.StateCancelled, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateCancelled || len(l.restarted()) > 0 || len(g.answers()) > 0 {
		t.Fatalf("%s, restarts %v", r.State, l.restarted())
	}
	l.checkEnd(id, "END (CANCELLED) - depool apus in codfw: cancelled by bob during the DNS wait, before any host was restarted; conftool was changed (apus/codfw pooled=false now)")
}

// A poolbot stopped during the cache wait resumes it after its restart
// with the time left, counted from the stored convergence: neither from
// zero nor skipped.
func TestDNSWaitResumesWithTimeLeft(t *testing.T) {
	t.Parallel()
	l, _, site := newDNSHarness(t, 1, Config{}, nil)
	site.reset(t, 300)
	id := l.queue(poolbot.ActionDepool, "codfw")
	step := l.waitDNSWait(id)
	l.stop()
	if got := l.globalLock(); got != "none" {
		t.Fatalf("deploy block kept across the stop: %s", got)
	}
	l.clock.Advance(100 * time.Second)
	l.start()
	l.waitNotice("resumed after a poolbot restart: DNS: waiting 03m 20s for cached answers to expire", 0)
	if r := l.request(id); r.State != poolbot.StateDNS || len(l.restarted()) > 0 {
		t.Fatalf("after the restart: %s, restarts %v", r.State, l.restarted())
	}
	l.advanceWhenDue(step.CachesClearAt())
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	if waited := l.eventAt(id, "dns").Sub(step.ConvergedAt); waited < 300*time.Second || waited > 301*time.Second {
		t.Fatalf("waited %s after convergence, want 300s", waited)
	}
}

// Dry-run asks the real servers and says what it would wait for; nothing
// is changed.
func TestDNSDryRun(t *testing.T) {
	t.Parallel()
	l, _, site := newDNSHarness(t, 1, Config{DryRun: true}, nil)
	site.reset(t, 300)
	id := l.queue(poolbot.ActionDepool, "codfw")
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	n := l.notices.Matching("DNS")
	if len(n) == 0 || !strings.Contains(strings.Join(n, "\n"), "then would wait 05m 00s (the old TTL) for cached answers") {
		t.Fatalf("notices:\n%s", strings.Join(l.notices.All(), "\n"))
	}
	if !l.pooled("codfw") {
		t.Fatal("dry-run changed conftool")
	}
}

// The drift watch's restart (a change made outside poolbot, queued by
// poolbot itself) waits for DNS like a switch: the servers answer the
// changed state, then the old TTL from that moment. An operator's restart
// that follows no change only checks the servers and the hosts.
func TestDNSRestartRequests(t *testing.T) {
	t.Parallel()
	l, _, site := newDNSHarness(t, 1, Config{}, nil)
	site.reset(t, 300)
	// Someone depools codfw by hand; the watch queues a restart.
	if err := site.putDiscovery(t.Context(), "codfw", false, 300); err != nil {
		t.Fatal(err)
	}
	id := l.queueFrom(poolbot.ActionRestart, poolbot.Origin{Network: poolbot.NetworkPoolbot, Nick: "poolbot"})
	step := l.waitDNSWait(id)
	if len(l.restarted()) > 0 {
		t.Fatalf("restarted before the DNS wait: %v", l.restarted())
	}
	l.advanceWhenDue(step.CachesClearAt())
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	if sal := l.sal(id); !hasLine(sal, "DNS: apus.discovery.wmnet answers eqiad for eqiad clients on 2/2 authoritative servers; apus.discovery.wmnet answers eqiad for codfw clients on 2/2 authoritative servers; waited 05m 00s for caches") {
		t.Fatalf("SAL %q", sal)
	}

	// An operator's restart: no cache wait, the fake clock stays.
	start := l.clock.Now()
	id = l.queue(poolbot.ActionRestart, "")
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	if l.clock.Since(start) != 0 || !hasLine(l.sal(id), "; no cache wait (no change by poolbot)") {
		t.Fatalf("operator restart: clock moved %s; SAL %q", l.clock.Since(start), l.sal(id))
	}
}

// `poolbot dry-run` describes the DNS step from the servers' real answers
// now: what they must answer after the change, what they answer, and the
// wait for the caches.
func TestDNSExplain(t *testing.T) {
	t.Parallel()
	l, _, site := newDNSHarness(t, 1, Config{}, nil)
	site.reset(t, 300)
	x, err := l.engine.Explain(t.Context(), poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "codfw"})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(x.Lines(), "\n")
	for _, want := range []string{
		"3. wait until all 2 authoritative servers (" + strings.Join(site.world.Servers, ", ") +
			") answer apus.discovery.wmnet as conftool says after the change: eqiad clients get eqiad (10.2.2.10); codfw clients get eqiad (10.2.2.10) (timeout 00m 10s, else FAIL before any restart)",
		"now: authoritative server " + site.world.Servers[0] + " answered 10.2.1.10 (codfw) for codfw clients, want 10.2.2.10 (eqiad)",
		"then wait 05m 00s (the record's TTL now) from that moment for cached answers to expire",
		"before each host's restart: getent ahosts apus.discovery.wmnet until it resolves its datacenter's answer (timeout 00m 20s, else FAIL before that host)",
		"4. restart 1 host(s)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}
	if x.Estimate != time.Minute+dnsConvergeEstimate+300*time.Second {
		t.Errorf("estimate %s", x.Estimate)
	}
}

// A host that keeps resolving the old address (its recursor holds the
// old answer for 300s of real time, while the fake clock's TTL wait is
// over) fails the request at that host's check, before it is restarted.
func TestDNSHostNeverResolvesFails(t *testing.T) {
	t.Parallel()
	l, _, site := newDNSHarness(t, 2, Config{}, func(_ *dnsSite, c *dns.Config) { c.HostTimeout = 2 * time.Second })
	site.reset(t, 300)
	if out := site.resolve(t, "codfw"); !strings.HasPrefix(out, codfwIP.String()) {
		t.Fatalf("priming the codfw recursor: %q", out)
	}
	id := l.queue(poolbot.ActionDepool, "codfw")
	step := l.waitDNSWait(id)
	l.advanceWhenDue(step.CachesClearAt())
	r := l.waitState(id, 0, poolbot.StateFailed, poolbot.StateDone)
	if r.State != poolbot.StateFailed || len(l.restarted()) > 0 {
		t.Fatalf("%s, restarts %v", r.State, l.restarted())
	}
	want := "host 1/2 registry1: DNS: host registry1 resolves apus.discovery.wmnet to 10.2.1.10, want 10.2.2.10 (waited 00m 02s); not restarted; done: none; not touched: registry2"
	if r.Error != want {
		t.Fatalf("error %q\nwant  %q", r.Error, want)
	}
	l.checkEnd(id, "END (FAIL) - depool apus in codfw: "+want)
}
