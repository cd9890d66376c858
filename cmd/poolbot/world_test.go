package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"poolbot/internal/testenv"
	etcdenv "poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/lab"
	regenv "poolbot/internal/testenv/registry"
)

// world is what poolbot talks to, real and on loopback: etcd holding apus'
// discovery objects (both datacenters pooled), one docker registry per
// "host" (127.0.0.2, .3, … with the same ports, as in production), scap's
// lock files, and a systemctl that restarts those registries.
type world struct {
	dir       string
	hosts     []string
	port      int
	debugPort int
	etcd      *etcdenv.Server
	systemctl *lab.Systemctl
	lockDir   string
}

func newWorld(t *testing.T, nHosts int) *world {
	t.Helper()
	w := &world{dir: t.TempDir(), lockDir: t.TempDir(), port: testenv.FreePort(t), debugPort: testenv.FreePort(t)}
	regs := map[string]*regenv.Instance{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 2; i < 2+nHosts; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		w.hosts = append(w.hosts, host)
		wg.Go(func() {
			inst := regenv.Start(t, regenv.Options{Host: host, Port: w.port, DebugPort: w.debugPort})
			mu.Lock()
			regs[host] = inst
			mu.Unlock()
		})
	}
	w.etcd = etcdenv.Start(t)
	wg.Wait()
	if t.Skipped() || t.Failed() {
		t.FailNow()
	}
	w.etcd.PutDiscovery(t, "apus", "eqiad", true)
	w.etcd.PutDiscovery(t, "apus", "codfw", true)
	for _, f := range []string{"scap-global-lock", "scap.srv_mediawiki-staging.lock"} {
		if err := os.WriteFile(filepath.Join(w.lockDir, f), []byte("{}"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	w.systemctl = lab.StartSystemctl(t, regs)
	t.Setenv(lab.EnvCtl, w.systemctl.URL)
	return w
}

func (w *world) globalLock() string { return filepath.Join(w.lockDir, "scap-global-lock") }

// config is a poolbot config for the world; chat is the chat section
// (YAML, indented two spaces) and extra is appended at the top level.
func (w *world) config(t *testing.T, chat, extra string) string {
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
%s`, chat, os.Args[0], strings.Join(w.hosts, ", "), w.port, w.debugPort, filepath.Join(w.dir, "poolbot.db"),
		w.globalLock(), filepath.Join(w.lockDir, "scap.srv_mediawiki-staging.lock"), w.globalLock(),
		w.etcd.ClientURL, extra)
	path := filepath.Join(w.dir, "poolbot.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
