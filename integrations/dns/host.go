package dns

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"poolbot"
)

// Runner runs one command on one host and returns its standard output; a
// non-nil error when it could not run or exited non-zero. The restart
// executors fit behind it (procedure adapts restart.Executor).
type Runner interface {
	Run(ctx context.Context, host string, argv []string) (stdout []byte, err error)
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context, host string, argv []string) ([]byte, error)

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, host string, argv []string) ([]byte, error) {
	return f(ctx, host, argv)
}

// HostAnswer is what one host resolved.
type HostAnswer struct {
	Host string
	// Addrs are the addresses getent printed, first seen first.
	Addrs []netip.Addr
	// Err is set when getent failed or printed something unparsable.
	Err error
	// Want is the expected address; Matched is true when Addrs is exactly
	// [Want].
	Want    netip.Addr
	Matched bool
	At      time.Time
}

// Problem says what is wrong, "" when it matched.
func (h HostAnswer) Problem(record string) string {
	switch {
	case h.Err != nil:
		return fmt.Sprintf("host %s: getent ahosts %s failed: %v", h.Host, record, h.Err)
	case len(h.Addrs) == 0:
		return fmt.Sprintf("host %s: %s does not resolve", h.Host, record)
	case !h.Matched:
		return fmt.Sprintf("host %s resolves %s to %s, want %s", h.Host, record, joinAddrs(h.Addrs), h.Want)
	}
	return ""
}

// HostArgv is the command run on a host.
func (c *Checker) HostArgv() []string {
	return []string{"getent", "ahosts", strings.TrimSuffix(c.cfg.Record, ".")}
}

// ResolveOnHost runs `getent ahosts <record>` on host once.
func (c *Checker) ResolveOnHost(ctx context.Context, r Runner, host string, want netip.Addr) HostAnswer {
	h := HostAnswer{Host: host, Want: want}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HostTimeout)
	defer cancel()
	out, err := r.Run(ctx, host, c.HostArgv())
	h.At = c.clock.Now()
	if err != nil {
		h.Err = err
		return h
	}
	h.Addrs, h.Err = ParseGetentAhosts(out)
	h.Matched = h.Err == nil && len(h.Addrs) == 1 && h.Addrs[0] == want
	return h
}

// HostError says a host did not resolve the expected address in time.
type HostError struct {
	Record  string
	Answer  HostAnswer
	Elapsed time.Duration
}

func (e *HostError) Error() string {
	return fmt.Sprintf("DNS: %s (waited %s)", e.Answer.Problem(e.Record), poolbot.FormatDuration(e.Elapsed))
}

// WaitHost repeats ResolveOnHost every PollInterval until the host
// resolves exactly want, bounded by HostTimeout; then it returns a
// *HostError with the last answer. ctx's end returns ctx's error.
func (c *Checker) WaitHost(ctx context.Context, r Runner, host string, want netip.Addr) (HostAnswer, error) {
	start := c.clock.Now()
	deadline := start.Add(c.cfg.HostTimeout)
	record := strings.TrimSuffix(c.cfg.Record, ".")
	for {
		h := c.ResolveOnHost(ctx, r, host, want)
		if h.Matched {
			return h, nil
		}
		if err := ctx.Err(); err != nil {
			return h, fmt.Errorf("DNS: waiting for host %s: %w", host, err)
		}
		now := c.clock.Now()
		if !now.Before(deadline) {
			return h, &HostError{Record: record, Answer: h, Elapsed: now.Sub(start)}
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("DNS: waiting for host %s: %w", host, ctx.Err())
		case <-c.clock.After(min(c.cfg.PollInterval, deadline.Sub(now))):
		}
	}
}

// ParseGetentAhosts reads `getent ahosts` output: lines of an address, a
// socket type (STREAM, DGRAM, RAW) and, on the first line of each address,
// the canonical name. It returns each address once, in order. Empty output
// is no address; a line that is not of that form is an error quoting it.
func ParseGetentAhosts(out []byte) ([]netip.Addr, error) {
	var addrs []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("getent output line %d is not \"<address> <socket type> [name]\": %q", n, clip(line))
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("getent output line %d: %q is not an address", n, clip(f[0]))
		}
		switch f[1] {
		case "STREAM", "DGRAM", "RAW":
		default:
			return nil, fmt.Errorf("getent output line %d: %q is not a socket type", n, clip(f[1]))
		}
		a = a.Unmap()
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("getent output: %w", err)
	}
	return addrs, nil
}

// clip shortens s for an error message and drops control characters.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
