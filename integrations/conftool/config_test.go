package conftool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poolbot/internal/secret"
)

func TestConfigValidate(t *testing.T) {
	ok := EtcdConfig{Endpoints: []string{"https://conf1007.eqiad.wmnet:4001"}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"etcd minimal", Config{Backend: "etcd", Etcd: ok}, ""},
		{"confctl minimal", Config{Backend: "confctl"}, ""},
		{"no backend", Config{}, "conftool.backend: missing"},
		{"bad backend", Config{Backend: "zookeeper"}, `conftool.backend: "zookeeper"`},
		{"no endpoints", Config{Backend: "etcd"}, "conftool.etcd.endpoints"},
		{"endpoint scheme", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: []string{"conf1007:4001"}}}, "conftool.etcd.endpoints[0]"},
		{"endpoint path", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: []string{"http://h:1/v2/keys"}}}, "conftool.etcd.endpoints[0]"},
		{"endpoint creds", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: []string{"http://u:p@h:1"}}}, "conftool.etcd.endpoints[0]"},
		{"prefix relative", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Prefix: "conftool/v1"}}, "conftool.etcd.prefix"},
		{"prefix trailing", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Prefix: "/conftool/v1/"}}, "conftool.etcd.prefix"},
		{"prefix dotdot", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Prefix: "/conftool/../x"}}, "conftool.etcd.prefix"},
		{"password without user", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Password: secret.Ref{File: "/p"}}}, "conftool.etcd.username"},
		{"user without password", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Username: "conftool"}}, "conftool.etcd.password: a file or env is required"},
		{"both passwords", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Username: "conftool", Password: secret.Ref{File: "/p", Env: "P"}}}, "not both"},
		{"cert without key", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, CertFile: "/c"}}, "cert_file / key_file"},
		{"ca with http", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: []string{"http://h:1"}, CAFile: "/ca"}}, "no endpoint uses https"},
		{"negative timeout", Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: ok.Endpoints, Timeout: -time.Second}}, "conftool.etcd.timeout"},
		{"confctl flag command", Config{Backend: "confctl", Confctl: ConfctlConfig{Command: []string{"--x"}}}, "conftool.confctl.command[0]"},
		{"confctl empty arg", Config{Backend: "confctl", Confctl: ConfctlConfig{Command: []string{"sudo", ""}}}, "conftool.confctl.command[1]"},
		{"confctl config flag", Config{Backend: "confctl", Confctl: ConfctlConfig{Config: "-x"}}, "conftool.confctl.config"},
		{"confctl negative timeout", Config{Backend: "confctl", Confctl: ConfctlConfig{Timeout: -1}}, "conftool.confctl.timeout"},
	} {
		err := tc.cfg.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestNewPicksBackendAndDefaults(t *testing.T) {
	c, err := New(Config{Backend: "confctl"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cc := c.(*Confctl)
	if got := cc.Argv("dnsdisc=apus", "get"); strings.Join(got, " ") != "confctl --quiet --object-type discovery select dnsdisc=apus get" {
		t.Fatalf("default argv %q", got)
	}
	if cc.timeout != DefaultConfctlTimeout {
		t.Fatalf("timeout %s", cc.timeout)
	}

	c, err = New(Config{Backend: "etcd", Etcd: EtcdConfig{Endpoints: []string{"http://127.0.0.1:2379"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ec := c.(*Etcd)
	if ec.prefix != "/conftool/v1" || ec.timeout != DefaultEtcdTimeout || ec.objectKey("apus", "codfw") != "/conftool/v1/discovery/apus/codfw" {
		t.Fatalf("defaults: %q %s", ec.prefix, ec.timeout)
	}

	if w := WatcherFor(ec, time.Minute, Options{}); w != Watcher(ec) {
		t.Fatalf("WatcherFor(etcd) = %T, want the etcd client itself", w)
	}

	if _, err := New(Config{Backend: "etcd"}, Options{}); err == nil {
		t.Fatal("invalid config accepted")
	}
}

func TestNewEtcdSecretsAndFiles(t *testing.T) {
	dir := t.TempDir()
	eps := []string{"https://127.0.0.1:2379"}
	t.Setenv("POOLBOT_EMPTY_PW", "")
	if _, err := NewEtcd(EtcdConfig{Endpoints: eps, Username: "u", Password: secret.Ref{Env: "POOLBOT_EMPTY_PW"}}, Options{}); err == nil || !strings.Contains(err.Error(), "POOLBOT_EMPTY_PW") {
		t.Fatalf("empty env password: %v", err)
	}
	if _, err := NewEtcd(EtcdConfig{Endpoints: eps, Username: "u", Password: secret.Ref{File: filepath.Join(dir, "missing")}}, Options{}); err == nil || !strings.Contains(err.Error(), "conftool.etcd.password (file:") {
		t.Fatalf("missing password file: %v", err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewEtcd(EtcdConfig{Endpoints: eps, CAFile: notPEM}, Options{}); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("bad CA: %v", err)
	}
}
