package chat

import (
	"context"
	"fmt"
	"sync"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// FloodClass is the server's flood limit, stated as InspIRCd states it in
// a <connect> class, and the pacer's model of it.
//
// InspIRCd (3.x) keeps a penalty counter per client: each command adds its
// penalty (1000 for PRIVMSG and NOTICE, 2000 for JOIN), the counter drains
// by CommandRate once a second (in the server's once-a-second pass over its
// users), and a client whose counter reaches Threshold×1000 after the
// server has read its lines is quit with "Excess Flood" (or, with fakelag,
// delayed). So a client may have at most Threshold−1 commands' worth of
// penalty outstanding, and may send CommandRate/1000 commands a second for
// ever.
//
// The pacer is a token bucket that copies that counter, with two
// differences that are its margin, both stated here rather than hidden in
// a rounder rate:
//
//   - It drains continuously, the server in steps of a second, so the
//     server's counter can be up to one command above the pacer's; the
//     library's own unpaced lines (a keepalive PING every few minutes, a
//     NICK to regain the nick) add one more, and a second the server skips
//     under load (it drains once per pass, not once per second elapsed)
//     one more. ReservedCommands (3) of the Threshold−1 are kept free for
//     these: the burst is Threshold−1−ReservedCommands.
//   - It sends RateShare (92 %) of CommandRate, so what the counter lost to
//     a skipped second, or the unpaced lines added, drains again within
//     seconds instead of sitting at the top for the rest of a long burst.
//
// Under the class the tests run (Libera-like: threshold 10, commandrate
// 1000, the InspIRCd defaults) that is a burst of 6, then 0.92 lines a
// second: 200 lines in 211 s, 95 % of the 1 line a second the class allows.
type FloodClass struct {
	// Threshold is InspIRCd's threshold: the penalty, in commands, at which
	// the server acts.
	Threshold int `yaml:"threshold"`
	// CommandRate is InspIRCd's commandrate: penalty drained per second,
	// 1000 being one command a second.
	CommandRate int `yaml:"command_rate"`
}

// The pacer's margin on a FloodClass (see FloodClass).
const (
	ReservedCommands = 3
	RateShare        = 0.92
)

// JoinCost is the penalty of a JOIN in commands (InspIRCd charges 2000).
const JoinCost = 2

// DefaultFloodClass is the class poolbot's tests run under: InspIRCd's
// default connect class, about as strict as Libera.Chat's (Solanum parses
// a burst of 5 lines, then about one a second).
func DefaultFloodClass() FloodClass { return FloodClass{Threshold: 10, CommandRate: 1000} }

// Validate reports a class the pacer cannot keep under.
func (f FloodClass) Validate() error {
	if f.Threshold < JoinCost+1+ReservedCommands {
		return fmt.Errorf("threshold %d: at least %d (a JOIN costs %d, %d are held in reserve)",
			f.Threshold, JoinCost+1+ReservedCommands, JoinCost, ReservedCommands)
	}
	if f.CommandRate < 1 {
		return fmt.Errorf("command_rate %d: must be positive (1000 = one command a second)", f.CommandRate)
	}
	return nil
}

// Pacing is the pacer's rate (lines a second) and burst for the class.
func (f FloodClass) Pacing() (linesPerSecond float64, burst int) {
	return float64(f.CommandRate) / 1000 * RateShare, f.Threshold - 1 - ReservedCommands
}

// Priority is an outgoing line's class in the pacer's queue: a lower
// value goes first. Within a class, callers go in the order they came.
type Priority int

const (
	// PrioritySAL is for SAL lines: the record of what was done comes
	// before anything said about it.
	PrioritySAL Priority = iota
	// PriorityOperator is for replies to operators (and notices about
	// their requests): an operator is never kept waiting behind someone
	// else's flood of commands.
	PriorityOperator
	// PriorityOther is everything else, and the default.
	PriorityOther
	numPriorities
)

type priorityKey struct{}

// WithPriority returns ctx carrying p for the lines sent under it.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityFrom is ctx's priority (PriorityOther when none was set).
func PriorityFrom(ctx context.Context) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok && p >= 0 && p < numPriorities {
		return p
	}
	return PriorityOther
}

