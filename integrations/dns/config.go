package dns

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Config.WithDefaults when a field is zero.
const (
	// DefaultPort is where Wikimedia's authoritative servers answer checks
	// (spicerack's dnsdisc queries them on 5353).
	DefaultPort = 5353
	// DefaultQueryTimeout bounds one query to one server.
	DefaultQueryTimeout = 2 * time.Second
	// DefaultConvergeTimeout bounds the wait for every authoritative
	// server to answer the new pooled state.
	DefaultConvergeTimeout = 60 * time.Second
	// DefaultPollInterval is the pause between two rounds of queries.
	DefaultPollInterval = time.Second
	// DefaultHostTimeout bounds the wait for one host to resolve the
	// expected address.
	DefaultHostTimeout = 60 * time.Second
	// DefaultAddressRecord is spicerack's `<svc>.svc.<dc>.wmnet`.
	DefaultAddressRecord = "{service}.svc.{dc}.wmnet"
)

// Config is a service's `dns` section: how poolbot sees that the
// discovery record has followed a conftool change.
//
//	dns:
//	  record: apus.discovery.wmnet
//	  authoritative: [ns0.wikimedia.org, "208.80.153.231:5353"]
//	  datacenters:                      # in failover order
//	    - {name: eqiad, client_subnet: 10.64.0.1}
//	    - {name: codfw, client_subnet: 10.192.0.1, address: 10.2.1.10,
//	       recursors: [10.192.0.53]}
//	  address_record: "{service}.svc.{dc}.wmnet"
//	  converge_timeout: 60s
//	  flush_commands: [[sudo, -n, cumin, --force, --no-progress, A:dns-rec, "rec_control wipe-cache {record}"]]
type Config struct {
	// Record is the discovery name, e.g. apus.discovery.wmnet (required).
	Record string `yaml:"record"`
	// Authoritative are the servers asked, host or host:port (port 5353
	// when omitted). Every one must answer the new state.
	Authoritative []string `yaml:"authoritative"`
	// Datacenters are the service's datacenters in the order gdnsd's
	// discovery map fails over: a depooled datacenter's clients get the
	// first pooled datacenter in [itself, the others in this order].
	Datacenters []Datacenter `yaml:"datacenters"`
	// AddressRecord is the name whose A record is a datacenter's service
	// address when Datacenter.Address is empty; {service} is the first
	// label of Record and {dc} the datacenter. Default
	// "{service}.svc.{dc}.wmnet", resolved on the authoritative servers.
	AddressRecord string `yaml:"address_record"`
	// QueryTimeout bounds one query to one server; default 2s.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// ConvergeTimeout bounds the wait for all authoritative servers;
	// default 60s. On timeout the request fails before any restart.
	ConvergeTimeout time.Duration `yaml:"converge_timeout"`
	// PollInterval is the pause between rounds of queries; default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// FlushCommands, when set, are run (exec argv, no shell; {record} is
	// replaced by Record) instead of waiting out the old TTL, e.g. cumin on
	// the recursors running rec_control wipe-cache. Empty: wait the TTL.
	// cumin needs --force here: without a terminal it refuses to run a
	// command otherwise ("Not in a TTY but neither DRY-RUN nor FORCE mode
	// were specified.", exit 99).
	FlushCommands [][]string `yaml:"flush_commands"`
	// HostCheck asks each host what it resolves (getent ahosts) before its
	// restart; default true.
	HostCheck *bool `yaml:"host_check"`
	// HostTimeout bounds the wait for one host; default 60s.
	HostTimeout time.Duration `yaml:"host_timeout"`
	// HostDatacenters names the datacenter of hosts whose name does not
	// say it (a host's datacenter is otherwise the label of its name that
	// is a datacenter: registry2004.codfw.wmnet is in codfw). The host
	// check wants that datacenter's answer.
	HostDatacenters map[string]string `yaml:"host_datacenters"`
}

// HostDatacenter is the datacenter of host: HostDatacenters[host], or the
// label of host's name that is a configured datacenter; ok is false when
// neither says.
func (c Config) HostDatacenter(host string) (dc string, ok bool) {
	if dc, ok := c.HostDatacenters[host]; ok {
		return dc, true
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		for _, d := range c.Datacenters {
			if d.Name == label {
				return label, true
			}
		}
	}
	return "", false
}

// Datacenter is one datacenter of the service.
type Datacenter struct {
	// Name is the conftool name, e.g. codfw.
	Name string `yaml:"name"`
	// ClientSubnet is an address or prefix of the datacenter's clients,
	// sent as the EDNS client subnet (e.g. 10.192.0.1, spicerack's codfw
	// client). A bare address is sent as /24 (IPv4) or /56 (IPv6), like
	// spicerack's dnspython ECSOption.
	ClientSubnet string `yaml:"client_subnet"`
	// Address is the service address answered to the datacenter's
	// clients while it is pooled; empty resolves AddressRecord.
	Address string `yaml:"address"`
	// Recursors are the recursors the datacenter's hosts use, host or
	// host:port (port 53 when omitted). After FlushCommands ran, each is
	// asked once and must answer the new address (the flush took).
	// Optional.
	Recursors []string `yaml:"recursors"`
}

// HostCheckOrDefault is HostCheck, true when unset.
func (c Config) HostCheckOrDefault() bool { return c.HostCheck == nil || *c.HostCheck }

