package incident

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/registry"
	"poolbot/internal/testenv/site"
)

// ErrNoDNSStep: the poolbot binary has no procedure DNS step
// (services.<name>.dns) to turn on.
var ErrNoDNSStep = errors.New("this poolbot has no DNS step (services.<name>.dns): without it a restart can come before the host's resolver follows, which story 3 shows")

// PoolbotOptions say how to run poolbot in the world.
type PoolbotOptions struct {
	// Binary is the poolbot binary (BuildPoolbot).
	Binary string
	// Dir holds its config, database, scap lock files and log.
	Dir string
	// Helper is the program poolbot's local executor runs as each host's
	// systemctl: a binary that calls site.Main first (a test binary, or
	// poolbot-lab).
	Helper string
	// DNSWait turns the procedure's DNS step on (wait for gdnsd, then the
	// old TTL, before the first restart).
	DNSWait bool
	// Debounce is the drift watch's; Pace the pause between hosts.
	Debounce, Pace time.Duration
	// Stdin, when set, is poolbot's console input (the lab's terminal);
	// otherwise Say writes it.
	Stdin io.Reader
	// Echo, when set, also gets the console output as it comes.
	Echo io.Writer
}

// BuildPoolbot builds cmd/poolbot of this repository into dir.
func BuildPoolbot(ctx context.Context, dir string) (string, error) {
	root, err := registry.RepoRoot("")
	if err != nil {
		return "", fmt.Errorf("build poolbot: %w", err)
	}
	bin := filepath.Join(dir, "poolbot")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/poolbot")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/poolbot: %v\n%s", err, out)
	}
	return bin, nil
}

// Poolbot is the poolbot binary in console mode as operator alice: what
// it says in the channel is its standard output, the transcript.
type Poolbot struct {
	DNSWait bool
	// GlobalLock is scap's global lock file: poolbot's deploy block, and
	// what a deployer takes.
	GlobalLock string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testenv.SyncBuffer
	done  chan struct{}
}

// StartPoolbot writes a config for the world, checks it and starts poolbot.
func StartPoolbot(ctx context.Context, w *World, o PoolbotOptions) (*Poolbot, error) {
	lockDir := filepath.Join(o.Dir, "scap")
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	global, staging := filepath.Join(lockDir, "scap-global-lock"), filepath.Join(lockDir, "scap.srv_mediawiki-staging.lock")
	for _, f := range []string{global, staging} {
		if _, err := os.Stat(f); err == nil {
			continue
		}
		if err := os.WriteFile(f, []byte("{}"), 0o666); err != nil {
			return nil, err
		}
	}
	cfg := filepath.Join(o.Dir, fmt.Sprintf("poolbot-dns-%t.yaml", o.DNSWait))
	if err := os.WriteFile(cfg, []byte(w.PoolbotConfig(o, global, staging)), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, o.Binary, "check-config", cfg).CombinedOutput(); err != nil {
		if o.DNSWait && strings.Contains(string(out), `unknown key "dns"`) {
			return nil, ErrNoDNSStep
		}
		return nil, fmt.Errorf("check-config: %v\n%s", err, out)
	}
	cmd := exec.Command(o.Binary, "console", "-config", cfg, "-as", "alice")
	cmd.Env = append(os.Environ(), site.EnvCtl+"="+w.Systemctl.URL)
	p := &Poolbot{DNSWait: o.DNSWait, GlobalLock: global, cmd: cmd, out: &testenv.SyncBuffer{}, done: make(chan struct{})}
	if o.Stdin != nil {
		cmd.Stdin = o.Stdin
	} else {
		var err error
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	cmd.Stdout = p.out
	if o.Echo != nil {
		cmd.Stdout = io.MultiWriter(p.out, o.Echo)
	}
	logs, err := os.OpenFile(filepath.Join(o.Dir, "poolbot.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait(); logs.Close(); close(p.done) }()
	return p, nil
}

// PoolbotConfig is poolbot's config for the world: the registry hosts
// (by address) behind the balancer, the drift watch on, the periodic
// probe off, no calendar; with DNSWait the DNS step (gdnsd, the old TTL,
// then getent on each host before its restart).
func (w *World) PoolbotConfig(o PoolbotOptions, global, staging string) string {
	if o.Debounce == 0 {
		o.Debounce = 20 * time.Second
	}
	if o.Pace == 0 {
		o.Pace = time.Second
	}
	var hosts []string
	hostDCs := map[string]string{}
	for _, h := range w.Hosts {
		hosts = append(hosts, h.Addr)
		hostDCs[h.Addr] = w.DC
	}
	dnsSection := ""
	if o.DNSWait {
		dnsSection = w.DNS.ServiceYAML(hostDCs, 200*time.Millisecond, 30*time.Second, true)
	}
	return fmt.Sprintf(`chat:
  command_prefix: "!"
operators: [{name: alice, irc_accounts: [alice]}]
services:
  apus:
    datacenters: [eqiad, codfw]
    restart:
      executor: local
      local: {command: [%q, "{host}", "{argv}"]}
      hosts: [%s]
      units: [docker-registry-restricted.service]
      pace: %s
      per_host_timeout: 60s
    registry:
      instances: [{name: restricted, port: %d, debug_port: %d}]
      balancer_url: %s
      health: {interval: 100ms, wait_timeout: 30s, consecutive: 1}
      probe: {enabled: true, timeout: 20s}
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
watch: {drift: {debounce: %s}, probe: {enabled: false}}
`, o.Helper, strings.Join(hosts, ", "), o.Pace, w.Port, w.DebugPort, w.LB.URL(), dnsSection,
		filepath.Join(o.Dir, "poolbot.db"), global, staging, global, w.Etcd.ClientURL, o.Debounce)
}

// Say types a line on the console.
func (p *Poolbot) Say(line string) error {
	if p.stdin == nil {
		return errors.New("poolbot's console reads the terminal")
	}
	_, err := fmt.Fprintln(p.stdin, line)
	return err
}

// Mark is where the transcript is now.
func (p *Poolbot) Mark() int { return len(p.out.String()) }

// Transcript is the console output since from.
func (p *Poolbot) Transcript(from int) string { return p.out.String()[from:] }

// Find returns the first console line after from containing every sub.
func (p *Poolbot) Find(from int, subs ...string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(p.out.String()[from:]))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		all := true
		for _, s := range subs {
			if !strings.Contains(l, s) {
				all = false
				break
			}
		}
		if all {
			return l, true
		}
	}
	return "", false
}

// Wait waits up to timeout for a console line after from containing
// every sub.
func (p *Poolbot) Wait(ctx context.Context, from int, timeout time.Duration, subs ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := p.Find(from, subs...); ok {
			return l, nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("poolbot exited while waiting for %q", subs)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no line with %q after %s; transcript:\n%s", subs, timeout, p.Transcript(from))
		}
	}
}

// Done is closed when poolbot has exited.
func (p *Poolbot) Done() <-chan struct{} { return p.done }

// Stop ends the console (poolbot shuts down), killing it after 30 s.
func (p *Poolbot) Stop() {
	if p.stdin != nil {
		p.stdin.Close()
	} else {
		_ = p.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
