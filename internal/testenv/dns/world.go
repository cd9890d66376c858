// Package dns runs the DNS side of a discovery switch for tests, from
// Debian's real daemons: gdnsd authoritative servers configured the way
// Wikimedia's puppet does it (profile::dns::auth::discovery: an extfile
// state file per service with direct => true, and a geoip resource whose
// map's `nets` give each datacenter's clients their datacenter), a
// Renderer that rewrites the state file from etcd like confd, and one
// pdns-recursor per datacenter with real caching in front of them.
//
// Every world takes its own random 127.a.b.0/24 block and one /24 per
// datacenter, so parallel test binaries do not clash although the
// recursors listen on port 53 (a resolv.conf nameserver has no port):
//
//	127.a.b.10+i:5353    authoritative server i (gdnsd)
//	127.a.b+1+k.53:53    datacenter k's recursor (pdns_recursor)
//	127.a.b+1+k.1        the source address of its queries to gdnsd,
//	                     which gdnsd's nets map puts in datacenter k
//
// gdnsd 3.8 cannot take a geoip `map` without a GeoIP2 database, but a map
// given only as `datacenters` plus `nets` works; that is what is used.
// Port 53 needs root (CI runs as root).
package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"poolbot/internal/testenv"
)

// startTimeout bounds the start of each daemon.
const startTimeout = 20 * time.Second

// DC is one datacenter of the service.
type DC struct {
	// Name is the conftool name, e.g. eqiad.
	Name string
	// ServiceIP is the address its clients get while it is pooled.
	ServiceIP netip.Addr
	// ClientNet is a production-like client prefix (e.g. 10.64.0.0/12)
	// that gdnsd's nets map also puts in this datacenter, for checks that
	// send an EDNS client subnet.
	ClientNet netip.Prefix
}

// Options describe the world.
type Options struct {
	// Service is the discovery service, e.g. apus (record
	// apus.discovery.wmnet, state file discovery-apus.state).
	Service string
	// DCs in failover order: each datacenter's clients fall back to the
	// others in this order.
	DCs []DC
	// Servers is the number of authoritative servers; default 2.
	Servers int
	// EtcdURL and Prefix (default /conftool/v1) locate the discovery
	// objects; HTTPClient talks to etcd (default http.DefaultClient).
	EtcdURL    string
	Prefix     string
	HTTPClient *http.Client
	// MaxTTL and MinTTL bound the record's TTL in the zone, like
	// Wikimedia's "300/10"; defaults 300 and 1 (tests use small conftool
	// ttls).
	MaxTTL, MinTTL int
}

// DefaultDCs are apus's datacenters with their production service and
// spicerack client addresses.
func DefaultDCs() []DC {
	return []DC{
		{Name: "eqiad", ServiceIP: netip.MustParseAddr("10.2.2.10"), ClientNet: netip.MustParsePrefix("10.64.0.0/12")},
		{Name: "codfw", ServiceIP: netip.MustParseAddr("10.2.1.10"), ClientNet: netip.MustParsePrefix("10.192.0.0/12")},
	}
}

// Recursor is one datacenter's pdns_recursor.
type Recursor struct {
	// DC is the datacenter whose clients it serves.
	DC string
	// Addr is where it listens, port 53; Source is the address its
	// queries to gdnsd come from.
	Addr, Source netip.Addr
	// SocketDir holds its control socket (rec_control --socket-dir).
	SocketDir string
	// ResolvConf is a resolv.conf naming Addr, for hosts of DC.
	ResolvConf string
	proc       *process
}

// Logs is what the recursor has printed.
func (r *Recursor) Logs() string { return r.proc.logs.String() }

// WipeArgv is `rec_control --socket-dir=<dir> wipe-cache <name>`, the
// command Wikimedia's sre.dns.wipe-cache runs on each recursor.
func (r *Recursor) WipeArgv(name string) []string {
	bin, err := testenv.Lookup("rec_control")
	if err != nil {
		bin = "rec_control"
	}
	return []string{bin, "--socket-dir=" + r.SocketDir, "wipe-cache", name}
}

