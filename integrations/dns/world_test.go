package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	mdns "github.com/miekg/dns"

	"poolbot/internal/testenv"
	dnsworld "poolbot/internal/testenv/dns"
	etcdenv "poolbot/internal/testenv/etcd"
)

// The package's tests share one etcd and one DNS world (two gdnsd, one
// pdns_recursor per datacenter), started once here.
var (
	etcdSrv  *etcdenv.Server
	world    *dnsworld.World
	worldErr error
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "poolbot-dns-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if worldErr = startWorld(dir); worldErr == nil {
		defer world.Stop()
		defer etcdSrv.Stop()
	}
	return m.Run()
}

func startWorld(dir string) error {
	for _, bin := range []string{"etcd", "gdnsd", "pdns_recursor", "rec_control", "unshare", "nsenter", "getent"} {
		if _, err := testenv.Lookup(bin); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the DNS world binds port 53 and makes mount namespaces: needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o755); err != nil {
		return err
	}
	var err error
	if etcdSrv, err = etcdenv.Launch(ctx, filepath.Join(dir, "etcd")); err != nil {
		return err
	}
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := putDiscovery(ctx, dc, true, 3); err != nil {
			etcdSrv.Stop()
			return err
		}
	}
	world, err = dnsworld.Launch(ctx, dir, dnsworld.Options{EtcdURL: etcdSrv.ClientURL, HTTPClient: etcdSrv.HTTPClient()})
	if err != nil {
		etcdSrv.Stop()
		return err
	}
	return nil
}

// needWorld skips the test when the world could not start (fails in CI).
func needWorld(t *testing.T) {
	t.Helper()
	if worldErr == nil {
		return
	}
	if testenv.InCI() {
		t.Fatalf("DNS world: %v", worldErr)
	}
	t.Skipf("DNS world: %v", worldErr)
}

func putDiscovery(ctx context.Context, dc string, pooled bool, ttl int) error {
	_, err := etcdSrv.PutValue(ctx, etcdenv.DiscoveryKey("apus", dc),
		fmt.Sprintf(`{"pooled": %t, "references": [], "ttl": %d}`, pooled, ttl))
	return err
}

// worldConfig is the dns section for the world: its servers and
// recursors, spicerack's client subnets, addresses resolved from
// apus.svc.<dc>.wmnet.
func worldConfig() Config {
	cfg := Config{
		Record:        world.Record,
		Authoritative: world.Servers,
		Datacenters: []Datacenter{
			{Name: "eqiad", ClientSubnet: "10.64.0.1"},
			{Name: "codfw", ClientSubnet: "10.192.0.1"},
		},
		PollInterval: 100 * time.Millisecond,
	}
	for _, r := range world.Recursors {
		cfg.FlushCommands = append(cfg.FlushCommands, r.WipeArgv("{record}"))
	}
	for i := range cfg.Datacenters {
		cfg.Datacenters[i].Recursors = []string{world.Recursor(cfg.Datacenters[i].Name).Addr.String()}
	}
	return cfg
}

func newChecker(t *testing.T, cfg Config, clock clockwork.Clock) *Checker {
	t.Helper()
	c, err := New(cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reset pools both datacenters with ttl, waits for the authoritative
// servers and empties the recursors' caches.
func reset(t *testing.T, ttl int) (*Checker, map[string]netip.Addr) {
	t.Helper()
	needWorld(t)
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := putDiscovery(t.Context(), dc, true, ttl); err != nil {
			t.Fatal(err)
		}
	}
	c := newChecker(t, worldConfig(), nil)
	addrs, err := c.Addresses(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Expect(addrs, map[string]bool{"eqiad": true, "codfw": true})
	if err != nil {
		t.Fatal(err)
	}
	// The TTL is part of the state file: wait for it too.
	if _, err := world.Renderer.WaitContent(t.Context(), world.StateFileFor(map[string]bool{"eqiad": true, "codfw": true}, ttl)); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := c.WaitConverged(t.Context(), e)
		if err != nil {
			t.Fatalf("reset: %v\n%s", err, world.Logs())
		}
		if r.MaxTTL() == time.Duration(ttl)*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c, addrs
}

// silentServer is a UDP socket that reads queries and never answers: an
// authoritative server that times out.
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// servfailServer answers every query SERVFAIL, like an authoritative
// server whose zone failed to load. gdnsd cannot be made to do that on
// purpose, so this one answer comes from miekg/dns's server.
func servfailServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeServerFailure)
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}
