package dns

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/restart"
	"poolbot/internal/testenv/hostns"
)

var (
	eqiadIP = netip.MustParseAddr("10.2.2.10")
	codfwIP = netip.MustParseAddr("10.2.1.10")
)

// advanceUntil runs f and, each time f waits on clock, advances the clock
// by step, until f returns; it returns f's error and the fake time spent.
func advanceUntil(t *testing.T, clock *clockwork.FakeClock, step time.Duration, f func() error) (error, time.Duration) {
	t.Helper()
	start := clock.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	for {
		select {
		case err := <-done:
			return err, clock.Since(start)
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		if clock.BlockUntilContext(ctx, 1) == nil {
			clock.Advance(step)
		}
		cancel()
	}
}

func TestAddressesFromSvcRecords(t *testing.T) {
	c, addrs := reset(t, 3)
	t.Logf("DNS world (%d gdnsd, %d pdns_recursor) started in %s", len(world.Servers), len(world.Recursors), world.StartDuration.Round(time.Millisecond))
	if addrs["eqiad"] != eqiadIP || addrs["codfw"] != codfwIP {
		t.Fatalf("apus.svc.<dc>.wmnet resolved to %v", addrs)
	}
	// A configured address wins over the record.
	cfg := worldConfig()
	cfg.Datacenters[1].Address = "10.2.1.99"
	got, err := newChecker(t, cfg, nil).Addresses(t.Context())
	if err != nil || got["codfw"] != netip.MustParseAddr("10.2.1.99") || got["eqiad"] != eqiadIP {
		t.Fatalf("got %v, %v", got, err)
	}
	// A template naming nothing: the error names the servers and the name.
	cfg = worldConfig()
	cfg.AddressRecord = "{service}.nosvc.{dc}.wmnet"
	_, err = newChecker(t, cfg, nil).Addresses(t.Context())
	if err == nil || !strings.Contains(err.Error(), "DNS: service address of eqiad: authoritative server "+world.Servers[0]+" answered REFUSED for apus.nosvc.eqiad.wmnet") {
		t.Fatalf("got %v", err)
	}
	_ = c
}

// After a conftool change in etcd, every authoritative server answers the
// new state for each datacenter's clients.
func TestConvergesAfterEtcdChange(t *testing.T) {
	c, addrs := reset(t, 3)
	e, err := c.Expect(addrs, map[string]bool{"eqiad": true})
	if err != nil {
		t.Fatal(err)
	}
	before := c.Check(t.Context(), e)
	if before.Converged() || !strings.Contains(strings.Join(before.Problems(), "\n"), "answered 10.2.1.10 (codfw) for codfw clients, want 10.2.2.10 (eqiad)") {
		t.Fatalf("before the write: %v", before.Problems())
	}
	start := time.Now()
	if err := putDiscovery(t.Context(), "codfw", false, 3); err != nil {
		t.Fatal(err)
	}
	r, err := c.WaitConverged(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd write -> converged on %d servers in %s", len(world.Servers), time.Since(start).Round(time.Millisecond))
	if got := r.Line("codfw"); got != "apus.discovery.wmnet answers eqiad for codfw clients on 2/2 authoritative servers" {
		t.Fatalf("line %q", got)
	}
	if got := r.Line("eqiad"); got != "apus.discovery.wmnet answers eqiad for eqiad clients on 2/2 authoritative servers" {
		t.Fatalf("line %q", got)
	}
	if r.MaxTTL() != 3*time.Second || len(r.Answers) != 4 {
		t.Fatalf("report %+v", r)
	}
	for _, a := range r.Answers {
		if !a.Matched || a.Addrs[0] != eqiadIP || a.GotDC != "eqiad" || a.TTL != 3*time.Second {
			t.Fatalf("answer %+v", a)
		}
	}
}

// Servers that keep answering the old state make the wait fail closed at
// the timeout, naming a server and what it answered.
func TestNotConvergedFailsClosed(t *testing.T) {
	_, addrs := reset(t, 3)
	clock := clockwork.NewFakeClock()
	cfg := worldConfig()
	cfg.ConvergeTimeout = 30 * time.Second
	cfg.PollInterval = time.Second
	c := newChecker(t, cfg, clock)
	// etcd still has codfw pooled: DNS never follows this expectation.
	e, err := c.Expect(addrs, map[string]bool{"eqiad": true})
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	err, spent := advanceUntil(t, clock, time.Second, func() error {
		var err error
		r, err = c.WaitConverged(t.Context(), e)
		return err
	})
	var nc *NotConvergedError
	if !errors.As(err, &nc) || nc.Unexpected {
		t.Fatalf("got %v", err)
	}
	want := "DNS did not follow within 00m 30s: authoritative server " + world.Servers[0] + " answered 10.2.1.10 (codfw) for codfw clients, want 10.2.2.10 (eqiad) (and 1 more)"
	if err.Error() != want {
		t.Fatalf("got  %q\nwant %q", err, want)
	}
	if spent != 30*time.Second || r.Converged() {
		t.Fatalf("gave up after %s (fake), converged %v", spent, r.Converged())
	}
}

// Bad answers get one line naming the server and the answer.
func TestBadAnswersNameTheServer(t *testing.T) {
	_, addrs := reset(t, 3)
	both := map[string]bool{"eqiad": true, "codfw": true}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
		// unexpected: fails at once, without waiting for the timeout.
		unexpected bool
	}{
		"nxdomain": {
			edit: func(c *Config) { c.Record = "nope.discovery.wmnet" },
			want: "authoritative server " + world.Servers[0] + " answered NXDOMAIN for eqiad clients: nope.discovery.wmnet does not resolve",
		},
		"refused": {
			edit: func(c *Config) { c.Record = "apus.discovery.example" },
			want: "authoritative server " + world.Servers[0] + " answered REFUSED for apus.discovery.example for eqiad clients",
		},
		"servfail": {
			edit: func(c *Config) { c.Authoritative = append([]string{servfailServer(t)}, c.Authoritative...) },
			want: " answered SERVFAIL for apus.discovery.wmnet for eqiad clients",
		},
		"timeout": {
			edit: func(c *Config) {
				c.Authoritative = append([]string{silentServer(t)}, c.Authoritative...)
				c.QueryTimeout = 200 * time.Millisecond
			},
			want: " did not answer apus.discovery.wmnet for eqiad clients: timed out",
		},
		"unexpected address": {
			edit:       func(c *Config) { c.Datacenters[0].Address = "10.9.9.9" },
			want:       "DNS: authoritative server " + world.Servers[0] + " answered 10.2.2.10 (the address of no datacenter) for eqiad clients, want 10.9.9.9 (eqiad)",
			unexpected: true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := worldConfig()
			cfg.ConvergeTimeout = 5 * time.Second
			cfg.PollInterval = time.Second
			tc.edit(&cfg)
			clock := clockwork.NewFakeClock()
			c := newChecker(t, cfg, clock)
			a := map[string]netip.Addr{"eqiad": addrs["eqiad"], "codfw": addrs["codfw"]}
			if cfg.Datacenters[0].Address != "" {
				a["eqiad"] = netip.MustParseAddr(cfg.Datacenters[0].Address)
			}
			e, err := c.Expect(a, both)
			if err != nil {
				t.Fatal(err)
			}
			err, spent := advanceUntil(t, clock, time.Second, func() error {
				_, err := c.WaitConverged(t.Context(), e)
				return err
			})
			var nc *NotConvergedError
			if !errors.As(err, &nc) || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("got  %v\nwant %q", err, tc.want)
			}
			if nc.Unexpected != tc.unexpected || (tc.unexpected && spent != 0) || (!tc.unexpected && spent != 5*time.Second) {
				t.Fatalf("unexpected=%v after %s", nc.Unexpected, spent)
			}
		})
	}
}

