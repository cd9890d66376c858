package site

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"poolbot/internal/testenv"
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
}

// New starts a site of nHosts registry hosts for the test.
func New(t testing.TB, nHosts int) *Site {
	t.Helper()
	w := &Site{Dir: t.TempDir(), LockDir: t.TempDir(), Port: testenv.FreePort(t), DebugPort: testenv.FreePort(t)}
	regs := map[string]*regenv.Instance{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 2; i < 2+nHosts; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		w.Hosts = append(w.Hosts, host)
		wg.Go(func() {
			inst := regenv.Start(t, regenv.Options{Host: host, Port: w.Port, DebugPort: w.DebugPort})
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
	t.Setenv(EnvCtl, w.Systemctl.URL)
	return w
}

// GlobalLock is the path of scap's global lock file.
func (w *Site) GlobalLock() string { return filepath.Join(w.LockDir, "scap-global-lock") }

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
      executor: local
      local: {command: [%q, "{host}", "{argv}"]}
      hosts: [%s]
      units: [docker-registry-restricted.service]
      pace: 0s
      per_host_timeout: 60s
    registry:
      instances: [{name: restricted, port: %d, debug_port: %d}]
      health: {interval: 100ms, wait_timeout: 20s, consecutive: 1}
      probe: {enabled: true}
store: {path: %q}
sal: {sink: channel, channel: "#wikimedia-operations"}
log: {format: text, level: info}
procedure: {resume_after_crash: auto, scap_poll: 200ms, per_host_estimate: 10s}
calendar: {source: none}
scap:
  locks: {files: [%q, %q]}
  deploy_block: {global_lock: %q}
  channel: {enabled: false}
conftool: {backend: etcd, etcd: {endpoints: [%q]}}
%s`, chat, os.Args[0], strings.Join(w.Hosts, ", "), w.Port, w.DebugPort, filepath.Join(w.Dir, "poolbot.db"),
		w.GlobalLock(), filepath.Join(w.LockDir, "scap.srv_mediawiki-staging.lock"), w.GlobalLock(),
		w.Etcd.ClientURL, extra)
	path := filepath.Join(w.Dir, "poolbot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
