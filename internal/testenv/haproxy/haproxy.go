// Package haproxy runs a real HAProxy (Debian's haproxy) on loopback in
// front of the lab's registry hosts, standing in for LVS in front of
// docker-registry.discovery.wmnet.
//
// It balances every HTTP request on its own, round robin (HAProxy's HTTP
// mode picks a server per request, also on a client's keep-alive
// connection), so the POST, PATCH and PUT of one blob upload spread over
// the hosts as they do in production. A host is taken out of rotation, and
// put back, through HAProxy's runtime API on a unix socket (`set server
// <backend>/<server> state maint|ready`, `... weight N`); Pybal maps
// conftool node objects onto that, as pybal does for LVS.
package haproxy

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// Backend is the name of the one backend (and frontend) in the config.
const Backend = "registry"

// Server is one host behind the balancer.
type Server struct {
	// Name is the host's name in HAProxy (e.g. registry2004.codfw.wmnet);
	// letters, digits, '.', '-', '_' and ':' only.
	Name string
	// Addr is the host's registry, host:port.
	Addr string
}

// Options configure a balancer.
type Options struct {
	Servers []Server
	// Host is the loopback address to listen on (default 127.0.0.1);
	// Port the port, 0 for a free one.
	Host string
	Port int
	// Dir holds the config, the runtime socket and the log. Empty: a new
	// temporary directory (t.TempDir() under Start; removed by Close under
	// Launch).
	Dir string
}

// Balancer is a running haproxy.
type Balancer struct {
	// Addr is host:port of the frontend.
	Addr string
	// Socket is the runtime API's unix socket (level admin).
	Socket string
	// Dir holds haproxy.cfg.
	Dir string

	ownsDir bool
	cmd     *exec.Cmd
	out     *testenv.SyncBuffer
	exited  chan struct{}
}

var serverName = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

// Start launches haproxy, stopped when the test ends. It skips the test
// when haproxy is missing, and fails it under CI.
func Start(t testing.TB, opts Options) *Balancer {
	t.Helper()
	testenv.Need(t, "haproxy")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Launch(ctx, opts)
	if err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("haproxy output:\n%s", b.out.String())
		}
		b.Close()
	})
	return b
}

// Launch starts haproxy for programs that are not tests; the caller must
// Close it. It is killed if the caller dies.
func Launch(ctx context.Context, opts Options) (*Balancer, error) {
	bin, err := testenv.Lookup("haproxy")
	if err != nil {
		return nil, fmt.Errorf("haproxy: %w (Debian package haproxy)", err)
	}
	if len(opts.Servers) == 0 {
		return nil, errors.New("haproxy: no servers")
	}
	seen := map[string]bool{}
	for _, s := range opts.Servers {
		if !serverName.MatchString(s.Name) || seen[s.Name] {
			return nil, fmt.Errorf("haproxy: bad or repeated server name %q", s.Name)
		}
		seen[s.Name] = true
		if _, _, err := net.SplitHostPort(s.Addr); err != nil || strings.ContainsAny(s.Addr, " \t\r\n#") {
			return nil, fmt.Errorf("haproxy: server %s: bad address %q", s.Name, s.Addr)
		}
	}
	b := &Balancer{Dir: opts.Dir, out: &testenv.SyncBuffer{}}
	if b.Dir == "" {
		if b.Dir, err = os.MkdirTemp("", "poolbot-haproxy-"); err != nil {
			return nil, fmt.Errorf("haproxy: %w", err)
		}
		b.ownsDir = true
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	b.Socket = filepath.Join(b.Dir, "admin.sock")
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	for range attempts {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(host); err != nil {
				b.Close()
				return nil, err
			}
		}
		b.Addr = net.JoinHostPort(host, strconv.Itoa(port))
		cfg := filepath.Join(b.Dir, "haproxy.cfg")
		if err = os.WriteFile(cfg, []byte(b.config(opts.Servers)), 0o644); err != nil {
			b.Close()
			return nil, fmt.Errorf("haproxy: %w", err)
		}
		if err = b.start(ctx, bin, cfg); err == nil {
			return b, nil
		}
		if !strings.Contains(err.Error(), "Address already in use") && !strings.Contains(err.Error(), "cannot bind") {
			break
		}
	}
	b.Close()
	return nil, err
}

// config is haproxy.cfg. Timeouts are long enough for a layer upload on a
// busy machine; `http-reuse never` keeps each request's server connection
// its own, so the server a request reaches is the one the balancer chose.
func (b *Balancer) config(servers []Server) string {
	var s strings.Builder
	fmt.Fprintf(&s, `global
  stats socket %s mode 600 level admin
  maxconn 512
defaults
  mode http
  timeout connect 2s
  timeout client 5m
  timeout server 5m
  timeout http-request 30s
  http-reuse never
frontend %s
  bind %s
  default_backend %s
backend %s
  balance roundrobin
`, b.Socket, Backend, b.Addr, Backend, Backend)
	for _, srv := range servers {
		fmt.Fprintf(&s, "  server %s %s weight 1\n", srv.Name, srv.Addr)
	}
	return s.String()
}