// The codfw host keeps the cached old answer after the authoritative
// servers moved, so its check fails (no restart) until the caches are
// flushed; the flush makes it resolve the new address at once.
func TestHostCheckAndFlush(t *testing.T) {
	// A 30 s TTL: the old answer stays cached for the whole test.
	c, addrs := reset(t, 30)
	codfwHost := hostns.Start(t, "registry2001", world.Recursor("codfw").ResolvConf)
	if h := c.ResolveOnHost(t.Context(), codfwHost, "registry2001", codfwIP); !h.Matched {
		t.Fatalf("before: %+v", h)
	}
	if err := putDiscovery(t.Context(), "codfw", false, 30); err != nil {
		t.Fatal(err)
	}
	e, err := c.Expect(addrs, map[string]bool{"eqiad": true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitConverged(t.Context(), e); err != nil {
		t.Fatal(err)
	}

	clock := clockwork.NewFakeClock()
	cfg := worldConfig()
	cfg.HostTimeout = 10 * time.Second
	cfg.PollInterval = time.Second
	fc := newChecker(t, cfg, clock)
	err, spent := advanceUntil(t, clock, time.Second, func() error {
		_, err := fc.WaitHost(t.Context(), codfwHost, "registry2001", e.Want("codfw"))
		return err
	})
	var he *HostError
	if !errors.As(err, &he) || err.Error() != "DNS: host registry2001 resolves apus.discovery.wmnet to 10.2.1.10, want 10.2.2.10 (waited 00m 10s)" || spent != 10*time.Second {
		t.Fatalf("cached old answer: got %v after %s", err, spent)
	}

	// A "flush" that flushes nothing: the recursors' check says so.
	noop := worldConfig()
	noop.FlushCommands = [][]string{{"true"}}
	_, err = newChecker(t, noop, nil).FlushAndVerify(t.Context(), e)
	var fe *FlushError
	codfwRec := world.Recursor("codfw").Addr.String() + ":53"
	if !errors.As(err, &fe) || err.Error() != "DNS: cache flush did not take: recursor "+codfwRec+" answered 10.2.1.10 (codfw) for codfw clients, want 10.2.2.10 (eqiad)" {
		t.Fatalf("no-op flush: %v", err)
	}

	r, err := c.FlushAndVerify(t.Context(), e)
	if err != nil || len(r.Answers) != 2 || !r.Converged() {
		t.Fatalf("flush: %+v %v", r, err)
	}
	h, err := fc.WaitHost(t.Context(), codfwHost, "registry2001", e.Want("codfw"))
	if err != nil || !h.Matched || h.Addrs[0] != eqiadIP {
		t.Fatalf("after flush: %+v %v", h, err)
	}

	// getent failing on the host: the error names the host and the command.
	cfg.Record = "nope.discovery.wmnet"
	bad := newChecker(t, cfg, clock)
	err, _ = advanceUntil(t, clock, time.Second, func() error {
		_, err := bad.WaitHost(t.Context(), codfwHost, "registry2001", eqiadIP)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "DNS: host registry2001: getent ahosts nope.discovery.wmnet failed: exit status 2") {
		t.Fatalf("getent failure: %v", err)
	}
}

// Waiting the old TTL from the moment of convergence is enough: right
// after it, a host of the depooled datacenter resolves the new address
// through its recursor's real cache.
func TestTTLWaitIsEnough(t *testing.T) {
	c, addrs := reset(t, 3)
	codfwHost := hostns.Start(t, "registry2002", world.Recursor("codfw").ResolvConf)
	if h := c.ResolveOnHost(t.Context(), codfwHost, "registry2002", codfwIP); !h.Matched {
		t.Fatalf("before: %+v", h)
	}
	if err := putDiscovery(t.Context(), "codfw", false, 3); err != nil {
		t.Fatal(err)
	}
	e, _ := c.Expect(addrs, map[string]bool{"eqiad": true})
	r, err := c.WaitConverged(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	w := CacheWait{ConvergedAt: r.At, TTL: 3 * time.Second}
	if err := w.Wait(t.Context(), clockwork.NewRealClock()); err != nil {
		t.Fatal(err)
	}
	if h := c.ResolveOnHost(t.Context(), codfwHost, "registry2002", eqiadIP); !h.Matched {
		t.Fatalf("after waiting the TTL from convergence: %s", h.Problem(world.Record))
	}
}

// A flush command that fails names the command and its output.
func TestFlushFailure(t *testing.T) {
	needWorld(t)
	cfg := worldConfig()
	cfg.FlushCommands = [][]string{{"rec_control", "--socket-dir=/nonexistent", "wipe-cache", "{record}"}}
	err := newChecker(t, cfg, nil).Flush(t.Context())
	if err == nil || !strings.Contains(err.Error(), `DNS: cache flush "rec_control --socket-dir=/nonexistent wipe-cache apus.discovery.wmnet" failed: exit status`) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v", err)
	}
}

// The host check through poolbot's own local executor, whose command
// template enters the host's namespace.
func TestExecutorRunner(t *testing.T) {
	c, _ := reset(t, 3)
	host := hostns.Start(t, "registry1001", world.Recursor("eqiad").ResolvConf)
	local, err := restart.NewLocal(restart.LocalConfig{Command: append(host.Prefix(), "{argv}")}, restart.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := c.ResolveOnHost(t.Context(), ExecutorRunner{Executor: local}, "registry1001", eqiadIP)
	if !h.Matched || h.Err != nil {
		t.Fatalf("got %+v", h)
	}
	cfg := worldConfig()
	cfg.Record = "nope.discovery.wmnet"
	h = newChecker(t, cfg, nil).ResolveOnHost(t.Context(), ExecutorRunner{Executor: local}, "registry1001", eqiadIP)
	if p := h.Problem(cfg.Record); p != "host registry1001: getent ahosts nope.discovery.wmnet failed: exit 2" {
		t.Fatalf("got %q", p)
	}
}
