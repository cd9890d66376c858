package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	mdns "github.com/miekg/dns"

	"poolbot"
)

const (
	typeA        = mdns.TypeA
	typeAAAA     = mdns.TypeAAAA
	rcodeSuccess = mdns.RcodeSuccess
)

// Checker asks the authoritative servers and the hosts what they answer
// for the discovery record.
type Checker struct {
	cfg     Config
	servers []string // host:port
	subnets map[string]netip.Prefix
	clock   clockwork.Clock
}

// New validates cfg and returns a Checker; clock may be nil for the real
// clock.
func New(cfg Config, clock clockwork.Clock) (*Checker, error) {
	if err := cfg.Validate("dns."); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	c := &Checker{cfg: cfg, clock: clock, subnets: map[string]netip.Prefix{}}
	for _, s := range cfg.Authoritative {
		addr, _ := serverAddr(s, DefaultPort) // validated
		c.servers = append(c.servers, addr)
	}
	for _, dc := range cfg.Datacenters {
		c.subnets[dc.Name], _ = ParseClientSubnet(dc.ClientSubnet)
	}
	return c, nil
}

// Config returns the configuration with defaults applied.
func (c *Checker) Config() Config { return c.cfg }

// Servers returns the authoritative servers as host:port.
func (c *Checker) Servers() []string { return slices.Clone(c.servers) }

// Answer is what one authoritative server answered for one datacenter's
// clients.
type Answer struct {
	// Server is the server asked, host:port; Role says what it is
	// ("authoritative server" or "recursor").
	Server string
	Role   string
	// DC is the client datacenter whose subnet was sent.
	DC string
	// Record is the name asked.
	Record string
	// Err is set when no answer arrived (timeout, refused, malformed).
	Err error
	// Rcode is the response code (mdns.RcodeSuccess, RcodeServerFailure,
	// RcodeNameError...) when Err is nil.
	Rcode int
	// Addrs are the addresses answered, in answer order.
	Addrs []netip.Addr
	// TTL is the lowest TTL of those records.
	TTL time.Duration
	// Want is the address expected for DC's clients and WantDC the
	// datacenter it belongs to; Got is the datacenter of the answer, ""
	// when it is no datacenter's address.
	Want   netip.Addr
	WantDC string
	GotDC  string
	// Matched is true when the answer is exactly Want.
	Matched bool
}

// problem describes a failed query, "" when the server answered records.
func (a Answer) problem() string {
	who := a.Role + " " + a.Server
	clients := ""
	if a.DC != "" {
		clients = " for " + a.DC + " clients"
	}
	var nerr net.Error
	switch {
	case a.Err != nil && (errors.As(a.Err, &nerr) && nerr.Timeout() || errors.Is(a.Err, os.ErrDeadlineExceeded) || errors.Is(a.Err, context.DeadlineExceeded)):
		return fmt.Sprintf("%s did not answer %s%s: timed out", who, a.Record, clients)
	case a.Err != nil:
		return fmt.Sprintf("%s did not answer %s%s: %v", who, a.Record, clients, a.Err)
	case a.Rcode == mdns.RcodeNameError:
		return fmt.Sprintf("%s answered NXDOMAIN%s: %s does not resolve", who, clients, a.Record)
	case a.Rcode != mdns.RcodeSuccess:
		return fmt.Sprintf("%s answered %s for %s%s", who, rcodeName(a.Rcode), a.Record, clients)
	case len(a.Addrs) == 0:
		return fmt.Sprintf("%s answered no address for %s%s: the record does not resolve", who, a.Record, clients)
	}
	return ""
}

// Problem says what is wrong with the answer, "" when it matched.
func (a Answer) Problem() string {
	if p := a.problem(); p != "" || a.Matched {
		return p
	}
	got := joinAddrs(a.Addrs)
	if a.GotDC != "" {
		got += " (" + a.GotDC + ")"
	} else {
		got += " (the address of no datacenter)"
	}
	return fmt.Sprintf("%s %s answered %s for %s clients, want %s (%s)", a.Role, a.Server, got, a.DC, a.Want, a.WantDC)
}

// unexpected reports an answer with an address that belongs to no
// datacenter: a configuration error that waiting will not fix.
func (a Answer) unexpected() bool {
	return a.problem() == "" && !a.Matched && a.GotDC == ""
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}

func joinAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "no address"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Report is one round of queries: every authoritative server, once per
// datacenter.
type Report struct {
	Record string
	// Answers are ordered by server, then datacenter in config order.
	Answers []Answer
	// Expect is the state the answers were compared with.
	Expect Expectation
	// At is when the round ended (by the Checker's clock). For the round
	// that converged, the caches' wait counts from here.
	At time.Time
}

// Converged reports whether every answer matched.
func (r Report) Converged() bool {
	if len(r.Answers) == 0 {
		return false
	}
	for _, a := range r.Answers {
		if !a.Matched {
			return false
		}
	}
	return true
}

// MaxTTL is the highest TTL answered.
func (r Report) MaxTTL() time.Duration {
	var m time.Duration
	for _, a := range r.Answers {
		m = max(m, a.TTL)
	}
	return m
}

