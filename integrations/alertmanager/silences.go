package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
)

// CreatedBy is the createdBy of every silence poolbot makes.
const CreatedBy = "poolbot"

// maxAnswerBytes bounds what is read from one answer.
const maxAnswerBytes = 1 << 20

// ErrUnavailable is wrapped by every error where no Alertmanager answered
// (connection refused, timeout): the caller applies fail_closed.
var ErrUnavailable = errors.New("no Alertmanager reachable")

// ErrNotFound is wrapped when Alertmanager does not know a silence id.
var ErrNotFound = errors.New("silence not found")

// Silence states as API v2 reports them.
const (
	StatePending = "pending"
	StateActive  = "active"
	StateExpired = "expired"
)

// Silence is a silence as Alertmanager stores it.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	Status    struct {
		State string `json:"state"`
	} `json:"status"`
}

// State is Status.State.
func (s Silence) State() string { return s.Status.State }

// Options are the client's collaborators.
type Options struct {
	Clock  clockwork.Clock // default real
	Logger *slog.Logger    // default discard
	// HTTPClient replaces the default transport (tests, TLS settings).
	HTTPClient *http.Client
}

// Client creates and removes silences. It is safe for concurrent use.
type Client struct {
	bases   []*url.URL
	timeout time.Duration
	margin  time.Duration
	http    *http.Client
	clock   clockwork.Clock
	log     *slog.Logger
}

// New builds a client for cfg, which must be valid and enabled.
func New(cfg Config, o Options) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("alertmanager.urls: empty (silencing is off)")
	}
	c := &Client{timeout: cfg.TimeoutOrDefault(), margin: cfg.MarginOrDefault(), http: o.HTTPClient, clock: o.Clock, log: o.Logger}
	for _, raw := range cfg.URLs {
		u, _ := url.Parse(raw) // validated
		u.Path = strings.TrimRight(u.Path, "/")
		c.bases = append(c.bases, u)
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// Alertmanager is internal: never through an http_proxy from the
		// environment.
		tr.Proxy = nil
		c.http = &http.Client{Transport: tr}
	}
	if c.clock == nil {
		c.clock = clockwork.NewRealClock()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "alertmanager")
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Created is a silence poolbot made: what the host step stores so that a
// crash, cancel or failure can remove it or report it with its expiry.
type Created struct {
	ID     string
	Host   string
	EndsAt time.Time
}

// SilenceHost silences host's alerts from now for perHostTimeout plus the
// configured margin, with spicerack's matchers, reason.String() as comment
// and createdBy poolbot.
func (c *Client) SilenceHost(ctx context.Context, host string, perHostTimeout time.Duration, reason Reason) (Created, error) {
	matchers, err := HostMatchers(host)
	if err != nil {
		return Created{}, fmt.Errorf("alertmanager: silence %s: %w", host, err)
	}
	if err := reason.Validate(); err != nil {
		return Created{}, fmt.Errorf("alertmanager: silence %s: %w", host, err)
	}
	d := perHostTimeout + c.margin
	if perHostTimeout <= 0 || d > MaxDuration {
		return Created{}, fmt.Errorf("alertmanager: silence %s: duration %s (per-host timeout %s + margin %s) must be positive and at most %s", host, d, perHostTimeout, c.margin, MaxDuration)
	}
	start := c.clock.Now().UTC()
	id, err := c.Create(ctx, matchers, start, start.Add(d), reason.String())
	if err != nil {
		return Created{}, fmt.Errorf("alertmanager: silence %s: %w", host, err)
	}
	c.log.Info("silenced host", "host", host, "silence_id", id, "ends_at", start.Add(d))
	return Created{ID: id, Host: host, EndsAt: start.Add(d)}, nil
}

