package dns

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// Ask asks server (host:port: an authoritative server of Servers, or a
// recursor's Addr on port 53) for the service record's A and returns the
// address and the TTL of the answer: from a recursor, what is left of the
// TTL it cached the answer with. A client datacenter (dc not "") sends
// its ClientNet as EDNS client subnet, so that gdnsd answers as it does
// that datacenter's recursor.
func (w *World) Ask(ctx context.Context, server, dc string) (netip.Addr, time.Duration, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(w.Record), mdns.TypeA)
	if dc != "" {
		var subnet netip.Prefix
		for _, d := range w.DCs {
			if d.Name == dc {
				subnet = d.ClientNet
			}
		}
		if !subnet.IsValid() {
			return netip.Addr{}, 0, fmt.Errorf("ask %s: no client network for datacenter %q", server, dc)
		}
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &mdns.EDNS0_SUBNET{Code: mdns.EDNS0SUBNET, Family: 1,
			SourceNetmask: uint8(subnet.Bits()), Address: subnet.Addr().AsSlice()})
	}
	c := &mdns.Client{Timeout: time.Second}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("ask %s for %s: %w", server, w.Record, err)
	}
	if resp.Rcode != mdns.RcodeSuccess {
		return netip.Addr{}, 0, fmt.Errorf("ask %s for %s: %s", server, w.Record, mdns.RcodeToString[resp.Rcode])
	}
	for _, rr := range resp.Answer {
		if a, ok := rr.(*mdns.A); ok {
			addr, _ := netip.AddrFromSlice(a.A.To4())
			return addr, time.Duration(a.Hdr.Ttl) * time.Second, nil
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("ask %s for %s: no A record in the answer", server, w.Record)
}
