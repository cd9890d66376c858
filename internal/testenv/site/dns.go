package site

import (
	"context"
	"fmt"
	"testing"
	"time"

	dnsworld "poolbot/internal/testenv/dns"
	etcdenv "poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/hostns"
)

// DNS is the DNS side of a Site: real gdnsd servers whose state is
// rendered from the Site's etcd, one pdns_recursor per datacenter, and one
// resolver namespace per datacenter in which `getent` on that
// datacenter's hosts runs (Systemctl.SetNamespace).
type DNS struct {
	World *dnsworld.World
	// HostDC is each registry host's datacenter (alternating eqiad,
	// codfw), NS each datacenter's namespace.
	HostDC map[string]string
	NS     map[string]*hostns.Host
}

// StartDNS starts the DNS side for w with the discovery record's TTL set
// to ttl seconds in etcd (short in tests, so real caches expire quickly).
// It skips (fails under CI) where gdnsd, pdns_recursor or root is missing.
func (w *Site) StartDNS(t testing.TB, ttl int) *DNS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, dc := range []string{"eqiad", "codfw"} {
		if _, err := w.Etcd.PutValue(ctx, etcdenv.DiscoveryKey("apus", dc),
			fmt.Sprintf(`{"pooled": true, "references": [], "ttl": %d}`, ttl)); err != nil {
			t.Fatal(err)
		}
	}
	d := &DNS{HostDC: map[string]string{}, NS: map[string]*hostns.Host{}}
	d.World = dnsworld.Start(t, dnsworld.Options{EtcdURL: w.Etcd.ClientURL, HTTPClient: w.Etcd.HTTPClient()})
	for _, r := range d.World.Recursors {
		d.NS[r.DC] = hostns.Start(t, "resolver-"+r.DC, r.ResolvConf)
	}
	for i, h := range w.Hosts {
		dc := []string{"eqiad", "codfw"}[i%2]
		d.HostDC[h] = dc
		w.Systemctl.SetNamespace(h, d.NS[dc].Prefix())
	}
	return d
}

// ServiceYAML is the service's dns section for Site.Config's
// ServiceExtra (indented four spaces): the world's servers, spicerack's
// client subnets, the hosts' datacenters, and short timeouts.
func (d *DNS) ServiceYAML() string {
	return d.World.ServiceYAML(d.HostDC, 100*time.Millisecond, 20*time.Second, true)
}
