package dns

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func validConfig() Config {
	return Config{
		Record:        "apus.discovery.wmnet",
		Authoritative: []string{"127.0.0.1", "ns1.wikimedia.org:53"},
		Datacenters: []Datacenter{
			{Name: "eqiad", ClientSubnet: "10.64.0.1"},
			{Name: "codfw", ClientSubnet: "10.192.0.0/12", Address: "10.2.1.10"},
		},
	}
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate("services.apus.dns."); err != nil {
		t.Fatal(err)
	}
	c, err := New(validConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers(); got[0] != "127.0.0.1:5353" || got[1] != "ns1.wikimedia.org:53" {
		t.Fatalf("servers %v: the default port is 5353", got)
	}
	if cfg := c.Config(); cfg.ConvergeTimeout != DefaultConvergeTimeout || cfg.AddressRecord != DefaultAddressRecord || !cfg.HostCheckOrDefault() {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	for in, want := range map[string]string{"10.64.0.1": "10.64.0.0/24", "2620:0:860::1": "2620:0:860::/56", "10.192.0.0/12": "10.192.0.0/12"} {
		if p, err := ParseClientSubnet(in); err != nil || p.String() != want {
			t.Errorf("client subnet %s: %v %v, want %s (dnspython's default lengths)", in, p, err, want)
		}
	}
	if c.Config().Service() != "apus" {
		t.Fatalf("service %q", c.Config().Service())
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"no record":               {func(c *Config) { c.Record = "" }, "services.apus.dns.record: required"},
		"bad record":              {func(c *Config) { c.Record = "apus discovery" }, `record: "apus discovery" is not a fully qualified`},
		"single label":            {func(c *Config) { c.Record = "apus" }, "not a fully qualified"},
		"no servers":              {func(c *Config) { c.Authoritative = nil }, "authoritative: at least one"},
		"bad port":                {func(c *Config) { c.Authoritative = []string{"1.2.3.4:0"} }, "authoritative[0]: \"1.2.3.4:0\": port must be 1-65535"},
		"bad server":              {func(c *Config) { c.Authoritative = []string{"a b"} }, "authoritative[0]"},
		"twice":                   {func(c *Config) { c.Authoritative = []string{"1.2.3.4", "1.2.3.4:5353"} }, "authoritative[1]: 1.2.3.4:5353 is listed twice"},
		"one dc":                  {func(c *Config) { c.Datacenters = c.Datacenters[:1] }, "datacenters: at least two"},
		"dup dc":                  {func(c *Config) { c.Datacenters[1].Name = "eqiad" }, `datacenters[1].name: "eqiad" is listed twice`},
		"bad subnet":              {func(c *Config) { c.Datacenters[0].ClientSubnet = "10.64.0.1/40" }, "datacenters[0].client_subnet"},
		"no subnet":               {func(c *Config) { c.Datacenters[0].ClientSubnet = "" }, "datacenters[0].client_subnet: required"},
		"bad address":             {func(c *Config) { c.Datacenters[1].Address = "apus.svc" }, `datacenters[1].address: "apus.svc" is not an IP address`},
		"template no dc":          {func(c *Config) { c.AddressRecord = "apus.svc.wmnet" }, "address_record"},
		"negative timeout":        {func(c *Config) { c.ConvergeTimeout = -time.Second }, "converge_timeout: -1s must not be negative"},
		"empty flush":             {func(c *Config) { c.FlushCommands = [][]string{{}} }, "flush_commands[0]: empty command"},
		"recursors without flush": {func(c *Config) { c.Datacenters[0].Recursors = []string{"10.3.0.1"} }, "datacenters[0].recursors: only used to check flush_commands"},
		"bad recursor": {func(c *Config) {
			c.FlushCommands = [][]string{{"true"}}
			c.Datacenters[0].Recursors = []string{"10.3.0.1:99999"}
		}, "datacenters[0].recursors[0]: \"10.3.0.1:99999\": port must be 1-65535"},
		"flush newline": {func(c *Config) { c.FlushCommands = [][]string{{"cumin", "a\nb"}} }, "flush_commands[0][1]"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Datacenters = append([]Datacenter(nil), cfg.Datacenters...)
			tc.edit(&cfg)
			err := cfg.Validate("services.apus.dns.")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if _, err := New(cfg, nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestExpect(t *testing.T) {
	cfg := validConfig()
	cfg.Datacenters = append(cfg.Datacenters, Datacenter{Name: "esams", ClientSubnet: "10.20.0.1"})
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]netip.Addr{
		"eqiad": netip.MustParseAddr("10.2.2.10"), "codfw": netip.MustParseAddr("10.2.1.10"), "esams": netip.MustParseAddr("10.2.3.10"),
	}
	e, err := c.Expect(addrs, map[string]bool{"eqiad": true, "codfw": false, "esams": true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Serving["codfw"] != "eqiad" || e.Serving["eqiad"] != "eqiad" || e.Serving["esams"] != "esams" || e.Want("codfw") != addrs["eqiad"] {
		t.Fatalf("depool codfw: %+v", e)
	}
	// Depooled datacenters fall back to the first pooled one in order.
	e, err = c.Expect(addrs, map[string]bool{"esams": true})
	if err != nil || e.Serving["eqiad"] != "esams" || e.Serving["codfw"] != "esams" {
		t.Fatalf("only esams: %+v %v", e, err)
	}
	if e.DCOf(netip.MustParseAddr("10.2.1.10")) != "codfw" || e.DCOf(netip.MustParseAddr("10.9.9.9")) != "" {
		t.Fatal("DCOf")
	}
	if _, err := c.Expect(addrs, map[string]bool{}); err == nil || !strings.Contains(err.Error(), "no datacenter of apus.discovery.wmnet is pooled") {
		t.Fatalf("nothing pooled: %v", err)
	}
	if _, err := c.Expect(map[string]netip.Addr{"eqiad": addrs["eqiad"]}, map[string]bool{"eqiad": true}); err == nil || !strings.Contains(err.Error(), "no service address for datacenter codfw") {
		t.Fatalf("missing address: %v", err)
	}
}

// Real `getent ahosts` output (glibc 2.36) for a name with one address.
const getentOutput = "10.2.2.10       STREAM apus.discovery.wmnet\n10.2.2.10       DGRAM  \n10.2.2.10       RAW    \n"

func TestParseGetentAhosts(t *testing.T) {
	got, err := ParseGetentAhosts([]byte(getentOutput))
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("10.2.2.10") {
		t.Fatalf("got %v, %v", got, err)
	}
	got, err = ParseGetentAhosts([]byte("2001:db8::1 STREAM x\n2001:db8::1 DGRAM\n::ffff:10.0.0.1 STREAM\n10.0.0.1 RAW\n"))
	if err != nil || len(got) != 2 || got[1] != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := ParseGetentAhosts(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for in, want := range map[string]string{
		"apus.discovery.wmnet STREAM\n":   `line 1: "apus.discovery.wmnet" is not an address`,
		"10.2.2.10 STREAM x\n10.2.2.10\n": `line 2 is not "<address> <socket type> [name]"`,
		"10.2.2.10 SEQPACKET x\n":         `line 1: "SEQPACKET" is not a socket type`,
		"fe80::1%eth0 STREAM\n":           "is not an address",
		"10.0.0.1 STREAM a b c\n":         "line 1 is not",
	} {
		if _, err := ParseGetentAhosts([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func FuzzParseGetentAhosts(f *testing.F) {
	f.Add([]byte(getentOutput))
	f.Add([]byte("2001:db8::1 STREAM x\n::ffff:10.0.0.1 RAW\n"))
	f.Add([]byte("\x00\r\n10.0.0.1\tDGRAM\t\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		addrs, err := ParseGetentAhosts(in)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r\x00") {
				t.Fatalf("error with a control character: %q", err)
			}
			return
		}
		seen := map[netip.Addr]bool{}
		var b strings.Builder
		for _, a := range addrs {
			if !a.IsValid() || a.Is4In6() || a.Zone() != "" || seen[a] {
				t.Fatalf("bad or repeated address %v in %v", a, addrs)
			}
			seen[a] = true
			b.WriteString(a.String() + " STREAM name\n")
		}
		again, err := ParseGetentAhosts([]byte(b.String()))
		if err != nil || len(again) != len(addrs) {
			t.Fatalf("re-parse of %v: %v %v", addrs, again, err)
		}
	})
}

func TestCacheWait(t *testing.T) {
	converged := time.Date(2026, 11, 23, 13, 58, 10, 0, time.UTC)
	w := CacheWait{ConvergedAt: converged, TTL: 300 * time.Second}
	if w.Until() != converged.Add(5*time.Minute) {
		t.Fatal(w.Until())
	}
	now := converged.Add(47*time.Second + 800*time.Millisecond)
	if got := w.Remaining(now); got != 252*time.Second+200*time.Millisecond {
		t.Fatalf("remaining %s", got)
	}
	if got := w.Line(now); got != "DNS: waiting 04m 12s for cached answers to expire; restarts start at 14:03:10 UTC" {
		t.Fatalf("line %q", got)
	}
	if w.Remaining(converged.Add(10*time.Minute)) != 0 {
		t.Fatal("negative remaining")
	}

	// A poolbot restarted 100 s after convergence, with the stored wait,
	// waits the 200 s left: not less, not from zero.
	clock := clockwork.NewFakeClockAt(converged.Add(100 * time.Second))
	done := make(chan error, 1)
	go func() { done <- w.Wait(context.Background(), clock) }()
	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(199 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("wait ended after 199 of 200 s: %v", err)
	default:
	}
	clock.Advance(time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not end at 200 s")
	}

	// Past the end: no wait at all.
	if err := w.Wait(context.Background(), clockwork.NewFakeClockAt(w.Until())); err != nil {
		t.Fatal(err)
	}
	// Cancelled: the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- w.Wait(ctx, clockwork.NewFakeClockAt(converged)) }()
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancel: %v", err)
	}
}