// Problems lists what is wrong, one line per answer that did not match.
func (r Report) Problems() []string {
	var out []string
	for _, a := range r.Answers {
		if p := a.Problem(); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Line says what dc's clients get, e.g. "apus.discovery.wmnet answers
// eqiad for codfw clients on 3/3 authoritative servers".
func (r Report) Line(dc string) string {
	matched, total := 0, 0
	for _, a := range r.Answers {
		if a.DC == dc {
			total++
			if a.Matched {
				matched++
			}
		}
	}
	return fmt.Sprintf("%s answers %s for %s clients on %d/%d authoritative servers", r.Record, r.Expect.Serving[dc], dc, matched, total)
}

// Check asks every authoritative server once per datacenter, with that
// datacenter's client subnet, and compares with e.
func (c *Checker) Check(ctx context.Context, e Expectation) Report {
	r := Report{Record: c.cfg.Record}
	r.Answers = make([]Answer, len(c.servers)*len(c.cfg.Datacenters))
	var wg sync.WaitGroup
	for i, server := range c.servers {
		for j, dc := range c.cfg.Datacenters {
			wg.Add(1)
			go func(slot int, server, dc string) {
				defer wg.Done()
				want := e.Want(dc)
				qtype := typeA
				if want.Is6() {
					qtype = typeAAAA
				}
				a := c.query(ctx, server, c.cfg.Record, qtype, c.subnets[dc], false)
				r.Answers[slot] = compare(a, e, dc)
			}(i*len(c.cfg.Datacenters)+j, server, dc.Name)
		}
	}
	wg.Wait()
	r.Expect = e
	r.At = c.clock.Now()
	return r
}

// compare fills in what dc's clients should have got.
func compare(a Answer, e Expectation, dc string) Answer {
	want := e.Want(dc)
	a.DC, a.Want, a.WantDC = dc, want, e.Serving[dc]
	if len(a.Addrs) > 0 {
		a.GotDC = e.DCOf(a.Addrs[0])
	}
	a.Matched = a.problem() == "" && len(a.Addrs) == 1 && a.Addrs[0] == want
	return a
}

// query asks server for name's records of qtype, sending subnet as the
// EDNS client subnet when it is valid, with recursion desired when
// recurse (a recursor) and not (an authoritative server). Truncated UDP
// answers are asked again over TCP.
func (c *Checker) query(ctx context.Context, server, name string, qtype uint16, subnet netip.Prefix, recurse bool) Answer {
	a := Answer{Server: server, Role: "authoritative server", Record: strings.TrimSuffix(name, ".")}
	if recurse {
		a.Role = "recursor"
	}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.RecursionDesired = recurse
	opt := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
	opt.SetUDPSize(1232)
	if subnet.IsValid() {
		family := uint16(1)
		if subnet.Addr().Is6() {
			family = 2
		}
		opt.Option = append(opt.Option, &mdns.EDNS0_SUBNET{
			Code:          mdns.EDNS0SUBNET,
			Family:        family,
			SourceNetmask: uint8(subnet.Bits()),
			Address:       subnet.Addr().AsSlice(),
		})
	}
	m.Extra = append(m.Extra, opt)

	qctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	client := &mdns.Client{Net: "udp", Timeout: c.cfg.QueryTimeout}
	resp, _, err := client.ExchangeContext(qctx, m, server)
	if err == nil && resp.Truncated {
		client.Net = "tcp"
		resp, _, err = client.ExchangeContext(qctx, m, server)
	}
	if err != nil {
		a.Err = err
		return a
	}
	a.Rcode = resp.Rcode
	first := true
	for _, rr := range resp.Answer {
		var ip net.IP
		switch v := rr.(type) {
		case *mdns.A:
			ip = v.A
		case *mdns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if rr.Header().Rrtype != qtype {
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a.Addrs = append(a.Addrs, addr.Unmap())
		ttl := time.Duration(rr.Header().Ttl) * time.Second
		if first || ttl < a.TTL {
			a.TTL = ttl
		}
		first = false
	}
	return a
}

// NotConvergedError says the authoritative servers did not all answer the
// expected state within the timeout (or answered an address of no
// datacenter, which waiting does not fix).
type NotConvergedError struct {
	Report  Report
	Elapsed time.Duration
	// Unexpected is set when an answer was the address of no datacenter.
	Unexpected bool
}

func (e *NotConvergedError) Error() string {
	probs := e.Report.Problems()
	first := "no answer"
	if len(probs) > 0 {
		first = probs[0]
	}
	more := ""
	if len(probs) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(probs)-1)
	}
	if e.Unexpected {
		return fmt.Sprintf("DNS: %s%s", first, more)
	}
	return fmt.Sprintf("DNS did not follow within %s: %s%s", poolbot.FormatDuration(e.Elapsed), first, more)
}

// WaitConverged repeats Check every PollInterval until every answer
// matches e, and returns that round's Report (its At is the moment of
// convergence). It returns a *NotConvergedError when ConvergeTimeout
// passes first, or at once when a server answers an address of no
// datacenter; ctx's error when ctx ends. The last Report comes with
// every error.
func (c *Checker) WaitConverged(ctx context.Context, e Expectation) (Report, error) {
	start := c.clock.Now()
	deadline := start.Add(c.cfg.ConvergeTimeout)
	for {
		r := c.Check(ctx, e)
		if r.Converged() {
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return r, fmt.Errorf("DNS: waiting for %s: %w", c.cfg.Record, err)
		}
		for _, a := range r.Answers {
			if a.unexpected() {
				return r, &NotConvergedError{Report: r, Elapsed: c.clock.Since(start), Unexpected: true}
			}
		}
		now := c.clock.Now()
		if !now.Before(deadline) {
			return r, &NotConvergedError{Report: r, Elapsed: now.Sub(start)}
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("DNS: waiting for %s: %w", c.cfg.Record, ctx.Err())
		case <-c.clock.After(min(c.cfg.PollInterval, deadline.Sub(now))):
		}
	}
}
