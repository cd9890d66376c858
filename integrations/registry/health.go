package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"poolbot"
)

// Endpoints a health check asks.
const (
	EndpointDebugHealth = "/debug/health"
	EndpointV2          = "/v2/"
)

// Health failure codes (besides CodeNetwork, CodeTimeout, CodeCanceled).
const (
	// HealthUnhealthy: /debug/health answered 503 with failing checks, or
	// /v2/ answered 503 UNAVAILABLE because of them.
	HealthUnhealthy = "unhealthy"
	// HealthBadStatus: a status other than the expected one.
	HealthBadStatus = "bad_status"
	// HealthBadBody: /debug/health answered 200 but not `{}`.
	HealthBadBody = "bad_body"
	// HealthNotRegistry: /v2/ answered 200 without
	// Docker-Distribution-API-Version: registry/2.0 — something else is on the port.
	HealthNotRegistry = "not_registry"
)

// apiVersionHeader is set by distribution on every /v2/ response.
const apiVersionHeader = "Docker-Distribution-Api-Version"

// HealthError says which instance, which endpoint and why.
type HealthError struct {
	Instance Instance
	// Endpoint is EndpointDebugHealth or EndpointV2.
	Endpoint string
	// Code is a Health* code or CodeNetwork/CodeTimeout/CodeCanceled.
	Code string
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// Checks are the failing checks /debug/health reported (name → error).
	Checks map[string]string
	// Registry errors from a /v2/ error body.
	Registry []RegistryError
	// Detail is a short excerpt of an unexpected body, or other context.
	Detail string
	// Err is the transport error, if any.
	Err error
}

func (e *HealthError) Error() string {
	var b strings.Builder
	port := e.Instance.Port
	if e.Endpoint == EndpointDebugHealth {
		port = e.Instance.DebugPort
	}
	fmt.Fprintf(&b, "registry %s: %s on port %d: %s", e.Instance, e.Endpoint, port, e.Code)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if len(e.Checks) > 0 {
		names := make([]string, 0, len(e.Checks))
		for name := range e.Checks {
			names = append(names, name)
		}
		slices.Sort(names)
		b.WriteString(": failing checks: ")
		for i, name := range names {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(name)
			if msg := e.Checks[name]; msg != "" {
				b.WriteString(": ")
				b.WriteString(truncateMiddle(oneLine(msg), maxDetail))
			}
		}
	}
	if len(e.Registry) > 0 {
		b.WriteString(": ")
		b.WriteString(summarizeErrors(e.Registry))
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *HealthError) Unwrap() error { return e.Err }

// Health checks one instance once: /debug/health on the debug port must be
// 200 `{}`, then GET /v2/ on the main port must answer the expected status
// (200 with the registry/2.0 API header by default). It returns nil or a
// *HealthError.
func (c *Client) Health(ctx context.Context, inst Instance) error {
	if err := inst.validate(); err != nil {
		return err
	}
	if err := c.checkDebugHealth(ctx, inst); err != nil {
		return err
	}
	return c.checkV2(ctx, inst)
}

func (c *Client) checkDebugHealth(ctx context.Context, inst Instance) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Health.Timeout)
	defer cancel()
	u := inst.DebugURL().JoinPath("debug", "health")
	herr := &HealthError{Instance: inst, Endpoint: EndpointDebugHealth}
	r, err := c.do(ctx, http.MethodGet, u, nil, nil, false, maxErrorBody)
	if err != nil {
		herr.Code, herr.Err = transportCode(ctx, err), err
		return herr
	}
	herr.Status = r.status
	body := bytes.TrimSpace(r.body)
	switch r.status {
	case http.StatusOK:
		if string(body) == "{}" {
			return nil
		}
		herr.Code, herr.Detail = HealthBadBody, "want {}, got "+excerpt(body)
	case http.StatusServiceUnavailable:
		herr.Code = HealthUnhealthy
		checks, err := parseChecks(body)
		if err != nil {
			herr.Detail = excerpt(body)
		} else {
			herr.Checks = checks
		}
	default:
		herr.Code, herr.Detail = HealthBadStatus, excerpt(body)
	}
	return herr
}

// parseChecks decodes the health package's failing-check map. Values are
// strings in distribution; anything else is kept as compact JSON.
func parseChecks(body []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, errors.New("no failing checks listed")
	}
	checks := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = detailText(v)
		}
		checks[k] = s
	}
	return checks, nil
}

