package registry_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/registry"
	regtest "poolbot/internal/testenv/registry"
)

// target describes a test registry as the integration sees it.
func target(name string, ri *regtest.Instance) registry.Instance {
	return registry.Instance{Name: name, Host: "127.0.0.1", Port: ri.Port, DebugPort: ri.DebugPort}
}

// testConfig is a config with fast timeouts for loopback registries.
func testConfig() registry.Config {
	cfg := registry.DefaultConfig()
	cfg.Health.Timeout = 2 * time.Second
	cfg.Health.Interval = 100 * time.Millisecond
	cfg.Health.WaitTimeout = 15 * time.Second
	cfg.Probe.Timeout = 10 * time.Second
	return cfg
}

func newClient(t testing.TB, cfg registry.Config, opts registry.Options) *registry.Client {
	t.Helper()
	if opts.Transport == nil {
		opts.Transport = baseTransport()
	}
	c, err := registry.New(cfg, opts)
	if err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	return c
}

func baseTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DisableKeepAlives = true // as New's default transport
	return t
}

// reroute is an http.RoundTripper that can send chosen requests of a probe
// to another instance (a request reaching the other datacenter) and run a
// hook before a request goes out (a restart between protocol steps).
type reroute struct {
	base http.RoundTripper
	// to returns the host:port a request should go to instead, or "".
	to func(*http.Request) string
	// before runs before each request is sent.
	before func(*http.Request) error

	mu   sync.Mutex
	seen []string // "METHOD host" of every request, in order
}

func (rt *reroute) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt.before != nil {
		if err := rt.before(req); err != nil {
			return nil, err
		}
	}
	if rt.to != nil {
		if host := rt.to(req); host != "" {
			req = req.Clone(req.Context())
			req.URL.Host, req.Host = host, host
		}
	}
	rt.mu.Lock()
	rt.seen = append(rt.seen, req.Method+" "+req.URL.Host)
	rt.mu.Unlock()
	return rt.base.RoundTrip(req)
}

func (rt *reroute) requests() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]string(nil), rt.seen...)
}

// onMethod reroutes requests with method to addr.
func onMethod(method, addr string) func(*http.Request) string {
	return func(r *http.Request) string {
		if r.Method == method {
			return addr
		}
		return ""
	}
}

// patternReader yields a fixed, non-repeating-per-seed byte stream, so a test
// knows the probe blob (and its digest) in advance.
type patternReader struct{ next byte }

func (p *patternReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = p.next
		p.next = p.next*31 + 7
	}
	return len(b), nil
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// closedPort returns a loopback port nothing listens on (a moment ago).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func fakeClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(time.Date(2026, 3, 31, 12, 0, 0, 0, time.UTC))
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
