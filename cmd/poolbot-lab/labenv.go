package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"poolbot/internal/testenv"
	cuminenv "poolbot/internal/testenv/cumin"
	dnsworld "poolbot/internal/testenv/dns"
	etcdenv "poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/hostns"
	"poolbot/internal/testenv/ircnet"
	regenv "poolbot/internal/testenv/registry"
	"poolbot/internal/testenv/site"
)

// The lab's IRC accounts. The passwords are the lab's own: the network
// exists only on this machine's loopback, for as long as the lab runs.
var labAccounts = []ircnet.Account{
	{Name: "alice", Password: "alice-lab-pw"},
	{Name: "bob", Password: "bob-lab-pw"},
	{Name: "poolbot", Password: "poolbot-lab-pw"},
}

const labChannel = "#wikimedia-operations"

// labEnv is everything poolbot talks to in the lab, real and on loopback.
type labEnv struct {
	o       options
	dir     string
	lockDir string
	hosts   []string
	regs    map[string]*regenv.Instance
	port    int // every registry host's API port
	debug   int // and debug port, the same on each host as in production

	irc   *ircnet.Net
	etcd  *etcdenv.Server
	ctl   *site.Systemctl
	wiki  *wiki
	cumin *cuminenv.Env // -executor cumin: an sshd per host and cumin's config
	// dns is the DNS side (nil with -dns=false): gdnsd rendered from etcd,
	// a recursor per datacenter, and each host's namespace resolving
	// through its datacenter's recursor (hostDC).
	dns    *dnsworld.World
	ns     map[string]*hostns.Host // by datacenter
	hostDC map[string]string

	poolbotBin string
	labBin     string
	httpAddr   string
	configPath string
	logPath    string

	poolbot     *exec.Cmd
	poolbotDone chan struct{}
}

// needed lists the servers the lab starts and their Debian packages.
var needed = []struct{ binary, pkg string }{
	{"inspircd", "inspircd"},
	{"atheme-services", "atheme-services"},
	{"etcd", "etcd-server"},
}

// neededDNS are the DNS step's servers (with -dns).
var neededDNS = []struct{ binary, pkg string }{
	{"gdnsd", "gdnsd"},
	{"pdns_recursor", "pdns-recursor"},
	{"rec_control", "pdns-recursor"},
	{"unshare", "util-linux"},
	{"nsenter", "util-linux"},
	{"getent", "libc-bin"},
}

// labDCs are the lab's datacenters; hosts alternate between them.
var labDCs = []string{"eqiad", "codfw"}

// labTTL is the discovery record's TTL in the lab (300s in production):
// the DNS step waits it out after each change.
const labTTL = 3

// checkDeps finds the servers, installing their packages with the
// repository's script when allowed (root), or says what to install.
func checkDeps(ctx context.Context, o options, out io.Writer) error {
	need := slices.Clone(needed)
	if o.executor == "cumin" {
		need = append(need, struct{ binary, pkg string }{"sshd", "openssh-server"},
			struct{ binary, pkg string }{"cumin", "cumin"})
	}
	if o.dns {
		need = append(need, neededDNS...)
	}
	missing := func() (bins, pkgs []string) {
		for _, n := range need {
			if slices.Contains(pkgs, n.pkg) {
				continue
			}
			if _, err := testenv.Lookup(n.binary); err != nil {
				bins, pkgs = append(bins, n.binary), append(pkgs, n.pkg)
			}
		}
		return bins, pkgs
	}
	bins, pkgs := missing()
	if len(bins) == 0 {
		return nil
	}
	root, rerr := regenv.RepoRoot("")
	script := filepath.Join(root, "scripts", "install-test-deps.sh")
	if o.install && rerr == nil && os.Geteuid() == 0 {
		fmt.Fprintf(out, "lab: %s missing; running %s (Debian packages %s)\n", strings.Join(bins, ", "), script, strings.Join(pkgs, " "))
		cmd := exec.CommandContext(ctx, script)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", script, err)
		}
		if bins, _ = missing(); len(bins) == 0 {
			return nil
		}
	}
	return fmt.Errorf("the lab needs %s; install the Debian packages with\n  sudo apt-get install %s\nor run scripts/install-test-deps.sh as root (it also builds the test docker registry)",
		strings.Join(bins, ", "), strings.Join(pkgs, " "))
}

