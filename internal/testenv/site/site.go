package site

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"poolbot/internal/testenv"
	cuminenv "poolbot/internal/testenv/cumin"
	etcdenv "poolbot/internal/testenv/etcd"
	regenv "poolbot/internal/testenv/registry"
)

// Site is what poolbot talks to, real and on loopback: etcd holding apus'
// discovery objects (both datacenters pooled), one docker registry per
// "host" (127.0.0.2, .3, … with the same ports, as in production), scap's
// lock files, and a systemctl that restarts those registries.
type Site struct {
	// Dir holds the config and the SQLite file; LockDir scap's lock files.
	Dir, LockDir string
	// Hosts are the registry hosts, in restart order.
	Hosts []string
	// Port and DebugPort are every host's registry ports.
	Port, DebugPort int
	Etcd            *etcdenv.Server
	Systemctl       *Systemctl
	// Cumin, after UseCumin, is the cumin the restarts go through.
	Cumin *cuminenv.Env
	// ServiceExtra is added to the apus service in Config (keys indented
	// four spaces), e.g. DNS.ServiceYAML.
	ServiceExtra string
}

// New starts a site of nHosts registry hosts for the test.
func New(t testing.TB, nHosts int) *Site {
	t.Helper()
	w := &Site{Dir: t.TempDir(), LockDir: t.TempDir(), Port: testenv.FreePort(t), DebugPort: testenv.FreePort(t)}
	regs := map[string]*regenv.Instance{}
	// One storage for every host, as production's hosts share apus: the
	// probe across hosts reads on one host what another wrote.
	storage := t.TempDir()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 2; i < 2+nHosts; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		w.Hosts = append(w.Hosts, host)
		wg.Go(func() {
			inst := regenv.Start(t, regenv.Options{Host: host, Port: w.Port, DebugPort: w.DebugPort, StorageDir: storage})
			mu.Lock()
			regs[host] = inst
			mu.Unlock()
		})
	}
	w.Etcd = etcdenv.Start(t)
	wg.Wait()
	if t.Skipped() || t.Failed() {
		t.FailNow()
	}
	w.Etcd.PutDiscovery(t, "apus", "eqiad", true)
	w.Etcd.PutDiscovery(t, "apus", "codfw", true)
	for _, f := range []string{"scap-global-lock", "scap.srv_mediawiki-staging.lock"} {
		if err := os.WriteFile(filepath.Join(w.LockDir, f), []byte("{}"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	w.Systemctl = StartSystemctl(t, regs)
	return w
}

// GlobalLock is the path of scap's global lock file.
func (w *Site) GlobalLock() string { return filepath.Join(w.LockDir, "scap-global-lock") }

// UseCumin gives every host its own sshd (on the host's address) and a
// cumin configuration reaching them, with the alias docker-registry
// selecting them all: Config then writes the cumin executor with
// hosts_query "A:docker-registry". The restart and check commands run the
// test binary as systemctl on the host, over SSH (see SSHHost).
func (w *Site) UseCumin(t testing.TB) *cuminenv.Env {
	t.Helper()
	w.Cumin = cuminenv.Start(t, cuminenv.Options{Hosts: w.Hosts, Aliases: CuminAliases(w.Hosts)})
	return w.Cumin
}

// restartSection is the config's services.apus.restart, without units,
// pace and per_host_timeout: the local executor running the test binary as
// every host's systemctl, or (UseCumin) cumin reaching each host's sshd,
// where the test binary is systemctl again.
func (w *Site) restartSection() string {
	if w.Cumin == nil {
		// The control URL goes through env(1) on each command rather
		// than into this process's environment, so that sites run in
		// parallel tests.
		return fmt.Sprintf(`      executor: local
      local: {command: ["/usr/bin/env", %q, %q, "{host}", "{argv}"]}
      hosts: [%s]
`, EnvCtl+"="+w.Systemctl.URL, os.Args[0], strings.Join(w.Hosts, ", "))
	}
	return CuminRestart(w.Cumin, os.Args[0], w.Systemctl.URL)
}

// CuminRestart is the executor part of a restart section (YAML keys at six
// spaces) for restarts through env's cumin: hosts_query
// "A:docker-registry", and restart and check commands that run helper (a
// program whose main calls Main first) as systemctl on the host, over
// SSH, talking to the Systemctl at ctlURL.
func CuminRestart(env *cuminenv.Env, helper, ctlURL string) string {
	// The SSH session does not carry the caller's environment: the command
	// sets what the helper needs (and keeps a race-enabled test binary
	// from sleeping a second at exit).
	remote := fmt.Sprintf(`[env, %q, "GORACE=atexit_sleep_ms=0", %q, %q, systemctl`, EnvCtl+"="+ctlURL, helper, SSHHost)
	quoted := make([]string, len(env.Command))
	for i, a := range env.Command {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	return fmt.Sprintf(`      executor: cumin
      cumin: {command: [%s], timeout: 60s}
      hosts_query: "A:docker-registry"
      restart_command: %s, restart, "{units}"]
      check_command: %s, is-active, --quiet, "{unit}"]
`, strings.Join(quoted, ", "), remote, remote)
}

// CuminAliases are the aliases UseCumin (and the lab) give cumin:
// docker-registry selects hosts.
func CuminAliases(hosts []string) map[string]string {
	return map[string]string{"docker-registry": "D{" + strings.Join(hosts, ",") + "}"}
}

// Config writes a poolbot config for the site and returns its path;
// chat is the chat section (YAML, indented two spaces) and extra is
// appended at the top level. The local executor runs the test binary,
// which must call Main first in TestMain.
func (w *Site) Config(t testing.TB, chat, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`chat:
%s
operators: [{name: alice, irc_accounts: [alice]}]
services:
  apus:
    datacenters: [eqiad, codfw]
    restart:
%s      units: [docker-registry-restricted.service]
      pace: 0s
      per_host_timeout: 60s
    registry:
      instances: [{name: restricted, port: %d, debug_port: %d}]
      health: {interval: 100ms, wait_timeout: 20s, consecutive: 1}
      probe: {enabled: true}
%sstore: {path: %q}
sal: {sink: channel, channel: "#wikimedia-operations"}
log: {format: text, level: info}
procedure: {resume_after_crash: auto, scap_poll: 200ms, per_host_estimate: 10s}
calendar: {source: none}
scap:
  locks: {files: [%q, %q]}
  deploy_block: {global_lock: %q}
  channel: {enabled: false}
conftool: {backend: etcd, etcd: {endpoints: [%q]}}
%s`, chat, w.restartSection(), w.Port, w.DebugPort, w.ServiceExtra, filepath.Join(w.Dir, "poolbot.db"),
		w.GlobalLock(), filepath.Join(w.LockDir, "scap.srv_mediawiki-staging.lock"), w.GlobalLock(),
		w.Etcd.ClientURL, extra)
	path := filepath.Join(w.Dir, "poolbot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