func (b *Balancer) start(ctx context.Context, bin, cfg string) error {
	_ = os.Remove(b.Socket)
	// -db: stay in the foreground, no daemon; -W is not needed without reloads.
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Dir = b.Dir
	cmd.Stdout, cmd.Stderr = b.out, b.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("haproxy: start: %w", err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(b.exited)
	for {
		if err := testenv.WaitListening(ctx, b.Addr, 100*time.Millisecond); err == nil {
			if _, err := b.Command(ctx, "show info"); err == nil {
				return nil
			}
		}
		select {
		case <-b.exited:
			return fmt.Errorf("haproxy exited during startup: %s", b.out.String())
		case <-ctx.Done():
			b.kill()
			return fmt.Errorf("haproxy not ready on %s: %w: %s", b.Addr, ctx.Err(), b.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// URL is the frontend's base URL.
func (b *Balancer) URL() string { return "http://" + b.Addr }

// PID is haproxy's process id.
func (b *Balancer) PID() int { return b.cmd.Process.Pid }

// Command sends one runtime API command and returns the answer. HAProxy
// answers errors in text, so callers that change state check it.
func (b *Balancer) Command(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n;") {
		return "", fmt.Errorf("haproxy: command %q has a line break or ';'", cmd)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", b.Socket)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime api: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime api: %w", err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime api %q: %w", cmd, err)
	}
	return string(out), nil
}

// State is an administrative server state of the runtime API.
type State string

const (
	// Ready: in rotation.
	Ready State = "ready"
	// Maint: out of rotation; no new request reaches the server.
	Maint State = "maint"
	// Drain: only requests bound to it by persistence (none here).
	Drain State = "drain"
)

// SetState sets server's administrative state.
func (b *Balancer) SetState(ctx context.Context, server string, st State) error {
	if st != Ready && st != Maint && st != Drain {
		return fmt.Errorf("haproxy: unknown state %q", st)
	}
	return b.set(ctx, server, "state "+string(st))
}

// SetWeight sets server's weight (0-256; 0 takes it out of rotation).
func (b *Balancer) SetWeight(ctx context.Context, server string, weight int) error {
	if weight < 0 || weight > 256 {
		return fmt.Errorf("haproxy: weight %d out of 0-256", weight)
	}
	return b.set(ctx, server, "weight "+strconv.Itoa(weight))
}

func (b *Balancer) set(ctx context.Context, server, what string) error {
	if !serverName.MatchString(server) {
		return fmt.Errorf("haproxy: bad server name %q", server)
	}
	out, err := b.Command(ctx, "set server "+Backend+"/"+server+" "+what)
	if err != nil {
		return err
	}
	// Success is an empty answer; anything else is HAProxy's error text.
	if msg := strings.TrimSpace(out); msg != "" {
		return fmt.Errorf("haproxy: set server %s %s: %s", server, what, msg)
	}
	return nil
}

// ServerStat is a server's line of `show stat`.
type ServerStat struct {
	Name string
	// Status is e.g. "UP", "MAINT", "DRAIN", "no check" when checks are off.
	Status string
	Weight int
	// Requests is the number of HTTP requests sent to it (req_tot), or of
	// sessions (stot) when the former is empty.
	Requests int64
}

// Stats returns the backend's servers as `show stat` reports them.
func (b *Balancer) Stats(ctx context.Context) (map[string]ServerStat, error) {
	out, err := b.Command(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bufio.NewReader(strings.NewReader(strings.TrimPrefix(out, "# "))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("haproxy show stat: %v: %q", err, out)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, need := range []string{"pxname", "svname", "status", "weight", "stot", "req_tot"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("haproxy show stat: no %s column", need)
		}
	}
	stats := map[string]ServerStat{}
	for _, row := range rows[1:] {
		if len(row) < len(rows[0])-1 || row[col["pxname"]] != Backend {
			continue
		}
		name := row[col["svname"]]
		if name == "BACKEND" || name == "FRONTEND" {
			continue
		}
		w, _ := strconv.Atoi(row[col["weight"]])
		n, err := strconv.ParseInt(row[col["req_tot"]], 10, 64)
		if err != nil {
			n, _ = strconv.ParseInt(row[col["stot"]], 10, 64)
		}
		stats[name] = ServerStat{Name: name, Status: row[col["status"]], Weight: w, Requests: n}
	}
	return stats, nil
}

// Close stops haproxy and removes the directory Launch created.
func (b *Balancer) Close() {
	b.kill()
	if b.ownsDir {
		_ = os.RemoveAll(b.Dir)
	}
}

func (b *Balancer) kill() {
	if b.cmd == nil {
		return
	}
	select {
	case <-b.exited:
		return
	default:
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.exited
}

func freePort(host string) (int, error) {
	p, err := testenv.Port(host)
	if err != nil {
		return 0, fmt.Errorf("haproxy: free port: %w", err)
	}
	return p, nil
}
