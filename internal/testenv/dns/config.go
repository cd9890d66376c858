package dns

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ServiceYAML is poolbot's services.<service>.dns section for the world,
// indented four spaces: its record and authoritative servers, each
// datacenter with a client subnet from its ClientNet (as spicerack's
// client addresses are), hostDCs placing the hosts, polls every poll and
// timeouts of timeout. hostCheck false turns off the getent check before
// each host (a host the executor reaches outside its resolver's
// namespace).
func (w *World) ServiceYAML(hostDCs map[string]string, poll, timeout time.Duration, hostCheck bool) string {
	var dcs, hosts []string
	for _, dc := range w.DCs {
		dcs = append(dcs, fmt.Sprintf("        - {name: %s, client_subnet: %s}\n", dc.Name, dc.ClientNet.Addr().Next()))
	}
	for h, dc := range hostDCs {
		hosts = append(hosts, fmt.Sprintf("%q: %s", h, dc))
	}
	slices.Sort(hosts)
	return fmt.Sprintf(`    dns:
      record: %s
      authoritative: [%s]
      datacenters:
%s      poll_interval: %s
      converge_timeout: %s
      host_check: %t
      host_timeout: %s
      host_datacenters: {%s}
`, w.Record, strings.Join(w.Servers, ", "), strings.Join(dcs, ""), poll, timeout, hostCheck, timeout, strings.Join(hosts, ", "))
}