// WipeCache drops name from every cache of the recursor.
func (r *Recursor) WipeCache(ctx context.Context, name string) error {
	argv := r.WipeArgv(name)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// World is a running set of authoritative servers, the renderer and the
// recursors.
type World struct {
	Service string
	// Record is e.g. apus.discovery.wmnet.
	Record string
	// Servers are the authoritative servers, host:port.
	Servers []string
	// Recursors in DCs order.
	Recursors []*Recursor
	DCs       []DC
	// StateFiles are the gdnsd state files, one per server.
	StateFiles []string
	Renderer   *Renderer
	// StartDuration is how long Launch took (daemons up and answering).
	StartDuration time.Duration

	gdnsd  []*process
	cancel context.CancelFunc
	done   chan struct{}
}

// Recursor returns dc's recursor.
func (w *World) Recursor(dc string) *Recursor {
	for _, r := range w.Recursors {
		if r.DC == dc {
			return r
		}
	}
	return nil
}

// Logs returns every daemon's output, for failure messages.
func (w *World) Logs() string {
	var b strings.Builder
	for i, p := range w.gdnsd {
		fmt.Fprintf(&b, "--- gdnsd %s\n%s", w.Servers[i], p.logs.String())
	}
	for _, r := range w.Recursors {
		if r.proc != nil {
			fmt.Fprintf(&b, "--- pdns_recursor %s (%s)\n%s", r.Addr, r.DC, r.proc.logs.String())
		}
	}
	return b.String()
}

// Start launches a world in the test's temporary directory and stops it
// with the test. It skips (fails under CI) when gdnsd or pdns_recursor is
// missing, and skips when not root (port 53).
func Start(t testing.TB, o Options) *World {
	t.Helper()
	testenv.Need(t, "gdnsd")
	testenv.Need(t, "pdns_recursor")
	testenv.Need(t, "rec_control")
	if os.Geteuid() != 0 && !testenv.InCI() {
		t.Skip("the DNS world binds port 53 on loopback addresses: needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	w, err := Launch(ctx, t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("DNS world logs:\n%s", w.Logs())
		}
		w.Stop()
	})
	return w
}

