package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// Expectation is what each datacenter's clients must be answered for one
// pooled state.
type Expectation struct {
	// Addresses maps each datacenter to its service address.
	Addresses map[string]netip.Addr
	// Serving maps each client datacenter to the datacenter whose address
	// it must get.
	Serving map[string]string
}

// Want is the address clients of dc must get.
func (e Expectation) Want(dc string) netip.Addr { return e.Addresses[e.Serving[dc]] }

// DCOf names the datacenter whose service address a is, "" for none.
func (e Expectation) DCOf(a netip.Addr) string {
	for dc, x := range e.Addresses {
		if x == a {
			return dc
		}
	}
	return ""
}

// Expect computes the answers for a pooled state (datacenter → pooled;
// a datacenter missing from the map counts as depooled). A depooled
// datacenter's clients are served by the first pooled datacenter in
// config order, the order of gdnsd's discovery map. addresses are the
// service addresses (from Addresses).
func (c *Checker) Expect(addresses map[string]netip.Addr, pooled map[string]bool) (Expectation, error) {
	e := Expectation{Addresses: map[string]netip.Addr{}, Serving: map[string]string{}}
	var first string
	for _, dc := range c.cfg.Datacenters {
		a, ok := addresses[dc.Name]
		if !ok {
			return Expectation{}, fmt.Errorf("DNS: no service address for datacenter %s", dc.Name)
		}
		e.Addresses[dc.Name] = a
		if pooled[dc.Name] && first == "" {
			first = dc.Name
		}
	}
	if first == "" {
		// gdnsd would then answer as if all were up; poolbot never asks
		// for that state.
		return Expectation{}, fmt.Errorf("DNS: no datacenter of %s is pooled", c.cfg.Record)
	}
	for _, dc := range c.cfg.Datacenters {
		if pooled[dc.Name] {
			e.Serving[dc.Name] = dc.Name
		} else {
			e.Serving[dc.Name] = first
		}
	}
	return e, nil
}

// Addresses returns each datacenter's service address: the configured one,
// or else the A (or AAAA) record of AddressRecord (spicerack's
// `<svc>.svc.<dc>.wmnet`), asked of the authoritative servers in order
// until one answers exactly one address. spicerack's
// Discovery.resolve_address likewise asks its first authoritative server
// (port 5353), not the host's resolver.
func (c *Checker) Addresses(ctx context.Context) (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	for _, dc := range c.cfg.Datacenters {
		if dc.Address != "" {
			a, err := netip.ParseAddr(dc.Address)
			if err != nil {
				return nil, fmt.Errorf("DNS: datacenter %s: address %q: %w", dc.Name, dc.Address, err)
			}
			out[dc.Name] = a
			continue
		}
		name := strings.NewReplacer("{service}", c.cfg.Service(), "{dc}", dc.Name).Replace(c.cfg.AddressRecord)
		a, err := c.resolveAddress(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("DNS: service address of %s: %w", dc.Name, err)
		}
		out[dc.Name] = a
	}
	return out, nil
}

func (c *Checker) resolveAddress(ctx context.Context, name string) (netip.Addr, error) {
	var problems []string
	for _, server := range c.servers {
		ans := c.query(ctx, server, name, typeA, netip.Prefix{}, false)
		if ans.Err == nil && ans.Rcode == rcodeSuccess && len(ans.Addrs) == 0 {
			// No A record: try AAAA for an IPv6-only service.
			if v6 := c.query(ctx, server, name, typeAAAA, netip.Prefix{}, false); v6.Err == nil && len(v6.Addrs) > 0 {
				ans = v6
			}
		}
		if p := ans.problem(); p != "" {
			problems = append(problems, p)
			continue
		}
		if len(ans.Addrs) != 1 {
			problems = append(problems, fmt.Sprintf("authoritative server %s answered %s for %s, want exactly one address", server, joinAddrs(ans.Addrs), name))
			continue
		}
		return ans.Addrs[0], nil
	}
	return netip.Addr{}, fmt.Errorf("%s", strings.Join(problems, "; "))
}