// startWorld brings up the ircd with services, etcd, the registries, the
// systemctl stand-in and the calendar, and builds poolbot, in parallel.
func startLab(ctx context.Context, o options, dir string, out io.Writer) (*labEnv, error) {
	w := &labEnv{o: o, dir: dir, lockDir: filepath.Join(dir, "lock"), regs: map[string]*regenv.Instance{}}
	var err error
	if w.labBin, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("lab: own executable: %w", err)
	}
	for i := 0; i < o.hosts; i++ {
		w.hosts = append(w.hosts, fmt.Sprintf("127.0.0.%d", i+2))
	}
	if w.port, err = freePort(); err != nil {
		return nil, err
	}
	if w.debug, err = freePort(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(mustCachePath()); err != nil && os.Getenv(regenv.BinEnv) == "" {
		fmt.Fprintln(out, "lab: building the docker registry from tools/go.mod (once; about 3–4 minutes on 2 cores)")
	}
	regBin, err := regenv.Binary(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: docker registry binary: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	var mu sync.Mutex
	timed := func(what string, f func() error) {
		g.Go(func() error {
			start := time.Now()
			if err := f(); err != nil {
				return err
			}
			mu.Lock()
			fmt.Fprintf(out, "lab: %-44s %5.1fs\n", what, time.Since(start).Seconds())
			mu.Unlock()
			return nil
		})
	}
	timed("ircd (InspIRCd) + services (Atheme), accounts", func() error {
		d := filepath.Join(dir, "irc")
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		n, err := ircnet.Launch(gctx, d, ircnet.Options{})
		if err != nil {
			return err
		}
		mu.Lock()
		w.irc = n
		mu.Unlock()
		return n.RegisterAll(gctx, labAccounts...)
	})
	timed("etcd (v2 API) with apus pooled in eqiad, codfw", func() error {
		d := filepath.Join(dir, "etcd")
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		e, err := etcdenv.Launch(gctx, d)
		if err != nil {
			return err
		}
		mu.Lock()
		w.etcd = e
		mu.Unlock()
		for _, dc := range labDCs {
			if _, err := e.PutValue(gctx, etcdenv.DiscoveryKey("apus", dc),
				fmt.Sprintf(`{"pooled": true, "references": [], "ttl": %d}`, labTTL)); err != nil {
				return err
			}
		}
		return nil
	})
	// The hosts' namespaces need the recursors, which need etcd: the
	// registries wait for them.
	nsReady := make(chan struct{})
	if o.dns {
		timed("DNS: 2 gdnsd (state from etcd), a recursor per DC", func() error {
			for {
				mu.Lock()
				e := w.etcd
				mu.Unlock()
				if e != nil {
					break
				}
				select {
				case <-gctx.Done():
					return gctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			return w.startDNS(gctx, dir, nsReady)
		})
	} else {
		close(nsReady)
	}
	timed(fmt.Sprintf("%d docker registries (%s..%s)", o.hosts, w.hosts[0], w.hosts[len(w.hosts)-1]), func() error {
		select {
		case <-nsReady:
		case <-gctx.Done():
			return gctx.Err()
		}
		rg, rctx := errgroup.WithContext(gctx)
		for _, h := range w.hosts {
			rg.Go(func() error {
				var prefix []string
				if w.dns != nil {
					prefix = w.ns[w.hostDC[h]].Prefix() // resolves as a host of its datacenter
				}
				// One storage for all hosts, as they share apus in
				// production: the probe across hosts reads it.
				inst, err := regenv.Launch(rctx, regenv.Options{Binary: regBin, Dir: filepath.Join(dir, "registry-"+h),
					Host: h, Port: w.port, DebugPort: w.debug, Wrapper: prefix, StorageDir: filepath.Join(dir, "storage")})
				if err != nil {
					return err
				}
				mu.Lock()
				w.regs[h] = inst
				mu.Unlock()
				return nil
			})
		}
		return rg.Wait()
	})
	timed("poolbot binary", func() error { return w.buildPoolbot(gctx) })
	if err := g.Wait(); err != nil {
		w.close()
		return nil, err
	}

	if err := os.MkdirAll(w.lockDir, 0o755); err != nil {
		w.close()
		return nil, err
	}
	// scap leaves its lock files behind; on a deploy host they exist.
	for _, f := range []string{"scap-global-lock", "scap.srv_mediawiki-staging.lock"} {
		if err := os.WriteFile(filepath.Join(w.lockDir, f), []byte("{}"), 0o666); err != nil {
			w.close()
			return nil, err
		}
	}
	if w.ctl, err = site.NewSystemctl(w.regs); err != nil {
		w.close()
		return nil, err
	}
	for h, dc := range w.hostDC {
		w.ctl.SetNamespace(h, w.ns[dc].Prefix()) // getent on h answers as h's resolver does
	}
	if w.wiki, err = startWiki(); err != nil {
		w.close()
		return nil, err
	}
	if o.executor == "cumin" {
		start := time.Now()
		if w.cumin, err = cuminenv.Launch(mkdir(filepath.Join(dir, "cumin")), cuminenv.Options{Hosts: w.hosts, Aliases: site.CuminAliases(w.hosts)}); err != nil {
			w.close()
			return nil, fmt.Errorf("lab: %w", err)
		}
		fmt.Fprintf(out, "lab: %-44s %5.1fs\n", fmt.Sprintf("cumin, an sshd on each of %s..%s", w.hosts[0], w.hosts[len(w.hosts)-1]), time.Since(start).Seconds())
	}
	return w, nil
}

// mkdir creates dir (for a launcher that writes into it) and returns it;
// a failure shows up when the launcher writes there.
func mkdir(dir string) string {
	_ = os.MkdirAll(dir, 0o700)
	return dir
}

func mustCachePath() string {
	p, err := regenv.CachePath()
	if err != nil {
		return ""
	}
	return p
}

// startDNS starts the DNS world on the lab's etcd and one resolver
// namespace per datacenter, and places the hosts in datacenters; it closes
// ready when the namespaces exist.
func (w *labEnv) startDNS(ctx context.Context, dir string, ready chan struct{}) error {
	d := filepath.Join(dir, "dns")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	dw, err := dnsworld.Launch(ctx, d, dnsworld.Options{EtcdURL: w.etcd.ClientURL, HTTPClient: w.etcd.HTTPClient()})
	if err != nil {
		return fmt.Errorf("lab: DNS: %w", err)
	}
	ns, hostDC := map[string]*hostns.Host{}, map[string]string{}
	for _, r := range dw.Recursors {
		h, err := hostns.Launch(ctx, "resolver-"+r.DC, r.ResolvConf)
		if err != nil {
			for _, h := range ns {
				h.Close()
			}
			dw.Stop()
			return fmt.Errorf("lab: DNS: %w", err)
		}
		ns[r.DC] = h
	}
	for i, h := range w.hosts {
		hostDC[h] = labDCs[i%len(labDCs)]
	}
	w.dns, w.ns, w.hostDC = dw, ns, hostDC
	close(ready)
	return nil
}

// describeHostDCs is "127.0.0.2 eqiad, 127.0.0.3 codfw, …".
func (w *labEnv) describeHostDCs() string {
	var parts []string
	for _, h := range w.hosts {
		parts = append(parts, h+" "+w.hostDC[h])
	}
	return strings.Join(parts, ", ") + " resolve through their datacenter's recursor"
}

// dnsYAML is the service's dns section for the lab's DNS world.
func (w *labEnv) dnsYAML() string {
	if w.dns == nil {
		return ""
	}
	hostDCs := map[string]string{}
	for _, h := range w.hosts {
		hostDCs[h] = w.hostDC[h]
	}
	// cumin reaches each host's sshd, which runs outside the host's
	// resolver namespace: getent there would ask the machine's resolver.
	hostCheck := w.o.executor != "cumin"
	return `    # The DNS step: real gdnsd answering from a state file rendered from etcd,
    # and a pdns-recursor per datacenter that the hosts resolve through.
` + w.dns.ServiceYAML(hostDCs, 200*time.Millisecond, 30*time.Second, hostCheck)
}

// buildPoolbot builds the poolbot binary from this repository with go
// build (or takes -poolbot): the lab runs the real binary, as production
// does, so nothing of the lab links into it.
func (w *labEnv) buildPoolbot(ctx context.Context) error {
	if w.o.poolbot != "" {
		w.poolbotBin = w.o.poolbot
		return nil
	}
	root, err := regenv.RepoRoot("")
	if err != nil {
		return fmt.Errorf("lab: build poolbot: %w (run the lab from the repository, or pass -poolbot)", err)
	}
	w.poolbotBin = filepath.Join(w.dir, "poolbot")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", w.poolbotBin, "./cmd/poolbot")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: go build ./cmd/poolbot: %w\n%s", err, out)
	}
	return nil
}

func freePort() (int, error) {
	p, err := testenv.Port("127.0.0.1")
	if err != nil {
		return 0, fmt.Errorf("lab: %w", err)
	}
	return p, nil
}

// writeConfig writes poolbot's config for the lab.
func (w *labEnv) writeConfig(t timing) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	w.httpAddr = fmt.Sprintf("127.0.0.1:%d", port)
	pw := filepath.Join(w.dir, "poolbot-irc-password")
	if err := os.WriteFile(pw, []byte(labAccounts[2].Password+"\n"), 0o600); err != nil {
		return err
	}
	global := filepath.Join(w.lockDir, "scap-global-lock")
	staging := filepath.Join(w.lockDir, "scap.srv_mediawiki-staging.lock")
	// By default poolbot connects to the port with a Libera-like connect
	// class (flood kills) and paces itself as in production; -fast-irc
	// trades that for speed.
	server, pacing := w.irc.FloodAddr(), ""
	if w.o.fastIRC {
		server, pacing = w.irc.Addr(), "\n    rate: 20\n    burst: 20"
	}
	cfg := fmt.Sprintf(`# Written by poolbot-lab: everything on this machine's loopback.
chat:
  command_prefix: "!"
  irc:
    server: %q%s
    nick: poolbot
    sasl_account: poolbot
    channels: [%q]
    reconnect_min: 1s
    reconnect_max: 10s
    quit_message: "poolbot lab shutting down"
  irc_sasl_password: {file: %q}
operators:
  - {name: alice, irc_accounts: [alice]}
  - {name: bob, irc_accounts: [bob]}
services:
  apus:
    datacenters: [eqiad, codfw]
    restart:
%s      units: [docker-registry-restricted.service]
      pace: %s
      per_host_timeout: 60s
    registry:
      instances: [{name: restricted, port: %d, debug_port: %d}]
      health: {interval: 200ms, wait_timeout: 30s, consecutive: 1}
      probe: {enabled: true}
%sforce: {require_confirm: true}
store: {path: %q}
sal: {sink: channel, channel: %q}
log: {format: text, level: info}
procedure: {resume_after_crash: auto, scap_poll: 500ms, per_host_estimate: %s, max_wait: 2h}
calendar:
  source: wikitech
  wikitech:
    api_url: %q
    page: Deployments
    user_agent: "poolbot-lab/1.0 (local lab; nobody@localhost)"
    timeout: 10s
  refresh_interval: 1m
  max_age: 10m
  lead_margin: %s
  tail_margin: %s
scap:
  locks: {files: [%q, %q]}
  deploy_block: {global_lock: %q}
  channel: {enabled: true}
logmsgbot: {nicks: [logmsgbot]}
conftool: {backend: etcd, etcd: {endpoints: [%q], timeout: 5s}}
http: {listen: %q}
`, server, pacing, labChannel, pw, w.restartSection(), t.pace, w.port, w.debug, w.dnsYAML(),
		filepath.Join(w.dir, "poolbot.db"), labChannel, t.perHost, w.wiki.APIURL(), t.margin, t.margin,
		global, staging, global, w.etcd.ClientURL, w.httpAddr)
	w.configPath = filepath.Join(w.dir, "poolbot.yaml")
	return os.WriteFile(w.configPath, []byte(cfg), 0o600)
}