// Launch is Start for TestMain and the lab: dir must exist, the caller
// stops the world.
func Launch(ctx context.Context, dir string, o Options) (*World, error) {
	began := time.Now()
	if o.Service == "" {
		o.Service = "apus"
	}
	if len(o.DCs) == 0 {
		o.DCs = DefaultDCs()
	}
	if o.Servers == 0 {
		o.Servers = 2
	}
	if o.Prefix == "" {
		o.Prefix = "/conftool/v1"
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = 300
	}
	if o.MinTTL == 0 {
		o.MinTTL = 1
	}
	if o.EtcdURL == "" {
		return nil, errors.New("dns world: Options.EtcdURL is required")
	}
	gdnsd, err := testenv.Lookup("gdnsd")
	if err != nil {
		return nil, fmt.Errorf("dns world: %w (Debian package gdnsd)", err)
	}
	recursor, err := testenv.Lookup("pdns_recursor")
	if err != nil {
		return nil, fmt.Errorf("dns world: %w (Debian package pdns-recursor)", err)
	}
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		a, b := 64+rand.IntN(190), 1+rand.IntN(250-len(o.DCs))
		w, err := launch(ctx, filepath.Join(dir, fmt.Sprintf("world%d", attempt)), o, gdnsd, recursor, a, b)
		if err == nil {
			w.StartDuration = time.Since(began)
			return w, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func launch(ctx context.Context, dir string, o Options, gdnsdBin, recursorBin string, a, b int) (w *World, err error) {
	w = &World{Service: o.Service, Record: o.Service + ".discovery.wmnet", DCs: o.DCs, done: make(chan struct{})}
	defer func() {
		if err != nil {
			logs := w.Logs()
			w.Stop()
			err = fmt.Errorf("%w\n%s", err, logs)
		}
	}()
	for i := 0; i < o.Servers; i++ {
		w.Servers = append(w.Servers, fmt.Sprintf("127.%d.%d.%d:5353", a, b, 10+i))
	}
	for k, dc := range o.DCs {
		w.Recursors = append(w.Recursors, &Recursor{
			DC:     dc.Name,
			Addr:   netip.AddrFrom4([4]byte{127, byte(a), byte(b + 1 + k), 53}),
			Source: netip.AddrFrom4([4]byte{127, byte(a), byte(b + 1 + k), 1}),
		})
	}
	// Another world (or anything) on these addresses: pick others.
	for _, s := range w.Servers {
		if err := probeFree(s); err != nil {
			return w, err
		}
	}
	for _, r := range w.Recursors {
		if err := probeFree(netip.AddrPortFrom(r.Addr, 53).String()); err != nil {
			return w, err
		}
	}

	// The renderer writes each server's state file before gdnsd starts,
	// as confd would have.
	ips := map[string]netip.Addr{}
	for _, dc := range o.DCs {
		ips[dc.Name] = dc.ServiceIP
	}
	for i := range w.Servers {
		w.StateFiles = append(w.StateFiles, filepath.Join(dir, fmt.Sprintf("gdnsd%d", i), "discovery-"+o.Service+".state"))
		if err := os.MkdirAll(filepath.Dir(w.StateFiles[i]), 0o755); err != nil {
			return w, err
		}
	}
	w.Renderer = newRenderer(o.HTTPClient, o.EtcdURL, o.Prefix, o.Service, ips, w.StateFiles)
	rctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { defer close(w.done); w.Renderer.run(rctx) }()
	wctx, wcancel := context.WithTimeout(ctx, startTimeout)
	defer wcancel()
	for w.Renderer.Renders() == 0 {
		if !sleepCtx(wctx, 10*time.Millisecond) {
			w.Renderer.mu.Lock()
			lastErr := w.Renderer.lastErr
			w.Renderer.mu.Unlock()
			return w, fmt.Errorf("dns world: no state file rendered from etcd (are the discovery objects of %s written?): %v", o.Service, lastErr)
		}
	}

	for i, server := range w.Servers {
		sdir := filepath.Dir(w.StateFiles[i])
		if err := writeGdnsdConfig(sdir, server, w.StateFiles[i], o, w.Recursors); err != nil {
			return w, err
		}
		p, err := startProcess("gdnsd "+server, gdnsdBin, "-c", filepath.Join(sdir, "etc"), "start")
		if err != nil {
			return w, err
		}
		w.gdnsd = append(w.gdnsd, p)
	}
	for i, server := range w.Servers {
		if err := waitAnswers(wctx, w.gdnsd[i], server, "discovery.wmnet."); err != nil {
			return w, fmt.Errorf("dns world: gdnsd on %s: %w", server, err)
		}
	}

	for _, r := range w.Recursors {
		r.SocketDir = filepath.Join(dir, "recursor-"+r.DC)
		if err := os.MkdirAll(r.SocketDir, 0o755); err != nil {
			return w, err
		}
		r.ResolvConf = filepath.Join(r.SocketDir, "resolv.conf")
		if err := os.WriteFile(r.ResolvConf, []byte("nameserver "+r.Addr.String()+"\noptions timeout:1 attempts:2\n"), 0o644); err != nil {
			return w, err
		}
		r.proc, err = startProcess("pdns_recursor "+r.DC, recursorBin,
			"--config-dir="+r.SocketDir,
			"--socket-dir="+r.SocketDir,
			"--local-address="+r.Addr.String(),
			"--local-port=53",
			"--query-local-address="+r.Source.String(),
			"--forward-zones=discovery.wmnet="+strings.Join(w.Servers, ";"),
			"--allow-from=127.0.0.0/8",
			"--daemon=no", "--write-pid=no", "--disable-syslog", "--log-timestamp=no",
			"--dnssec=off", "--threads=1", "--security-poll-suffix=",
			"--loglevel=4",
		)
		if err != nil {
			return w, err
		}
	}
	for _, r := range w.Recursors {
		// Asking the zone's SOA leaves the service record uncached.
		if err := waitAnswers(wctx, r.proc, netip.AddrPortFrom(r.Addr, 53).String(), "discovery.wmnet."); err != nil {
			return w, fmt.Errorf("dns world: pdns_recursor for %s on %s: %w", r.DC, r.Addr, err)
		}
	}
	return w, nil
}

// probeFree checks that host:port is free for UDP and TCP.
func probeFree(hostport string) error {
	u, err := net.ListenPacket("udp", hostport)
	if err != nil {
		return fmt.Errorf("dns world: %s taken: %w", hostport, err)
	}
	u.Close()
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		return fmt.Errorf("dns world: %s taken: %w", hostport, err)
	}
	l.Close()
	return nil
}

// waitAnswers asks server for zone's SOA until it answers NOERROR.
func waitAnswers(ctx context.Context, p *process, server, zone string) error {
	m := new(mdns.Msg)
	m.SetQuestion(zone, mdns.TypeSOA)
	c := &mdns.Client{Timeout: 300 * time.Millisecond}
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("exited (%v): %v", p.cmd.ProcessState, last)
		}
		resp, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil && resp.Rcode == mdns.RcodeSuccess {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answered %s", mdns.RcodeToString[resp.Rcode])
		}
		last = err
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("not answering: %v", last)
		}
	}
}

// Stop stops every daemon and the renderer.
func (w *World) Stop() {
	for _, r := range w.Recursors {
		r.proc.stop()
	}
	for _, p := range w.gdnsd {
		p.stop()
	}
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
}

