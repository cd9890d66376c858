package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// Checker is what the restart procedure and the watch need from registries.
type Checker interface {
	// Health is one check of /debug/health and /v2/.
	Health(ctx context.Context, inst Instance) error
	// WaitHealthy polls Health until it passes opts.Consecutive times in a row
	// or opts.Timeout passes.
	WaitHealthy(ctx context.Context, inst Instance, opts WaitOptions) error
	// Probe pushes a blob and reads it back; repo "" means the configured one.
	Probe(ctx context.Context, inst Instance, repo string) ProbeResult
}

var _ Checker = (*Client)(nil)

// Instance is one registry instance on one host.
type Instance struct {
	// Name is the instance title, e.g. "restricted".
	Name string
	// Host is the registry host name or address.
	Host string
	// Port is the main (API) port, DebugPort the debug listener.
	Port      int
	DebugPort int
	// Scheme of the main port; "" means http.
	Scheme string
	// ProbeRepository overrides the configured probe repository.
	ProbeRepository string
}

// String names the instance for logs and chat: "restricted@host:5002".
func (i Instance) String() string {
	return i.Name + "@" + net.JoinHostPort(i.Host, strconv.Itoa(i.Port))
}

func (i Instance) validate() error {
	if i.Host == "" || strings.ContainsAny(i.Host, "/?#@ \t\r\n%") {
		return fmt.Errorf("registry %s: bad host %q", i.Name, i.Host)
	}
	if i.Port < 1 || i.Port > 65535 || i.DebugPort < 1 || i.DebugPort > 65535 {
		return fmt.Errorf("registry %s: bad port %d or debug port %d", i, i.Port, i.DebugPort)
	}
	if i.Scheme != "" && i.Scheme != "http" && i.Scheme != "https" {
		return fmt.Errorf("registry %s: bad scheme %q", i, i.Scheme)
	}
	return nil
}

// BaseURL is the main port's root, e.g. http://host:5002/.
func (i Instance) BaseURL() *url.URL {
	scheme := i.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(i.Host, strconv.Itoa(i.Port)), Path: "/"}
}

// DebugURL is the debug listener's root (always plain HTTP).
func (i Instance) DebugURL() *url.URL {
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(i.Host, strconv.Itoa(i.DebugPort)), Path: "/"}
}

// Options are the Client's collaborators; zero values are production defaults.
type Options struct {
	// Transport replaces the HTTP transport (tests reroute requests with it).
	Transport http.RoundTripper
	// Clock times polls and durations; nil is the real clock.
	Clock clockwork.Clock
	// Logger; nil discards.
	Logger *slog.Logger
	// Rand is the source of probe blob bytes; nil is crypto/rand.
	Rand io.Reader
}

// Client checks registry instances. It is safe for concurrent use.
type Client struct {
	cfg      Config
	http     *http.Client
	clock    clockwork.Clock
	log      *slog.Logger
	rand     io.Reader
	username string
	password string
}

// Config is the client's configuration with defaults filled in (the
// procedure reads probe.enabled and the instance list from it).
func (c *Client) Config() Config { return c.cfg }

// New builds a Client from a validated config. It reads auth.password
// and ca_file now, so a missing secret fails at startup, not mid-operation.
func New(cfg Config, opts Options) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg, clock: opts.Clock, log: opts.Logger, rand: opts.Rand}
	if c.clock == nil {
		c.clock = clockwork.NewRealClock()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	if cfg.Auth.Username != "" {
		pw, err := cfg.Auth.Password.Read()
		if err != nil {
			return nil, fmt.Errorf("registry.auth.password (%s): %w", cfg.Auth.Password, err)
		}
		c.username, c.password = cfg.Auth.Username, pw
	}
	rt := opts.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Registries are on the internal network: never go through a proxy
		// from the environment.
		t.Proxy = nil
		// A fresh connection per request: checks run seconds or minutes
		// apart and right after restarts, when a pooled connection would be
		// stale, and a check should prove the listener accepts now.
		t.DisableKeepAlives = true
		if cfg.CAFile != "" {
			pool, err := loadCAs(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("registry.ca_file: %w", err)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = t
	}
	c.http = &http.Client{Transport: rt}
	return c, nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

// response is what the checks keep of an HTTP response: the body is read
// (bounded) and closed right away, so no caller leaks a connection.
type response struct {
	status int
	header http.Header
	body   []byte
	// contentLength is the declared length (-1 unknown); for HEAD it is the
	// length a GET would return.
	contentLength int64
	url           *url.URL // the final request URL, for resolving Location
}

// do sends one request. Auth is added for the main port only (withAuth).
func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte, header http.Header, withAuth bool, maxBody int64) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", "poolbot-registry-check")
	if withAuth && c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, u.Redacted(), err)
	}
	// Drain a little more so the connection can be reused; give up beyond.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	return &response{status: resp.StatusCode, header: resp.Header, body: b, contentLength: resp.ContentLength, url: resp.Request.URL}, nil
}

// transportCode classifies an error from sending a request.
func transportCode(ctx context.Context, err error) string {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return CodeTimeout
		}
		return CodeCanceled
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return CodeTimeout
	}
	return CodeNetwork
}

// sinceOn measures with the injected clock.
func (c *Client) sinceOn(start time.Time) time.Duration { return c.clock.Since(start) }