// startPoolbot runs `poolbot run` and waits until /healthz says ready
// (store writable, IRC connected).
func (w *labEnv) startPoolbot(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, w.poolbotBin, "check-config", w.configPath).CombinedOutput(); err != nil {
		return fmt.Errorf("poolbot check-config: %w\n%s", err, out)
	}
	w.logPath = filepath.Join(w.dir, "poolbot.log")
	logf, err := os.Create(w.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(w.poolbotBin, "run", "-config", w.configPath)
	cmd.Env = append(os.Environ(), site.EnvCtl+"="+w.ctl.URL)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the lab dies, poolbot stops the way systemd stops it. Its own
	// process group: a Ctrl-C at the terminal is for the lab, which then
	// stops poolbot (SIGTERM) before the lab it runs in.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start poolbot: %w", err)
	}
	w.poolbot, w.poolbotDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(w.poolbotDone) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.httpAddr+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-w.poolbotDone:
			return fmt.Errorf("poolbot exited at start; see %s:\n%s", w.logPath, tail(w.logPath, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("poolbot not ready after 60s; see %s", w.logPath)
		}
	}
}

// stopPoolbot sends SIGTERM and waits: poolbot finishes its host, releases
// the deploy block, flushes SAL and quits IRC.
func (w *labEnv) stopPoolbot() {
	if w.poolbot == nil {
		return
	}
	_ = w.poolbot.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.poolbotDone:
	case <-time.After(90 * time.Second):
		_ = w.poolbot.Process.Kill()
		<-w.poolbotDone
	}
	w.poolbot = nil
}

// restartSection is the executor part of services.apus.restart: the lab
// binary as every host's "systemctl" (POOLBOT_TEST_CTL), run by the local
// executor or, with -executor cumin, by cumin over each host's sshd.
func (w *labEnv) restartSection() string {
	if w.cumin != nil {
		return site.CuminRestart(w.cumin, w.labBin, w.ctl.URL)
	}
	return fmt.Sprintf(`      executor: local
      local: {command: [%q, "{host}", "{argv}"]}
      hosts: [%s]
`, w.labBin, strings.Join(w.hosts, ", "))
}

// close stops everything the lab started.
func (w *labEnv) close() {
	w.stopPoolbot()
	if w.cumin != nil {
		w.cumin.Stop()
	}
	if w.wiki != nil {
		w.wiki.close()
	}
	if w.ctl != nil {
		_ = w.ctl.Close()
	}
	for _, r := range w.regs {
		_ = r.Close()
	}
	for _, h := range w.ns {
		h.Close()
	}
	if w.dns != nil {
		w.dns.Stop()
	}
	if w.etcd != nil {
		w.etcd.Stop()
	}
	if w.irc != nil {
		_ = w.irc.Close()
	}
}

func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
