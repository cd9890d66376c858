// Package incident runs the world of T422166 ("scap can't deploy (blob
// upload unknown) after apus.discovery.wmnet is repooled in codfw") on
// real parts, for the incident stories of e2e/incident and poolbot-lab:
//
//   - etcd holding apus' conftool discovery objects and the registry
//     hosts' LVS node objects;
//   - apus: one Ceph RGW site per datacenter, no replication (testenv/apus);
//   - DNS: gdnsd fed from etcd like confd, one pdns-recursor per
//     datacenter (testenv/dns), answering apus.discovery.wmnet with the
//     address of a site's gateway;
//   - registry hosts in one datacenter (codfw, the docker registry's
//     active one): each a private mount namespace whose resolv.conf names
//     its datacenter's recursor (testenv/hostns), running a real registry
//     on S3 with regionendpoint http://apus.discovery.wmnet:<port>, on its
//     own loopback address with the same ports as the others;
//   - HAProxy in front of them (LVS for docker-registry.discovery.wmnet),
//     with a pybal stand-in applying the node objects;
//   - a "systemctl" restarting the registries (testenv/lab), for poolbot's
//     local executor.
//
// Nothing in the world replicates or restarts by itself: what a registry
// writes lands in the site its S3 connections lead to, and those follow
// DNS only when the registry dials (see testenv/registry.S3Storage).
package incident

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/ceph"
	"poolbot/internal/testenv/dns"
	"poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/haproxy"
	"poolbot/internal/testenv/hostns"
	"poolbot/internal/testenv/registry"
	"poolbot/internal/testenv/site"
)

// Names of the LVS pool the registry hosts are in (conftool node objects
// pools/<dc>/<Cluster>/<Service>/<fqdn>).
const (
	Cluster = "docker-registry"
	Service = "docker-registry"
)

// Options describe the world.
type Options struct {
	// Hosts is the number of registry hosts (default 2).
	Hosts int
	// DC is their datacenter (default codfw).
	DC string
	// Pooled is apus' initial pooled state per datacenter (default: both).
	Pooled map[string]bool
	// TTL is the discovery objects' initial ttl in seconds (default 1).
	TTL int
	// RegistryBinary; empty means registry.Binary.
	RegistryBinary string
	// Log, when set, is told what starts and how long it took.
	Log func(format string, args ...any)
}

// Host is one registry host.
type Host struct {
	// Name is its FQDN (registry2004.codfw.wmnet), Addr its loopback
	// address: poolbot's restart plan names hosts by Addr.
	Name, Addr string
	NS         *hostns.Host
	Reg        *registry.Instance
}

// World is the running world.
type World struct {
	Dir  string
	Etcd *etcd.Server
	Apus *apus.Apus
	DNS  *dns.World
	// DC is the hosts' datacenter.
	DC    string
	Hosts []*Host
	// Port and DebugPort are every host's registry ports.
	Port, DebugPort int
	LB              *haproxy.Balancer
	Pybal           *haproxy.Pybal
	Systemctl       *site.Systemctl
	// Started says how long each part took to start.
	Started map[string]time.Duration

	cancel context.CancelFunc
	pybalD chan struct{}
}

// Check reports why the world cannot run here (binaries, root).
func Check() error {
	var missing []string
	for _, b := range append([]string{"etcd", "gdnsd", "pdns_recursor", "rec_control", "haproxy", "unshare", "nsenter"}, cephBinaries()...) {
		if _, err := testenv.Lookup(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s (scripts/install-test-deps.sh installs them)", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: DNS on port 53 and per-host mount namespaces")
	}
	return nil
}

