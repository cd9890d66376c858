package chat

import (
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// CommandLimit is how many commands one identity may give: a burst, then
// a steady rate. Every identity has its own bucket (see Identity).
//
// Why: every command is answered, and the answers share one paced output
// with the SAL lines and everyone else's answers. Fifty commands in one
// burst from one person queued 56 s of replies at the paced rate. Over its
// limit an identity is told once that it is rate-limited and then ignored
// until its bucket refills; what it sends meanwhile is counted, not
// answered or stored.
type CommandLimit struct {
	// Burst is how many commands may come back to back (default 5).
	Burst int `yaml:"burst"`
	// Every is the time one more command is allowed after the burst
	// (default 6s: 10 a minute).
	Every time.Duration `yaml:"every"`
}

// Defaults for CommandLimit.
const (
	DefaultCommandBurst = 5
	DefaultCommandEvery = 6 * time.Second
)

// WithDefaults fills in the zero fields.
func (c CommandLimit) WithDefaults() CommandLimit {
	if c.Burst == 0 {
		c.Burst = DefaultCommandBurst
	}
	if c.Every == 0 {
		c.Every = DefaultCommandEvery
	}
	return c
}

// Validate reports negative values.
func (c CommandLimit) Validate() error {
	if c.Burst < 0 {
		return fmt.Errorf("burst %d: must not be negative", c.Burst)
	}
	if c.Every < 0 {
		return fmt.Errorf("every %v: must not be negative", c.Every)
	}
	return nil
}

// Identity is who a command limit applies to: the verified account when
// there is one (a person's several nicks and connections share it), else
// the full IRC source nick!user@host, else the nick; prefixed with the
// network.
func Identity(m Message) string {
	switch {
	case m.Account != "":
		return m.Network + " account " + m.Account
	case m.Source != "":
		return m.Network + " " + m.Source
	}
	return m.Network + " nick " + m.Nick
}

// CommandLimiter applies a CommandLimit per identity. Safe for concurrent
// use.
type CommandLimiter struct {
	limit CommandLimit
	clock clockwork.Clock

	mu      sync.Mutex
	buckets map[string]*identityBucket
	limited uint64 // commands refused over the limit, ever
}

type identityBucket struct {
	lim  *rate.Limiter
	told bool      // told it is rate-limited since it was last allowed
	seen time.Time // last command
}

// limiterSweepAt is the number of identities above which idle ones (whose
// bucket has refilled) are forgotten, so strangers cannot grow the map
// without bound.
const limiterSweepAt = 1000

// NewCommandLimiter returns a limiter for limit (zero fields take the
// defaults). A nil clock is the real clock.
func NewCommandLimiter(limit CommandLimit, clock clockwork.Clock) *CommandLimiter {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &CommandLimiter{limit: limit.WithDefaults(), clock: clock, buckets: map[string]*identityBucket{}}
}

// Allow takes a command from identity. ok says it may run. When it may
// not, tell is true the first time since the identity was last allowed:
// answer that once (RateLimitedReply), then stay quiet.
func (l *CommandLimiter) Allow(identity string) (ok, tell bool) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[identity]
	if b == nil {
		if len(l.buckets) >= limiterSweepAt {
			l.sweep(now)
		}
		b = &identityBucket{lim: rate.NewLimiter(rate.Every(l.limit.Every), l.limit.Burst)}
		l.buckets[identity] = b
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		b.told = false
		return true, false
	}
	l.limited++
	tell = !b.told
	b.told = true
	return false, tell
}

// sweep forgets identities whose bucket is full again; l.mu held.
func (l *CommandLimiter) sweep(now time.Time) {
	refill := time.Duration(l.limit.Burst) * l.limit.Every
	for id, b := range l.buckets {
		if now.Sub(b.seen) >= refill {
			delete(l.buckets, id)
		}
	}
}

// Limited is how many commands were refused over the limit so far (the
// poolbot_commands_rate_limited_total counter).
func (l *CommandLimiter) Limited() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limited
}

// RateLimitedReply is the one answer an identity gets when it goes over
// its limit.
func (l *CommandLimiter) RateLimitedReply() string {
	return fmt.Sprintf("rate-limited: more than %d commands in a row; further commands are ignored, one more is allowed every %v",
		l.limit.Burst, l.limit.Every)
}
