package registry_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"poolbot/integrations/registry"
	"poolbot/internal/secret"
)

func TestDefaultConfigIsWMF(t *testing.T) {
	cfg := registry.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	got := cfg.InstancesOn("registry2004.codfw.wmnet")
	want := []registry.Instance{
		{Name: "restricted", Host: "registry2004.codfw.wmnet", Port: 5002, DebugPort: 5003, Scheme: "http"},
		{Name: "ml", Host: "registry2004.codfw.wmnet", Port: 5004, DebugPort: 5005, Scheme: "http"},
	}
	if len(got) != len(want) {
		t.Fatalf("instances %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("instance %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if s := got[0].String(); s != "restricted@registry2004.codfw.wmnet:5002" {
		t.Errorf("String() = %q", s)
	}
	if u := got[1].DebugURL().JoinPath("debug", "health").String(); u != "http://registry2004.codfw.wmnet:5005/debug/health" {
		t.Errorf("debug URL %s", u)
	}
}

func TestConfigFromYAML(t *testing.T) {
	const doc = `
scheme: https
ca_file: /etc/ssl/certs/wmf-ca-certificates.crt
instances:
  - {name: restricted, port: 5002, debug_port: 5003, probe_repository: restricted/poolbot-probe}
  - {name: ml, port: 5004, debug_port: 5005}
health:
  timeout: 3s
  interval: 5s
  wait_timeout: 3m
  consecutive: 7
  v2_expect_status: 401
probe:
  enabled: false
  repository: poolbot/probe
  timeout: 20s
  blob_size: 1024
  monolithic: true
  keep_blobs: true
auth:
  username: poolbot
  password: {file: /etc/poolbot/registry-password}
`
	cfg := registry.DefaultConfig()
	if err := yaml.UnmarshalWithOptions([]byte(doc), &cfg, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Health.Interval != 5*time.Second || cfg.Health.Consecutive != 7 || cfg.Probe.Enabled || cfg.Probe.BlobSize != 1024 {
		t.Errorf("decoded %+v", cfg)
	}
	if got := cfg.InstancesOn("h")[0]; got.Scheme != "https" || got.ProbeRepository != "restricted/poolbot-probe" {
		t.Errorf("instance %+v", got)
	}

	var typo registry.Config
	err := yaml.UnmarshalWithOptions([]byte("health:\n  consecutve: 3\n"), &typo, yaml.Strict())
	if err == nil || !strings.Contains(err.Error(), "consecutve") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestConfigValidateNamesKeys(t *testing.T) {
	mutate := func(f func(*registry.Config)) registry.Config {
		cfg := registry.DefaultConfig()
		f(&cfg)
		return cfg
	}
	for _, tc := range []struct {
		cfg  registry.Config
		want string
	}{
		{mutate(func(c *registry.Config) { c.Scheme = "ftp" }), "registry.scheme"},
		{mutate(func(c *registry.Config) { c.CAFile = "/ca.pem" }), "registry.ca_file"},
		{mutate(func(c *registry.Config) { c.Instances = nil }), "registry.instances: at least one"},
		{mutate(func(c *registry.Config) { c.Instances[1].Name = "restricted" }), "registry.instances[1].name: \"restricted\" already used by instances[0]"},
		{mutate(func(c *registry.Config) { c.Instances[0].Name = "-x" }), "registry.instances[0].name"},
		{mutate(func(c *registry.Config) { c.Instances[0].Name = "" }), "registry.instances[0].name: is empty"},
		{mutate(func(c *registry.Config) { c.Instances[1].DebugPort = 5003 }), "registry.instances[1].debug_port: port 5003 already used by instances[0].debug_port"},
		{mutate(func(c *registry.Config) { c.Instances[0].Port = 70000 }), "registry.instances[0].port: must be 1-65535"},
		{mutate(func(c *registry.Config) { c.Instances[0].ProbeRepository = "UPPER" }), "registry.instances[0].probe_repository"},
		{mutate(func(c *registry.Config) { c.Health.Timeout = -time.Second }), "registry.health.timeout"},
		{mutate(func(c *registry.Config) { c.Health.Consecutive = -1 }), "registry.health.consecutive"},
		{mutate(func(c *registry.Config) { c.Health.Consecutive = 100 }), "registry.health.wait_timeout: 2m0s is too short for 100 consecutive checks"},
		{mutate(func(c *registry.Config) { c.Health.V2ExpectStatus = 42 }), "registry.health.v2_expect_status"},
		{mutate(func(c *registry.Config) { c.Probe.Repository = "a//b" }), "registry.probe.repository"},
		{mutate(func(c *registry.Config) { c.Probe.BlobSize = 2 << 20 }), "registry.probe.blob_size"},
		{mutate(func(c *registry.Config) { c.Auth.Username = "poolbot" }), "registry.auth: username and password go together"},
		{mutate(func(c *registry.Config) { c.BalancerURL = "docker-registry.discovery.wmnet" }), "registry.balancer_url"},
		{mutate(func(c *registry.Config) { c.BalancerURL = "https://docker-registry.discovery.wmnet/v2/" }), "registry.balancer_url"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, tc.want)
		}
	}

	// Zero values mean defaults.
	zero := registry.Config{Instances: []registry.InstanceConfig{{Name: "ml", Port: 5004, DebugPort: 5005}}}
	if err := zero.Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	zero.BalancerURL = "https://docker-registry.discovery.wmnet"
	if err := zero.Validate(); err != nil {
		t.Errorf("balancer_url: %v", err)
	}
}

func TestNewReadsSecrets(t *testing.T) {
	dir := t.TempDir()
	cfg := registry.DefaultConfig()
	cfg.Auth = registry.AuthConfig{Username: "poolbot", Password: secret.Ref{File: filepath.Join(dir, "missing")}}
	if _, err := registry.New(cfg, registry.Options{}); err == nil || !strings.Contains(err.Error(), "registry.auth.password (file:") {
		t.Errorf("missing password file: %v", err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Auth.Password = secret.Ref{File: pw}
	if _, err := registry.New(cfg, registry.Options{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty password file: %v", err)
	}
	cfg = registry.DefaultConfig()
	cfg.Scheme, cfg.CAFile = "https", filepath.Join(dir, "pw")
	if _, err := registry.New(cfg, registry.Options{}); err == nil || !strings.Contains(err.Error(), "registry.ca_file") {
		t.Errorf("bad CA file: %v", err)
	}
	if _, err := registry.New(registry.Config{}, registry.Options{}); err == nil {
		t.Error("New accepted a config without instances")
	}
}

func TestValidateRepository(t *testing.T) {
	for _, ok := range []string{"poolbot/probe", "restricted/mediawiki-multiversion", "a", "a.b_c__d---e/f0", "wikimedia/machinelearning-liftwing"} {
		if err := registry.ValidateRepository(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Upper", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a._b", "a b", "a:tag", "a@sha256", strings.Repeat("a", 256)} {
		if err := registry.ValidateRepository(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