// Service is the first label of Record ("apus").
func (c Config) Service() string {
	s, _, _ := strings.Cut(strings.TrimSuffix(c.Record, "."), ".")
	return s
}

// WithDefaults returns c with zero durations and the address record set
// to their defaults.
func (c Config) WithDefaults() Config {
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.ConvergeTimeout == 0 {
		c.ConvergeTimeout = DefaultConvergeTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.HostTimeout == 0 {
		c.HostTimeout = DefaultHostTimeout
	}
	if c.AddressRecord == "" {
		c.AddressRecord = DefaultAddressRecord
	}
	return c
}

// hostnamePattern is a DNS name: letters, digits, '-' and '_' in dot-
// separated labels, optionally ending in '.'.
var hostnamePattern = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$`)

var dcPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// Validate checks the section; messages name the key under prefix (e.g.
// "services.apus.dns.").
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, key, fmt.Sprintf(format, a...)))
	}
	switch {
	case c.Record == "":
		bad("record", "required, e.g. apus.discovery.wmnet")
	case !hostnamePattern.MatchString(c.Record) || len(c.Record) > 253 || !strings.Contains(strings.TrimSuffix(c.Record, "."), "."):
		bad("record", "%q is not a fully qualified DNS name", c.Record)
	}
	if len(c.Authoritative) == 0 {
		bad("authoritative", "at least one authoritative server is required")
	}
	seen := map[string]bool{}
	for i, s := range c.Authoritative {
		addr, err := serverAddr(s, DefaultPort)
		if err != nil {
			bad(fmt.Sprintf("authoritative[%d]", i), "%v", err)
			continue
		}
		if seen[addr] {
			bad(fmt.Sprintf("authoritative[%d]", i), "%s is listed twice", addr)
		}
		seen[addr] = true
	}
	if len(c.Datacenters) < 2 {
		bad("datacenters", "at least two datacenters are required (a depooled one's clients go to another)")
	}
	names := map[string]bool{}
	for i, dc := range c.Datacenters {
		key := fmt.Sprintf("datacenters[%d]", i)
		if !dcPattern.MatchString(dc.Name) {
			bad(key+".name", "%q is not a datacenter name (lowercase letters, digits, '-')", dc.Name)
		} else if names[dc.Name] {
			bad(key+".name", "%q is listed twice", dc.Name)
		}
		names[dc.Name] = true
		if _, err := ParseClientSubnet(dc.ClientSubnet); err != nil {
			bad(key+".client_subnet", "%v", err)
		}
		for j, r := range dc.Recursors {
			if _, err := serverAddr(r, 53); err != nil {
				bad(fmt.Sprintf("%s.recursors[%d]", key, j), "%v", err)
			}
		}
		if len(dc.Recursors) > 0 && len(c.FlushCommands) == 0 {
			bad(key+".recursors", "only used to check flush_commands, which are not set")
		}
		if dc.Address != "" {
			if a, err := netip.ParseAddr(dc.Address); err != nil || a.Zone() != "" {
				bad(key+".address", "%q is not an IP address", dc.Address)
			}
		}
	}
	if c.AddressRecord != "" {
		probe := strings.NewReplacer("{service}", "svc", "{dc}", "dc").Replace(c.AddressRecord)
		if !strings.Contains(c.AddressRecord, "{dc}") {
			bad("address_record", "%q must contain {dc}", c.AddressRecord)
		} else if !hostnamePattern.MatchString(probe) {
			bad("address_record", "%q is not a DNS name template", c.AddressRecord)
		}
	}
	for key, d := range map[string]time.Duration{
		"query_timeout": c.QueryTimeout, "converge_timeout": c.ConvergeTimeout,
		"poll_interval": c.PollInterval, "host_timeout": c.HostTimeout,
	} {
		if d < 0 {
			bad(key, "%s must not be negative", d)
		}
	}
	for _, host := range slices.Sorted(maps.Keys(c.HostDatacenters)) {
		if !names[c.HostDatacenters[host]] {
			bad("host_datacenters."+host, "%q is not one of the datacenters", c.HostDatacenters[host])
		}
	}
	for i, argv := range c.FlushCommands {
		if len(argv) == 0 {
			bad(fmt.Sprintf("flush_commands[%d]", i), "empty command")
		}
		for j, arg := range argv {
			if arg == "" || strings.ContainsAny(arg, "\x00\r\n") {
				bad(fmt.Sprintf("flush_commands[%d][%d]", i, j), "empty or contains a control character")
			}
		}
	}
	return errors.Join(errs...)
}

// serverAddr returns s as host:port, defaultPort when omitted.
func serverAddr(s string, defaultPort int) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port (a bare name, IPv4 or IPv6 address).
		host, port = strings.Trim(s, "[]"), strconv.Itoa(defaultPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port must be 1-65535", s)
	}
	if _, err := netip.ParseAddr(host); err != nil && !hostnamePattern.MatchString(host) {
		return "", fmt.Errorf("%q is not a host, address or host:port", s)
	}
	return net.JoinHostPort(host, port), nil
}

// ParseClientSubnet parses a prefix, or an address taken as its /24
// (IPv4) or /56 (IPv6), dnspython's default source prefix lengths.
func ParseClientSubnet(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("required: an address or prefix of the datacenter's clients")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
	}
	bits := 24
	if a.Is6() {
		bits = 56
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}
