package config

import (
	"strings"
	"testing"
	"time"
)

// The example's dns section decodes with its defaults.
func TestExampleDNSSection(t *testing.T) {
	cfg, err := Parse("config.example.yaml", exampleIn(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Services["apus"].DNS
	if d == nil || d.Record != "apus.discovery.wmnet" || len(d.Datacenters) != 2 || d.ConvergeTimeout != 60*time.Second ||
		!d.HostCheckOrDefault() || d.HostDatacenters["registry-test1001.example"] != "eqiad" {
		t.Fatalf("dns section %+v", d)
	}
}

// Every problem of a dns section is reported with its key, and a host or
// datacenter the section cannot place is one too.
func TestDNSSectionProblems(t *testing.T) {
	example := string(exampleIn(t, t.TempDir()))
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"bad record and subnet", "record: apus.discovery.wmnet", "record: apus",
			[]string{`services.apus.dns.record: "apus" is not a fully qualified DNS name`}},
		{"unknown key", "      host_check: true", "      host_chek: true",
			[]string{"host_chek"}},
		{"datacenter missing", "        - {name: codfw, client_subnet: 10.192.0.1}", "        - {name: ulsfo, client_subnet: 10.192.0.1}",
			[]string{"services.apus.dns.datacenters: codfw is a datacenter of the service but has no entry"}},
		{"host without datacenter", "hosts: [registry1003.eqiad.wmnet,", "hosts: [registry-x.example,",
			[]string{"services.apus.dns.host_datacenters: host registry-x.example has no datacenter in its name"}},
		{"host_datacenters names no datacenter", "registry-test1001.example: eqiad", "registry-test1001.example: esams",
			[]string{`services.apus.dns.host_datacenters.registry-test1001.example: "esams" is not one of the datacenters`}},
		{"negative timeout", "converge_timeout: 60s", "converge_timeout: -1s",
			[]string{"services.apus.dns.converge_timeout: -1s must not be negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(example, tc.from) {
				t.Fatalf("example lacks %q", tc.from)
			}
			_, err := Parse("c.yaml", []byte(strings.Replace(example, tc.from, tc.to, 1)))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