// postSilence is the body of POST /api/v2/silences.
type postSilence struct {
	Matchers  []Matcher `json:"matchers"`
	StartsAt  string    `json:"startsAt"`
	EndsAt    string    `json:"endsAt"`
	Comment   string    `json:"comment"`
	CreatedBy string    `json:"createdBy"`
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Create posts a silence with createdBy poolbot and returns its id.
func (c *Client) Create(ctx context.Context, matchers []Matcher, startsAt, endsAt time.Time, comment string) (string, error) {
	if len(matchers) == 0 {
		return "", errors.New("create silence: no matchers")
	}
	if !endsAt.After(startsAt) {
		return "", fmt.Errorf("create silence: ends %s, not after its start %s", endsAt, startsAt)
	}
	body, err := json.Marshal(postSilence{
		Matchers:  matchers,
		StartsAt:  startsAt.UTC().Format(time.RFC3339Nano),
		EndsAt:    endsAt.UTC().Format(time.RFC3339Nano),
		Comment:   comment,
		CreatedBy: CreatedBy,
	})
	if err != nil {
		return "", fmt.Errorf("create silence: %w", err)
	}
	status, answer, err := c.do(ctx, http.MethodPost, "/api/v2/silences", body)
	if err != nil {
		return "", fmt.Errorf("create silence: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("create silence: %w", httpError(status, answer))
	}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return "", fmt.Errorf("create silence: malformed answer %s: %w", quote(answer), err)
	}
	if !uuidPattern.MatchString(out.SilenceID) {
		return "", fmt.Errorf("create silence: answer %s carries no silence id", quote(answer))
	}
	return out.SilenceID, nil
}

// Delete expires the silence id. A silence that already expired counts as
// deleted; one Alertmanager does not know wraps ErrNotFound.
func (c *Client) Delete(ctx context.Context, id string) error {
	if !uuidPattern.MatchString(id) {
		return fmt.Errorf("delete silence: %q is not a silence id", id)
	}
	status, answer, err := c.do(ctx, http.MethodDelete, "/api/v2/silence/"+id, nil)
	if err != nil {
		return fmt.Errorf("delete silence %s: %w", id, err)
	}
	switch {
	case status == http.StatusOK:
		c.log.Info("deleted silence", "silence_id", id)
		return nil
	case status == http.StatusNotFound:
		return fmt.Errorf("delete silence %s: %w", id, ErrNotFound)
	case status == http.StatusInternalServerError && bytes.Contains(answer, []byte("already expired")):
		// Newer Alertmanagers answer 500 here; spicerack treats it as done.
		return nil
	case status == http.StatusInternalServerError && bytes.Contains(answer, []byte("not found")):
		return fmt.Errorf("delete silence %s: %w", id, ErrNotFound)
	}
	return fmt.Errorf("delete silence %s: %w", id, httpError(status, answer))
}

// Get reads the silence id.
func (c *Client) Get(ctx context.Context, id string) (Silence, error) {
	if !uuidPattern.MatchString(id) {
		return Silence{}, fmt.Errorf("get silence: %q is not a silence id", id)
	}
	status, answer, err := c.do(ctx, http.MethodGet, "/api/v2/silence/"+id, nil)
	if err != nil {
		return Silence{}, fmt.Errorf("get silence %s: %w", id, err)
	}
	if status == http.StatusNotFound {
		return Silence{}, fmt.Errorf("get silence %s: %w", id, ErrNotFound)
	}
	if status != http.StatusOK {
		return Silence{}, fmt.Errorf("get silence %s: %w", id, httpError(status, answer))
	}
	var s Silence
	if err := json.Unmarshal(answer, &s); err != nil {
		return Silence{}, fmt.Errorf("get silence %s: malformed answer %s: %w", id, quote(answer), err)
	}
	if s.ID != id {
		return Silence{}, fmt.Errorf("get silence %s: answer is about silence %q", id, s.ID)
	}
	switch s.State() {
	case StatePending, StateActive, StateExpired:
	default:
		return Silence{}, fmt.Errorf("get silence %s: unknown state %q", id, s.State())
	}
	return s, nil
}

// do sends one request to each Alertmanager in turn until one answers with
// anything but a network error. An HTTP error answer is final (no retry on
// 500, like spicerack).
func (c *Client) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var errs []error
	for _, base := range c.bases {
		status, answer, err := c.doOne(ctx, base, method, path, body)
		if err == nil {
			return status, answer, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", base.Host, err))
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("alertmanager unreachable, trying the next one", "alertmanager", base.Host, "err", err)
	}
	return 0, nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

func (c *Client) doOne(ctx context.Context, base *url.URL, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *base
	u.Path = base.Path + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading answer: %w", err)
	}
	if len(answer) > maxAnswerBytes {
		return resp.StatusCode, nil, fmt.Errorf("answer larger than %d bytes", maxAnswerBytes)
	}
	return resp.StatusCode, answer, nil
}

// httpError describes an error answer: API v2 errors are
// {"code":612,"message":"..."} or a bare JSON string.
func httpError(status int, answer []byte) error {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(answer, &e) == nil && e.Message != "" {
		return fmt.Errorf("Alertmanager answered HTTP %d: %s", status, oneLine(e.Message))
	}
	var s string
	if json.Unmarshal(answer, &s) == nil && s != "" {
		return fmt.Errorf("Alertmanager answered HTTP %d: %s", status, oneLine(s))
	}
	return fmt.Errorf("Alertmanager answered HTTP %d: %s", status, quote(answer))
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func quote(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q…", b[:200])
	}
	return fmt.Sprintf("%q", b)
}

// RemoveAll deletes the silences a host step stored (after a crash, a
// cancel or a failure). It tries every one and returns those it could not
// delete, for the caller to report with their expiry; a silence
// Alertmanager no longer knows or that already expired counts as removed.
func (c *Client) RemoveAll(ctx context.Context, silences []Created) (left []Created, err error) {
	var errs []error
	for _, s := range silences {
		derr := c.Delete(ctx, s.ID)
		if derr == nil || errors.Is(derr, ErrNotFound) {
			continue
		}
		left = append(left, s)
		errs = append(errs, fmt.Errorf("%s (%s, expires %s): %w", s.Host, s.ID, s.EndsAt.UTC().Format(time.RFC3339), derr))
	}
	return left, errors.Join(errs...)
}
