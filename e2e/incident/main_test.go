// Package incident plays T422166 and poolbot's answer to it on real parts
// (see internal/testenv/incident): the stories share one world, started
// once, and one poolbot, the real binary in console mode, whose console
// output is the transcript.
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
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/incident"
	"poolbot/internal/testenv/site"
)

// Timings of the world's poolbot. The drift watch waits long enough for
// the incident's failing pushes to happen before it acts.
const (
	driftDebounce = 20 * time.Second
	pace          = 1 * time.Second
)

var shared struct {
	once sync.Once
	w    *incident.World
	pb   *poolbotProc
	bin  string
	dir  string
	err  error
	// skip is why the world cannot run here (not in CI).
	skip string
}

func TestMain(m *testing.M) {
	// The test binary is the "systemctl" poolbot's local executor runs.
	site.Main()
	code := m.Run()
	if shared.pb != nil {
		shared.pb.stop()
	}
	if shared.w != nil {
		shared.w.Close()
	}
	if shared.dir != "" && code == 0 {
		os.RemoveAll(shared.dir)
	} else if shared.dir != "" {
		fmt.Fprintf(os.Stderr, "incident world kept in %s\n", shared.dir)
	}
	os.Exit(code)
}

// world starts the world and poolbot once; every story uses them in turn.
func world(t *testing.T) *incident.World {
	t.Helper()
	shared.once.Do(func() {
		if err := incident.Check(); err != nil {
			if testenv.InCI() {
				shared.err = err
			} else {
				shared.skip = err.Error()
			}
			return
		}
		shared.dir, shared.err = os.MkdirTemp("", "poolbot-incident-")
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		began := time.Now()
		shared.w, shared.err = incident.Launch(ctx, shared.dir, incident.Options{
			// As before T422166: apus depooled in codfw, the registry
			// hosts (codfw) on eqiad's site.
			Pooled: map[string]bool{"eqiad": true, "codfw": false},
			Log:    func(f string, a ...any) { fmt.Fprintf(os.Stderr, "incident world: "+f+"\n", a...) },
		})
		if shared.err != nil {
			return
		}
		if shared.err = shared.w.WaitResolves(ctx, "eqiad", 30*time.Second); shared.err != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "incident world: up in %s\n", time.Since(began).Round(time.Millisecond))
		shared.bin, shared.err = buildPoolbot(ctx, shared.dir)
	})
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.w
}

// poolbot returns the running poolbot, with the procedure's DNS step on
// (dnsWait) or off: it restarts poolbot (same database) when the story
// wants the other one. It skips the story when this poolbot has no DNS
// step to turn on.
func poolbot(t *testing.T, w *incident.World, dnsWait bool) *poolbotProc {
	t.Helper()
	pb, err := switchPoolbot(w, dnsWait)
	if errors.Is(err, errNoDNSStep) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pb
}

// anyPoolbot is poolbot with the DNS step if it has one, else without.
func anyPoolbot(t *testing.T, w *incident.World) *poolbotProc {
	t.Helper()
	pb, err := switchPoolbot(w, true)
	if errors.Is(err, errNoDNSStep) {
		pb, err = switchPoolbot(w, false)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pb
}

func switchPoolbot(w *incident.World, dnsWait bool) (*poolbotProc, error) {
	if shared.pb != nil && shared.pb.dnsWait == dnsWait {
		return shared.pb, nil
	}
	if shared.pb != nil {
		shared.pb.stop()
		shared.pb = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pb, err := startPoolbot(ctx, w, shared.dir, shared.bin, dnsWait)
	if err != nil {
		return nil, err
	}
	shared.pb = pb
	return pb, nil
}

// poolbotProc is the poolbot binary in console mode as operator alice.
type poolbotProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testenv.SyncBuffer
	done  chan struct{}
	// GlobalLock is scap's global lock file, the deploy block.
	GlobalLock string
	dnsWait    bool
}

func buildPoolbot(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "poolbot")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "poolbot/cmd/poolbot").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build poolbot: %v\n%s", err, out)
	}
	return bin, nil
}

