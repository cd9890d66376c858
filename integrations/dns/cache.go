package dns

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
)

// CacheWait is the wait for the recursors' cached answers to expire: a
// recursor may have fetched the old answer up to the moment the
// authoritative servers converged, and keeps it for at most the old TTL.
// Both fields are meant to be stored, so that a restarted poolbot resumes
// with the time left rather than from zero.
type CacheWait struct {
	// ConvergedAt is Report.At of the round that converged.
	ConvergedAt time.Time
	// TTL is the old TTL: the conftool ttl read before the write (the
	// answers the recursors may hold were given with it), or a larger
	// Report.MaxTTL.
	TTL time.Duration
}

// Until is when the last cached old answer expires.
func (w CacheWait) Until() time.Time { return w.ConvergedAt.Add(w.TTL) }

// Remaining is the time left at now, never negative.
func (w CacheWait) Remaining(now time.Time) time.Duration {
	return max(w.Until().Sub(now), 0)
}

// Line is the status line, e.g. "DNS: waiting 04m 12s for cached answers
// to expire; restarts start at 14:03:10 UTC".
func (w CacheWait) Line(now time.Time) string {
	return fmt.Sprintf("DNS: waiting %s for cached answers to expire; restarts start at %s",
		poolbot.FormatDuration(w.Remaining(now)), poolbot.FormatClock(w.Until(), now))
}

// Wait blocks on clock until the wait is over or ctx ends (then it
// returns ctx's error).
func (w CacheWait) Wait(ctx context.Context, clock clockwork.Clock) error {
	left := w.Remaining(clock.Now())
	if left <= 0 {
		return nil
	}
	t := clock.NewTimer(left)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("DNS: waiting for cached answers to expire: %w", ctx.Err())
	case <-t.Chan():
		return nil
	}
}

// Flush runs the configured flush commands in order ({record} replaced by
// the record), e.g. cumin running `rec_control wipe-cache` on the
// recursors. It stops at the first failure, whose error has the command
// and the tail of its output. It does nothing when none are configured.
func (c *Checker) Flush(ctx context.Context) error {
	for _, argv := range c.FlushArgv() {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("DNS: cache flush %q failed: %w: %s", strings.Join(argv, " "), err, tail(out, 300))
		}
	}
	return nil
}

// FlushArgv returns the flush commands with {record} replaced (for a
// dry-run to print).
func (c *Checker) FlushArgv() [][]string {
	var out [][]string
	for _, argv := range c.cfg.FlushCommands {
		a := make([]string, len(argv))
		for i, s := range argv {
			a[i] = strings.ReplaceAll(s, "{record}", strings.TrimSuffix(c.cfg.Record, "."))
		}
		out = append(out, a)
	}
	return out
}

// tail is the end of out as one printable line.
func tail(out []byte, n int) string {
	s := strings.TrimSpace(string(out))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// FlushError says a recursor still answered the old state right after the
// flush.
type FlushError struct {
	Report Report
}

func (e *FlushError) Error() string {
	probs := e.Report.Problems()
	more := ""
	if len(probs) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(probs)-1)
	}
	return fmt.Sprintf("DNS: cache flush did not take: %s%s", probs[0], more)
}

// FlushAndVerify runs Flush, then asks each datacenter's configured
// recursors once (recursion desired, no client subnet: a recursor answers
// as its own datacenter) and returns a *FlushError when one does not
// answer e's address for its datacenter. Call it after WaitConverged: a
// flushed recursor then fetches the new answer. The Report is empty when
// no recursors are configured.
func (c *Checker) FlushAndVerify(ctx context.Context, e Expectation) (Report, error) {
	if err := c.Flush(ctx); err != nil {
		return Report{}, err
	}
	r := Report{Record: c.cfg.Record, Expect: e}
	for _, dc := range c.cfg.Datacenters {
		for _, rec := range dc.Recursors {
			addr, _ := serverAddr(rec, 53) // validated
			qtype := typeA
			if e.Want(dc.Name).Is6() {
				qtype = typeAAAA
			}
			r.Answers = append(r.Answers, compare(c.query(ctx, addr, c.cfg.Record, qtype, netip.Prefix{}, true), e, dc.Name))
		}
	}
	r.At = c.clock.Now()
	if len(r.Answers) > 0 && !r.Converged() {
		return r, &FlushError{Report: r}
	}
	return r, nil
}
