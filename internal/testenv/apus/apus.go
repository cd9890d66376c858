// Package apus runs the lab's apus: one real Ceph RGW cluster per
// datacenter (eqiad, codfw; see testenv/ceph), each with data of its own and
// no replication, on two loopback addresses and one shared S3 port, so that
// the discovery name apus.discovery.wmnet pointing at one address or the
// other is the whole difference between the sites, as in production.
//
// Registries reach it through distribution's s3 driver with regionendpoint
// http://apus.discovery.wmnet:<Port> (RegistryS3), and resolve that name
// themselves. Who answers the name for a registry host is the caller's
// choice, injected as a wrapper command line around the registry process
// (registry.Options.Wrapper): the lab DNS (gdnsd + pdns-recursor with
// per-host resolver configs), or, in this package's tests, HostsFile.
package apus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ceph"
	"poolbot/internal/testenv/registry"
)

const (
	// Name is the discovery name registries use for S3.
	Name = "apus.discovery.wmnet"
	// Bucket is the registries' bucket, created on every site (WMF's
	// restricted instance uses registry-restricted).
	Bucket = "registry-restricted"
)

// DCs are apus' datacenters (conftool-data discovery/services.yaml).
var DCs = []string{"eqiad", "codfw"}

// Apus is the set of running sites.
type Apus struct {
	// Port is the S3 port every site's gateway listens on.
	Port int
	// Sites by datacenter.
	Sites map[string]*ceph.Site
}

// Start launches one site per datacenter (default DCs) in parallel, each on
// its own random loopback address, stopped when the test ends.
func Start(t testing.TB, dcs ...string) *Apus {
	t.Helper()
	for _, b := range ceph.Binaries {
		testenv.Need(t, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	a, err := Launch(ctx, t.TempDir(), dcs...)
	if err != nil {
		t.Fatalf("start apus: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for dc, s := range a.Sites {
				t.Logf("apus %s gateway log tail:\n%s", dc, s.GatewayLog())
			}
		}
		a.Close()
	})
	return a
}

// Launch is Start for programs that are not tests (the lab); dir must
// exist. The caller must Close.
func Launch(ctx context.Context, dir string, dcs ...string) (*Apus, error) {
	if len(dcs) == 0 {
		dcs = DCs
	}
	hosts, err := loopbackAddrs(len(dcs))
	if err != nil {
		return nil, err
	}
	a := &Apus{Sites: map[string]*ceph.Site{}}
	// One port free on every address; a clash later fails that site's
	// start, and the whole start is retried (twice) with new ones.
	for attempt := 0; ; attempt++ {
		if a.Port, err = commonFreePort(hosts); err != nil {
			return nil, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var errs []error
		for i, dc := range dcs {
			wg.Go(func() {
				s, err := ceph.Launch(ctx, ceph.Options{
					Name: dc, Host: hosts[i], Port: a.Port, Buckets: []string{Bucket},
					Dir: fmt.Sprintf("%s/apus-%s", dir, dc),
				})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				a.Sites[dc] = s
			})
		}
		wg.Wait()
		if len(errs) == 0 {
			return a, nil
		}
		a.Close()
		if attempt == 2 {
			return nil, errors.Join(errs...)
		}
		a.Sites = map[string]*ceph.Site{}
	}
}

// Close stops every site.
func (a *Apus) Close() {
	var wg sync.WaitGroup
	for _, s := range a.Sites {
		wg.Go(s.Close)
	}
	wg.Wait()
}

// Endpoint is the URL registries are configured with:
// http://apus.discovery.wmnet:<Port>.
func (a *Apus) Endpoint() string { return "http://" + net.JoinHostPort(Name, strconv.Itoa(a.Port)) }

// RegistryS3 is the registry storage configuration for apus: the discovery
// name as endpoint, Bucket, and the sites' shared credentials.
func (a *Apus) RegistryS3() *registry.S3Storage {
	return &registry.S3Storage{
		RegionEndpoint: a.Endpoint(),
		Bucket:         Bucket,
		AccessKey:      ceph.DefaultAccessKey,
		SecretKey:      ceph.DefaultSecretKey,
	}
}

// Address is the loopback address of dc's gateway (what the discovery name
// resolves to when dc serves a client).
func (a *Apus) Address(dc string) string {
	if s, ok := a.Sites[dc]; ok {
		return s.Host
	}
	return ""
}

// SiteOf is the datacenter whose gateway listens on addr, "" if none.
func (a *Apus) SiteOf(addr string) string {
	for dc, s := range a.Sites {
		if s.Host == addr {
			return dc
		}
	}
	return ""
}

// Blobs lists the registry's blob data keys in dc's bucket (under
// docker/registry/v2/blobs/), e.g. to see which site a push landed in.
func (a *Apus) Blobs(ctx context.Context, dc string) ([]string, error) {
	s, ok := a.Sites[dc]
	if !ok {
		return nil, fmt.Errorf("apus: no site %q", dc)
	}
	return s.ListObjects(ctx, Bucket, "docker/registry/v2/blobs/")
}

// loopbackAddrs picks n random addresses 127.R.R.1..n, so that parallel
// test worlds do not share an address.
func loopbackAddrs(n int) ([]string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("apus: random loopback: %w", err)
	}
	// Avoid 127.0.0.x, where fixed-port system services live.
	if b[0] == 0 {
		b[0] = 1
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.%d.%d.%d", b[0], b[1], i+1)
	}
	return addrs, nil
}

// commonFreePort finds a port that is free on every host.
func commonFreePort(hosts []string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
		if err != nil {
			return 0, fmt.Errorf("apus: free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, h := range hosts[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		l.Close()
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("apus: no port free on every site address")
}

// startTimeout bounds Start (a site takes 5-20 s; a retry doubles it).
const startTimeout = 3 * time.Minute