// writeGdnsdConfig writes etc/config and etc/zones for one server, after
// puppet's discovery-states.erb, discovery-geo-resources.erb and the
// discovery.wmnet zone (`apus 300/10 IN DYNA geoip!disc-apus`).
func writeGdnsdConfig(dir, listen, stateFile string, o Options, recursors []*Recursor) error {
	host, port, _ := net.SplitHostPort(listen)
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(filepath.Join(etc, "zones"), 0o755); err != nil {
		return err
	}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	var names []string
	for _, dc := range o.DCs {
		names = append(names, dc.Name)
	}
	// Each datacenter's clients: its own first, then the others in order.
	order := func(k int) string {
		l := []string{names[k]}
		for i, n := range names {
			if i != k {
				l = append(l, n)
			}
		}
		return "[ " + strings.Join(l, ", ") + " ]"
	}
	var c strings.Builder
	fmt.Fprintf(&c, "options => {\n  listen => [ %s ]\n  dns_port => %s\n", host, port)
	fmt.Fprintf(&c, "  run_dir => %s\n  state_dir => %s\n", filepath.Join(dir, "run"), filepath.Join(dir, "state"))
	// gdnsd clamps record TTLs to min_ttl (default 5); tests use less.
	fmt.Fprintf(&c, "  min_ttl => %d\n", o.MinTTL)
	c.WriteString("  lock_mem => false\n  udp_threads => 1\n  tcp_threads => 1\n}\n")
	fmt.Fprintf(&c, "service_types => {\n  discovery-state-%s => {\n    plugin => extfile\n    file => %s\n    direct => true\n  }\n}\n", o.Service, stateFile)
	c.WriteString("plugins => {\n  geoip => {\n    maps => {\n      discovery-map => {\n")
	fmt.Fprintf(&c, "        datacenters => [ %s ]\n        nets => {\n", strings.Join(names, ", "))
	for k, dc := range o.DCs {
		if dc.ClientNet.IsValid() {
			fmt.Fprintf(&c, "          %s => %s\n", dc.ClientNet.Masked(), order(k))
		}
		src := recursors[k].Source.As4()
		fmt.Fprintf(&c, "          %d.%d.%d.0/24 => %s\n", src[0], src[1], src[2], order(k))
	}
	c.WriteString("        }\n      }\n    }\n    resources => {\n")
	fmt.Fprintf(&c, "      disc-%s => {\n        map => discovery-map\n        service_types => discovery-state-%s\n        dcmap => {\n", o.Service, o.Service)
	for _, dc := range o.DCs {
		fmt.Fprintf(&c, "          %s => %s\n", dc.Name, dc.ServiceIP)
	}
	c.WriteString("        }\n      }\n    }\n  }\n}\n")
	if err := os.WriteFile(filepath.Join(etc, "config"), []byte(c.String()), 0o644); err != nil {
		return err
	}

	soa := "@ 3600 IN SOA ns0.wikimedia.org. hostmaster.wikimedia.org. 1 43200 7200 1209600 3600\n@ 3600 IN NS ns0.wikimedia.org.\n@ 3600 IN NS ns1.wikimedia.org.\n"
	zone := soa + fmt.Sprintf("%s %d/%d IN DYNA geoip!disc-%s\n", o.Service, o.MaxTTL, o.MinTTL, o.Service)
	if err := os.WriteFile(filepath.Join(etc, "zones", "discovery.wmnet"), []byte(zone), 0o644); err != nil {
		return err
	}
	// <svc>.svc.<dc>.wmnet, what spicerack resolves for the expected
	// address of each datacenter.
	for _, dc := range o.DCs {
		z := soa + fmt.Sprintf("%s 300 IN A %s\n", o.Service, dc.ServiceIP)
		if err := os.WriteFile(filepath.Join(etc, "zones", "svc."+dc.Name+".wmnet"), []byte(z), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// StateFileFor renders the state file expected for a pooled state and
// ttl, for tests comparing with Renderer.WaitContent.
func (w *World) StateFileFor(pooled map[string]bool, ttl int) string {
	objects := map[string]string{}
	ips := map[string]netip.Addr{}
	for _, dc := range w.DCs {
		ips[dc.Name] = dc.ServiceIP
		objects[dc.Name] = `{"pooled": ` + strconv.FormatBool(pooled[dc.Name]) + `, "references": [], "ttl": ` + strconv.Itoa(ttl) + `}`
	}
	s, _ := RenderStateFile(ips, objects)
	return s
}