func (c *Client) checkV2(ctx context.Context, inst Instance) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Health.Timeout)
	defer cancel()
	u := inst.BaseURL().JoinPath("v2") // JoinPath drops the trailing slash
	u.Path += "/"
	herr := &HealthError{Instance: inst, Endpoint: EndpointV2}
	r, err := c.do(ctx, http.MethodGet, u, nil, nil, true, maxErrorBody)
	if err != nil {
		herr.Code, herr.Err = transportCode(ctx, err), err
		return herr
	}
	herr.Status = r.status
	want := c.cfg.Health.V2ExpectStatus
	if r.status == want {
		if r.status == http.StatusOK && r.header.Get(apiVersionHeader) != "registry/2.0" {
			herr.Code = HealthNotRegistry
			herr.Detail = fmt.Sprintf("%s header is %q, want registry/2.0", apiVersionHeader, r.header.Get(apiVersionHeader))
			return herr
		}
		return nil
	}
	errs, perr := ParseErrors(r.body)
	herr.Registry = errs
	herr.Code = HealthBadStatus
	if r.status == http.StatusServiceUnavailable && classifyStatus(r.status, errs) == CodeUnavailable {
		herr.Code = HealthUnhealthy
	}
	if perr != nil {
		herr.Detail = excerpt(bytes.TrimSpace(r.body))
	}
	herr.Detail = strings.TrimPrefix(fmt.Sprintf("%s; want HTTP %d", herr.Detail, want), "; ")
	return herr
}

// excerpt quotes the start of an unexpected body for an error message.
func excerpt(body []byte) string {
	if len(body) == 0 {
		return "empty body"
	}
	return fmt.Sprintf("%q", truncateMiddle(string(body), maxDetail))
}

// WaitOptions tune WaitHealthy; zero values take the config's health.* values.
type WaitOptions struct {
	Interval    time.Duration
	Timeout     time.Duration
	Consecutive int
}

// WaitError is returned when an instance did not become healthy in time. It
// unwraps to the last check's error (usually a *HealthError).
type WaitError struct {
	Instance Instance
	Elapsed  time.Duration
	Checks   int
	// Streak is how many healthy answers in a row the last checks gave, of Want.
	Streak, Want int
	Last         error
	// Cause is why waiting ended early (context cancelled), or nil on timeout.
	Cause error
}

func (e *WaitError) Error() string {
	why := fmt.Sprintf("not healthy after %s (%d checks)", poolbot.FormatDuration(e.Elapsed), e.Checks)
	if e.Cause != nil {
		why = fmt.Sprintf("stopped waiting after %s (%d checks): %v", poolbot.FormatDuration(e.Elapsed), e.Checks, e.Cause)
	}
	if e.Streak > 0 || e.Last == nil {
		msg := fmt.Sprintf("registry %s: %s: only %d of %d consecutive healthy checks", e.Instance, why, e.Streak, e.Want)
		if e.Last != nil {
			msg += fmt.Sprintf("; last failure: %v", e.Last)
		}
		return msg
	}
	return fmt.Sprintf("registry %s: %s: last check: %v", e.Instance, why, e.Last)
}

func (e *WaitError) Unwrap() error { return e.Last }

// WaitHealthy polls Health every interval until it passes Consecutive times
// in a row, or until Timeout (measured on the client's clock) or ctx ends.
// On failure it returns a *WaitError that unwraps to the last check's error.
func (c *Client) WaitHealthy(ctx context.Context, inst Instance, opts WaitOptions) error {
	interval, timeout, want := opts.Interval, opts.Timeout, opts.Consecutive
	if interval <= 0 {
		interval = c.cfg.Health.Interval
	}
	if timeout <= 0 {
		timeout = c.cfg.Health.WaitTimeout
	}
	if want <= 0 {
		want = c.cfg.Health.Consecutive
	}
	start := c.clock.Now()
	deadline := start.Add(timeout)
	var last error
	streak, checks := 0, 0
	for {
		checks++
		err := c.Health(ctx, inst)
		if err == nil {
			streak++
			if streak >= want {
				c.log.Info("registry healthy", "instance", inst.String(), "checks", checks, "elapsed", c.sinceOn(start))
				return nil
			}
		} else {
			streak, last = 0, err
			c.log.Debug("registry not healthy yet", "instance", inst.String(), "err", err)
		}
		werr := &WaitError{Instance: inst, Checks: checks, Streak: streak, Want: want, Last: last}
		if ctx.Err() != nil {
			werr.Elapsed, werr.Cause = c.sinceOn(start), ctx.Err()
			return werr
		}
		remaining := deadline.Sub(c.clock.Now())
		if remaining <= 0 {
			werr.Elapsed = c.sinceOn(start)
			return werr
		}
		select {
		case <-ctx.Done():
			werr.Elapsed, werr.Cause = c.sinceOn(start), ctx.Err()
			return werr
		case <-c.clock.After(min(interval, remaining)):
		}
	}
}