// errNoDNSStep: this poolbot has no procedure DNS step to turn on.
var errNoDNSStep = errors.New("this poolbot has no DNS step (services.<name>.dns): without it a restart can come before the host's resolver follows, which story 3 shows")

func startPoolbot(ctx context.Context, w *incident.World, dir, bin string, dnsWait bool) (*poolbotProc, error) {
	lockDir := filepath.Join(dir, "scap")
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	global, staging := filepath.Join(lockDir, "scap-global-lock"), filepath.Join(lockDir, "scap.srv_mediawiki-staging.lock")
	for _, f := range []string{global, staging} {
		if err := os.WriteFile(f, []byte("{}"), 0o666); err != nil {
			return nil, err
		}
	}
	cfg := filepath.Join(dir, fmt.Sprintf("poolbot-dns-%t.yaml", dnsWait))
	if err := os.WriteFile(cfg, []byte(poolbotConfig(w, dir, global, staging, dnsWait)), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "check-config", cfg).CombinedOutput(); err != nil {
		if dnsWait && strings.Contains(string(out), "dns") {
			return nil, fmt.Errorf("%w: check-config: %s", errNoDNSStep, out)
		}
		return nil, fmt.Errorf("check-config: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "console", "-config", cfg, "-as", "alice")
	cmd.Env = append(os.Environ(), site.EnvCtl+"="+w.Systemctl.URL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p := &poolbotProc{cmd: cmd, stdin: stdin, out: &testenv.SyncBuffer{}, done: make(chan struct{}), GlobalLock: global, dnsWait: dnsWait}
	cmd.Stdout = p.out
	logs, err := os.Create(filepath.Join(dir, "poolbot.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); logs.Close(); close(p.done) }()
	return p, nil
}

// poolbotConfig is poolbot's config for the world: the registry hosts
// behind the balancer, the drift watch on, no calendar; with dnsWait the
// procedure's DNS step (wait for gdnsd, then the old TTL).
func poolbotConfig(w *incident.World, dir, global, staging string, dnsWait bool) string {
	var hosts, hostDCs []string
	for _, h := range w.Hosts {
		hosts = append(hosts, h.Addr)
		hostDCs = append(hostDCs, fmt.Sprintf("%q: %s", h.Addr, w.DC))
	}
	dnsSection := ""
	if dnsWait {
		dnsSection = fmt.Sprintf(`    dns:
      record: %s
      authoritative: [%s]
      datacenters:
        - {name: eqiad, client_subnet: 10.64.0.1}
        - {name: codfw, client_subnet: 10.192.0.1}
      poll_interval: 200ms
      converge_timeout: 30s
      host_check: false
      host_datacenters: {%s}
`, w.DNS.Record, strings.Join(w.DNS.Servers, ", "), strings.Join(hostDCs, ", "))
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
`, os.Args[0], strings.Join(hosts, ", "), pace, w.Port, w.DebugPort, w.LB.URL(), dnsSection,
		filepath.Join(dir, "poolbot.db"), global, staging, global, w.Etcd.ClientURL, driftDebounce)
}

// say types a line on poolbot's console.
func (p *poolbotProc) say(t *testing.T, line string) {
	t.Helper()
	t.Logf("alice> %s", line)
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		t.Fatal(err)
	}
}

// mark is where a story's transcript starts.
func (p *poolbotProc) mark() int { return len(p.out.String()) }

// wait waits for a console line after from containing every sub, and
// returns it.
func (p *poolbotProc) wait(t *testing.T, from int, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := p.find(from, subs...); ok {
			return l
		}
		select {
		case <-p.done:
			t.Fatalf("poolbot exited; waiting for %q", subs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console line with %q after %s; transcript:\n%s", subs, timeout, p.out.String()[from:])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *poolbotProc) find(from int, subs ...string) (string, bool) {
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

// transcript is the console output since from.
func (p *poolbotProc) transcript(from int) string { return p.out.String()[from:] }

func (p *poolbotProc) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