// Launch starts the world in dir (which must exist). The caller Closes it.
func Launch(ctx context.Context, dir string, o Options) (w *World, err error) {
	if o.Hosts == 0 {
		o.Hosts = 2
	}
	if o.DC == "" {
		o.DC = "codfw"
	}
	if o.Pooled == nil {
		o.Pooled = map[string]bool{"eqiad": true, "codfw": true}
	}
	if o.TTL == 0 {
		o.TTL = 1
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	w = &World{Dir: dir, DC: o.DC, Started: map[string]time.Duration{}}
	defer func() {
		if err != nil {
			w.Close()
			w = nil
		}
	}()
	timed := func(what string, f func() error) error {
		began := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		w.Started[what] = time.Since(began)
		logf("%-40s up in %s", what, w.Started[what].Round(time.Millisecond))
		return nil
	}

	// etcd and the two Ceph sites do not depend on each other.
	g, gctx := errgroup.WithContext(ctx)
	regBin := o.RegistryBinary
	g.Go(func() error {
		return timed("etcd", func() error {
			e, err := etcd.Launch(gctx, filepath.Join(dir, "etcd"))
			w.Etcd = e
			return err
		})
	})
	g.Go(func() error {
		return timed("apus: Ceph RGW in eqiad and codfw", func() error {
			a, err := apus.Launch(gctx, dir)
			w.Apus = a
			return err
		})
	})
	if regBin == "" {
		g.Go(func() error {
			return timed("docker registry binary", func() error {
				var err error
				regBin, err = registry.Binary(gctx)
				return err
			})
		})
	}
	if err := g.Wait(); err != nil {
		return w, err
	}
	for _, dc := range apus.DCs {
		if err := w.SetDiscovery(ctx, dc, o.Pooled[dc], o.TTL); err != nil {
			return w, err
		}
	}
	err = timed("DNS: gdnsd ×2, pdns-recursor ×2", func() error {
		var dcs []dns.DC
		for _, d := range dns.DefaultDCs() {
			addr, err := netip.ParseAddr(w.Apus.Address(d.Name))
			if err != nil {
				return fmt.Errorf("apus %s address: %w", d.Name, err)
			}
			d.ServiceIP = addr
			dcs = append(dcs, d)
		}
		var err error
		w.DNS, err = dns.Launch(ctx, dir, dns.Options{Service: "apus", DCs: dcs, EtcdURL: w.Etcd.ClientURL,
			HTTPClient: w.Etcd.HTTPClient(), MinTTL: 1})
		return err
	})
	if err != nil {
		return w, err
	}

	addrs, err := hostAddrs(o.Hosts)
	if err != nil {
		return w, err
	}
	if w.Port, w.DebugPort, err = commonFreePorts(addrs); err != nil {
		return w, err
	}
	rec := w.DNS.Recursor(o.DC)
	if rec == nil {
		return w, fmt.Errorf("no recursor for %s", o.DC)
	}
	err = timed(fmt.Sprintf("%d registry hosts on S3 (%s)", o.Hosts, o.DC), func() error {
		var mu sync.Mutex
		g, gctx := errgroup.WithContext(ctx)
		w.Hosts = make([]*Host, o.Hosts)
		for i, addr := range addrs {
			name := fmt.Sprintf("registry%d%03d.%s.wmnet", dcDigit(o.DC), 4+i, o.DC)
			g.Go(func() error {
				ns, err := hostns.Launch(gctx, name, rec.ResolvConf)
				if err != nil {
					return err
				}
				h := &Host{Name: name, Addr: addr, NS: ns}
				mu.Lock()
				w.Hosts[i] = h
				mu.Unlock()
				h.Reg, err = registry.Launch(gctx, registry.Options{Binary: regBin, Dir: filepath.Join(dir, "registry-"+name),
					Host: addr, Port: w.Port, DebugPort: w.DebugPort, S3: w.Apus.RegistryS3(), Wrapper: ns.Prefix()})
				return err
			})
		}
		return g.Wait()
	})
	if err != nil {
		return w, err
	}
	regs := map[string]*registry.Instance{}
	for _, h := range w.Hosts {
		regs[h.Addr] = h.Reg
	}
	if w.Systemctl, err = site.NewSystemctl(regs); err != nil {
		return w, err
	}
	for _, h := range w.Hosts {
		// `getent` through the executor (the DNS step's host check)
		// answers as the host's resolver does.
		w.Systemctl.SetNamespace(h.Addr, h.NS.Prefix())
	}

	err = timed("HAProxy and pybal", func() error {
		var servers []haproxy.Server
		for _, h := range w.Hosts {
			servers = append(servers, haproxy.Server{Name: h.Name, Addr: h.Reg.Addr})
			if _, err := w.Etcd.PutValue(ctx, w.nodeKey(h), `{"pooled": "yes", "weight": 10}`); err != nil {
				return err
			}
		}
		lbDir := filepath.Join(dir, "haproxy")
		if err := os.MkdirAll(lbDir, 0o755); err != nil {
			return err
		}
		var err error
		if w.LB, err = haproxy.Launch(ctx, haproxy.Options{Servers: servers, Dir: lbDir}); err != nil {
			return err
		}
		w.Pybal = &haproxy.Pybal{EtcdURL: w.Etcd.ClientURL, HTTP: w.Etcd.HTTPClient(), DC: o.DC, Cluster: Cluster, Service: Service, Balancer: w.LB}
		rctx, cancel := context.WithCancel(context.Background())
		w.cancel, w.pybalD = cancel, make(chan struct{})
		go func() { defer close(w.pybalD); _ = w.Pybal.Run(rctx) }()
		idx, err := w.Etcd.PutValue(ctx, w.nodeKey(w.Hosts[0]), `{"pooled": "yes", "weight": 10}`)
		if err != nil {
			return err
		}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		return w.Pybal.WaitApplied(wctx, idx)
	})
	return w, err
}

func (w *World) nodeKey(h *Host) string {
	return etcd.DefaultPrefix + "/pools/" + w.DC + "/" + Cluster + "/" + Service + "/" + h.Name
}

// Close stops everything.
func (w *World) Close() {
	if w.cancel != nil {
		w.cancel()
		<-w.pybalD
	}
	if w.LB != nil {
		w.LB.Close()
	}
	if w.Systemctl != nil {
		_ = w.Systemctl.Close()
	}
	for _, h := range w.Hosts {
		if h == nil {
			continue
		}
		if h.Reg != nil {
			_ = h.Reg.Close()
		}
		if h.NS != nil {
			h.NS.Close()
		}
	}
	if w.DNS != nil {
		w.DNS.Stop()
	}
	if w.Apus != nil {
		w.Apus.Close()
	}
	if w.Etcd != nil {
		w.Etcd.Stop()
	}
}

// PIDs are the world's server processes, for testenv.RSS.
func (w *World) PIDs() []int {
	var pids []int
	for _, s := range w.Apus.Sites {
		pids = append(pids, s.PIDs()...)
	}
	for _, h := range w.Hosts {
		pids = append(pids, h.Reg.PID())
	}
	pids = append(pids, w.LB.PID(), w.Etcd.PID())
	return append(pids, w.DNS.PIDs()...)
}

// SetDiscovery writes apus' discovery object of dc as confctl stores it,
// the way an operator changes it by hand (confctl --object-type discovery
// select 'dnsdisc=apus,name=<dc>' set/pooled=...).
func (w *World) SetDiscovery(ctx context.Context, dc string, pooled bool, ttl int) error {
	_, err := w.Etcd.PutValue(ctx, etcd.DiscoveryKey("apus", dc), fmt.Sprintf(`{"pooled": %t, "references": [], "ttl": %d}`, pooled, ttl))
	return err
}

// Resolves says which apus site host h's resolver answers now (getent
// ahosts inside the host, as a restarted registry would resolve).
func (w *World) Resolves(ctx context.Context, h *Host) (string, error) {
	out, err := h.NS.Run(ctx, h.Name, []string{"getent", "ahosts", apus.Name})
	if err != nil {
		return "", fmt.Errorf("getent ahosts %s on %s: %w", apus.Name, h.Name, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return "", fmt.Errorf("getent ahosts %s on %s: no answer", apus.Name, h.Name)
	}
	dc := w.Apus.SiteOf(fields[0])
	if dc == "" {
		return "", fmt.Errorf("%s resolves %s to %s, no apus site", h.Name, apus.Name, fields[0])
	}
	return dc, nil
}

// WaitResolves waits until every host resolves apus to dc's site.
func (w *World) WaitResolves(ctx context.Context, dc string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var last error
		all := true
		for _, h := range w.Hosts {
			got, err := w.Resolves(ctx, h)
			if err != nil || got != dc {
				all, last = false, err
				if err == nil {
					last = fmt.Errorf("%s resolves apus to %s", h.Name, got)
				}
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hosts do not resolve apus to %s: %w (last: %v)", dc, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WritesTo says which site the registry on h writes to now: it pushes a
// random blob to that registry alone and looks for it in both buckets.
//
// A registry whose S3 connections lead to both sites (it dialled again
// after DNS moved, without a restart) fails such a push when an upload
// starts in one site and goes on in the other: RGW 16 answers an
// UploadPart for an upload it does not know 404 NoSuchUpload (which
// distribution swallows after a PATCH: it answers 202 with the bytes
// actually stored), and a CompleteMultipartUpload 500 "This multipart
// completion is already in progress" (it cannot lock the upload's meta
// object; aws-sdk-go retries it three times). That is not retried: it is
// the split the stories are about, not noise.
func (w *World) WritesTo(ctx context.Context, h *Host) (string, error) {
	blob := make([]byte, 1024)
	if _, err := rand.Read(blob); err != nil {
		return "", err
	}
	var p registry.Pusher
	if err := p.PushBlob(ctx, h.Reg.URL(), "lab/where", blob); err != nil {
		return "", fmt.Errorf("push to %s: %w", h.Name, err)
	}
	hex := strings.TrimPrefix(registry.Digest(blob), "sha256:")
	key := "docker/registry/v2/blobs/sha256/" + hex[:2] + "/" + hex + "/data"
	var in []string
	for _, dc := range apus.DCs {
		// The one key, not a listing: the buckets grow with every push.
		_, found, err := w.Apus.Sites[dc].GetObject(ctx, apus.Bucket, key)
		if err != nil {
			return "", err
		}
		if found {
			in = append(in, dc)
		}
	}
	if len(in) != 1 {
		return "", fmt.Errorf("blob pushed through %s is in %v", h.Name, in)
	}
	return in[0], nil
}

// ConnectedSites lists the apus sites the registry on h holds connections
// to now (its S3 connection pool, from /proc): one site for a host that
// has dialled only since DNS last moved, both for a split host, whose
// uploads can start in one site and go on in the other.
func (w *World) ConnectedSites(h *Host) ([]string, error) {
	peers, err := testenv.TCPPeers(h.Reg.PID())
	if err != nil {
		return nil, fmt.Errorf("connections of %s's registry: %w", h.Name, err)
	}
	var sites []string
	for _, p := range peers {
		if int(p.Port()) != w.Apus.Port {
			continue
		}
		if dc := w.Apus.SiteOf(p.Addr().String()); dc != "" && !slices.Contains(sites, dc) {
			sites = append(sites, dc)
		}
	}
	slices.Sort(sites)
	return sites, nil
}

// PushConcurrency is how many blobs Push uploads at once: docker push's
// max-concurrent-uploads default (5).
const PushConcurrency = 5

// Push pushes a new image through the load balancer as docker push does:
// layers (random, 64 KiB each) and the config blob uploaded
// PushConcurrency at a time (each POST, PATCH, PUT), then the manifest.
// Each request is balanced on its own, so one upload's requests reach
// different hosts, and several run on a host at once, so its registry
// needs more S3 connections than it keeps idle (see S3Storage).
func (w *World) Push(ctx context.Context, repo, tag string, layers int) error {
	blobs := make([][]byte, layers)
	for i := range blobs {
		blobs[i] = make([]byte, 64<<10)
		if _, err := rand.Read(blobs[i]); err != nil {
			return err
		}
	}
	var p registry.Pusher
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(PushConcurrency)
	for _, b := range blobs[1:] {
		g.Go(func() error { return p.PushBlob(gctx, w.LB.URL(), repo, b) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// The image's own layer and config go last, with the manifest.
	_, err := p.PushImage(ctx, w.LB.URL(), repo, tag, blobs[0])
	return err
}

func cephBinaries() []string { return ceph.Binaries }

func dcDigit(dc string) int {
	if dc == "eqiad" {
		return 1
	}
	return 2
}

// hostAddrs picks n random loopback addresses 127.A.B.11.. (not
// 127.0.x.x, where other worlds and system services live).
func hostAddrs(n int) ([]string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	if b[0] == 0 {
		b[0] = 1
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.%d.%d.%d", b[0], b[1], 11+i)
	}
	return out, nil
}

// commonFreePorts finds two ports free on every address.
func commonFreePorts(addrs []string) (int, int, error) {
	var ports []int
	for try := 0; try < 50 && len(ports) < 2; try++ {
		l, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			return 0, 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, a := range addrs[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		l.Close()
		if ok && (len(ports) == 0 || ports[0] != port) {
			ports = append(ports, port)
		}
	}
	if len(ports) < 2 {
		return 0, 0, errors.New("no two ports free on every host address")
	}
	return ports[0], ports[1], nil
}