// Pacer is a token bucket that every outgoing chat line passes through.
// Unlike a bare rate.Limiter it keeps order: callers get their turn by
// priority (PriorityFrom their ctx), and within a priority in the order
// they arrived; a caller keeps its turn while it sends a batch, so the
// lines of one message are not interleaved with another's.
//
// A Pacer is safe for concurrent use.
type Pacer struct {
	lim   *rate.Limiter
	clock clockwork.Clock

	mu      sync.Mutex
	busy    bool                           // someone holds the turn
	waiters [numPriorities][]chan struct{} // FIFO per priority; closed to hand the turn over
}

// NewPacer returns a Pacer allowing burst lines at once and linesPerSecond
// after that. A nil clock means the real clock.
func NewPacer(linesPerSecond float64, burst int, clock clockwork.Clock) *Pacer {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if burst < 1 {
		burst = 1
	}
	return &Pacer{lim: rate.NewLimiter(rate.Limit(linesPerSecond), burst), clock: clock}
}

// Wait blocks until it is the caller's turn and a line may be sent. Callers
// return in the order they called. Use Pace when the send itself must also
// keep that order.
func (p *Pacer) Wait(ctx context.Context) error {
	return p.Pace(ctx, 1, func(int) error { return nil })
}

// Pace sends n lines: it waits for the caller's turn, then for each line i
// waits for a token and calls send(i), still holding the turn, so lines
// from concurrent callers of one priority leave in the order the callers
// arrived. It stops at the first error from send or from ctx.
func (p *Pacer) Pace(ctx context.Context, n int, send func(i int) error) error {
	return p.PaceCost(ctx, 1, n, send)
}

// PaceCost is Pace for commands that cost the server cost commands'
// worth of penalty each (JoinCost for JOIN).
func (p *Pacer) PaceCost(ctx context.Context, cost, n int, send func(i int) error) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	for i := range n {
		if err := p.token(ctx, cost); err != nil {
			return err
		}
		if err := send(i); err != nil {
			return err
		}
	}
	return nil
}

// token waits until the bucket has cost tokens and takes them.
func (p *Pacer) token(ctx context.Context, cost int) error {
	now := p.clock.Now()
	r := p.lim.ReserveN(now, cost)
	if !r.OK() {
		return fmt.Errorf("pacer: a line of cost %d can never be sent (burst %d)", cost, p.lim.Burst())
	}
	d := r.DelayFrom(now)
	if err := ctx.Err(); err != nil {
		r.CancelAt(now)
		return err
	}
	if d <= 0 {
		return nil
	}
	t := p.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case <-ctx.Done():
		r.CancelAt(p.clock.Now())
		return ctx.Err()
	}
}

func (p *Pacer) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if !p.busy {
		p.busy = true
		p.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	prio := PriorityFrom(ctx)
	p.waiters[prio] = append(p.waiters[prio], ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, w := range p.waiters[prio] {
			if w == ch {
				p.waiters[prio] = append(p.waiters[prio][:i], p.waiters[prio][i+1:]...)
				p.mu.Unlock()
				return ctx.Err()
			}
		}
		p.mu.Unlock()
		// The turn was handed to us just as ctx ended: pass it on.
		p.release()
		return ctx.Err()
	}
}

func (p *Pacer) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for prio := range p.waiters {
		if q := p.waiters[prio]; len(q) > 0 {
			p.waiters[prio] = q[1:]
			close(q[0])
			return
		}
	}
	p.busy = false
}

// queued reports how many callers wait for their turn (for tests).
func (p *Pacer) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.waiters {
		n += len(q)
	}
	return n
}
