package hostns_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	dnsworld "poolbot/internal/testenv/dns"
	"poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/hostns"
)

// The test binary doubles as a Go program resolving a name with Go's own
// resolver (which reads /etc/resolv.conf itself), run inside a Host.
func TestMain(m *testing.M) {
	if name := os.Getenv("HOSTNS_TEST_RESOLVE"); name != "" {
		r := &net.Resolver{PreferGo: true}
		addrs, err := r.LookupHost(context.Background(), name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(strings.Join(addrs, " "))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// goResolve is what Go's resolver in a child process on h answers.
func goResolve(t *testing.T, h *hostns.Host, name string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(t.Context(), exe)
	cmd.Env = append(os.Environ(), "HOSTNS_TEST_RESOLVE="+name)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: Go resolver: %v", h.Name, err)
	}
	return strings.TrimSpace(string(out))
}

// ttl is the conftool ttl of the discovery objects in this test.
const ttl = 4

func putDiscovery(t *testing.T, srv *etcd.Server, dc string, pooled bool) {
	t.Helper()
	v := `{"pooled": false, "references": [], "ttl": 4}`
	if pooled {
		v = `{"pooled": true, "references": [], "ttl": 4}`
	}
	if _, err := srv.PutValue(t.Context(), etcd.DiscoveryKey("apus", dc), v); err != nil {
		t.Fatal(err)
	}
}

// resolve is the first address `getent ahosts` prints on h.
func resolve(t *testing.T, h *hostns.Host, name string) string {
	t.Helper()
	out, err := h.Run(t.Context(), h.Name, []string{"getent", "ahosts", name})
	if err != nil {
		t.Fatalf("%s: getent ahosts %s: %v (%s)", h.Name, name, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("%s: getent printed nothing", h.Name)
	}
	return f[0]
}

// authAnswer is what server answers for the record to a client in subnet.
func authAnswer(t *testing.T, server, record string, subnet netip.Prefix) (string, uint32) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(record), mdns.TypeA)
	o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
	o.Option = []mdns.EDNS0{&mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(subnet.Bits()), Address: subnet.Addr().AsSlice()}}
	m.Extra = []mdns.RR{o}
	r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(m, server)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("%s: %v %v", server, r, err)
	}
	a := r.Answer[0].(*mdns.A)
	return a.A.String(), a.Hdr.Ttl
}

// Two hosts of different datacenters resolve the discovery record through
// their datacenter's recursor, a conftool change in etcd moves gdnsd's
// answer, the recursor keeps the old answer for its TTL, and wipe-cache
// moves it at once.
func TestHostsResolveThroughTheirDatacenter(t *testing.T) {
	srv := etcd.Start(t)
	putDiscovery(t, srv, "eqiad", true)
	putDiscovery(t, srv, "codfw", true)
	w := dnsworld.Start(t, dnsworld.Options{EtcdURL: srv.ClientURL, HTTPClient: srv.HTTPClient()})
	t.Logf("DNS world (2 gdnsd, 2 pdns_recursor) up in %s", w.StartDuration.Round(time.Millisecond))

	eqiadHost := hostns.Start(t, "registry1001", w.Recursor("eqiad").ResolvConf)
	codfwHost := hostns.Start(t, "registry2001", w.Recursor("codfw").ResolvConf)
	const eqiadIP, codfwIP = "10.2.2.10", "10.2.1.10"
	if got := resolve(t, eqiadHost, w.Record); got != eqiadIP {
		t.Fatalf("eqiad host resolves %s, want %s", got, eqiadIP)
	}
	if got := resolve(t, codfwHost, w.Record); got != codfwIP {
		t.Fatalf("codfw host resolves %s, want %s", got, codfwIP)
	}
	if got := goResolve(t, codfwHost, w.Record); got != codfwIP {
		t.Fatalf("codfw host: Go's resolver answers %q, want %s", got, codfwIP)
	}
	// The machine's own resolv.conf is not the hosts'.
	if own, err := os.ReadFile("/etc/resolv.conf"); err != nil || strings.Contains(string(own), w.Recursor("codfw").Addr.String()) {
		t.Fatalf("the test's /etc/resolv.conf changed: %q %v", own, err)
	}
	codfwClients := netip.MustParsePrefix("10.192.0.1/32")
	for _, s := range w.Servers {
		if got, gotTTL := authAnswer(t, s, w.Record, codfwClients); got != codfwIP || gotTTL != ttl {
			t.Fatalf("%s answers %s TTL %d for codfw clients, want %s TTL %d", s, got, gotTTL, codfwIP, ttl)
		}
	}

	// Fresh cache entry on the codfw recursor at t0, then depool codfw.
	rec := w.Recursor("codfw")
	if err := rec.WipeCache(t.Context(), w.Record); err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, codfwHost, w.Record); got != codfwIP {
		t.Fatalf("codfw host resolves %s, want %s", got, codfwIP)
	}
	t0 := time.Now()
	putDiscovery(t, srv, "codfw", false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	renderedAt, err := w.Renderer.WaitContent(ctx, w.StateFileFor(map[string]bool{"eqiad": true}, ttl))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range w.Servers {
		for {
			if got, _ := authAnswer(t, s, w.Record, codfwClients); got == eqiadIP {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s still answers codfw for codfw clients", s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	moved := time.Now()
	t.Logf("etcd write -> state file %s, -> all gdnsd answer the new state %s",
		renderedAt.Sub(t0).Round(time.Millisecond), moved.Sub(t0).Round(time.Millisecond))

	// The recursor still holds the answer it fetched before t0.
	if moved.Sub(t0) < ttl*time.Second-time.Second {
		if got := resolve(t, codfwHost, w.Record); got != codfwIP {
			t.Fatalf("codfw host resolves %s %s after the change, before the TTL ran out: the recursor did not cache", got, time.Since(t0))
		}
	} else {
		t.Logf("gdnsd took %s, longer than the TTL less a second: the cached-answer check is skipped", moved.Sub(t0))
	}
	// ...and gets the new one once the TTL has run out.
	for resolve(t, codfwHost, w.Record) != eqiadIP {
		if time.Since(t0) > ttl*time.Second+5*time.Second {
			t.Fatalf("codfw host still resolves codfw %s after the change (TTL %ds)", time.Since(t0), ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("codfw host resolves eqiad %s after the etcd write (TTL %ds)", time.Since(t0).Round(time.Millisecond), ttl)
	if got := resolve(t, eqiadHost, w.Record); got != eqiadIP {
		t.Fatalf("eqiad host resolves %s, want %s", got, eqiadIP)
	}

	// Repool codfw: the recursor has eqiad's address cached; wipe-cache
	// makes the codfw host move at once.
	if got := resolve(t, codfwHost, w.Record); got != eqiadIP {
		t.Fatalf("codfw host resolves %s", got)
	}
	t1 := time.Now()
	putDiscovery(t, srv, "codfw", true)
	if _, err := w.Renderer.WaitContent(ctx, w.StateFileFor(map[string]bool{"eqiad": true, "codfw": true}, ttl)); err != nil {
		t.Fatal(err)
	}
	for _, s := range w.Servers {
		for {
			if got, _ := authAnswer(t, s, w.Record, codfwClients); got == codfwIP {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s still answers eqiad for codfw clients", s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := rec.WipeCache(t.Context(), w.Record); err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, codfwHost, w.Record); got != codfwIP {
		t.Fatalf("codfw host resolves %s right after wipe-cache, want %s", got, codfwIP)
	}
	t.Logf("repool + wipe-cache: codfw host resolves codfw %s after the etcd write", time.Since(t1).Round(time.Millisecond))
}
