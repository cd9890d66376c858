package chat

import (
	"context"
	"fmt"
	"sync"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// Default output pacing for IRC: a burst of 4 lines, then one line every
// 1.2 s.
//
// Why these numbers: Solanum, Libera.Chat's ircd, parses a client's first
// 5 lines at once and then about one line a second (its
// client_flood_burst_max and flood_recalc); a client whose unparsed lines
// pile up is disconnected with "Excess Flood". InspIRCd's default connect
// class allows a penalty of 10 commands draining at one a second. Four
// lines, then 0.83 a second, stays under both with room for the few
// protocol lines the client library sends on its own (PONG, keepalive PING)
// and for JOIN, which InspIRCd charges double.
const (
	DefaultLinesPerSecond = 1 / 1.2
	DefaultBurst          = 4
)

// Pacer is a token bucket that every outgoing chat line passes through.
// Unlike a bare rate.Limiter it is fair: callers get their turn in the
// order they arrived, and a caller keeps its turn while it sends a batch,
// so the lines of one message are not interleaved with another's and lines
// leave in the order they were submitted.
//
// A Pacer is safe for concurrent use.
type Pacer struct {
	lim   *rate.Limiter
	clock clockwork.Clock

	mu      sync.Mutex
	busy    bool            // someone holds the turn
	waiters []chan struct{} // FIFO; closed to hand the turn over
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
// from concurrent callers leave in the order the callers arrived. It stops
// at the first error from send or from ctx.
func (p *Pacer) Pace(ctx context.Context, n int, send func(i int) error) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	for i := range n {
		if err := p.token(ctx); err != nil {
			return err
		}
		if err := send(i); err != nil {
			return err
		}
	}
	return nil
}

// token waits until the bucket has a token and takes it.
func (p *Pacer) token(ctx context.Context) error {
	now := p.clock.Now()
	r := p.lim.ReserveN(now, 1)
	if !r.OK() {
		return fmt.Errorf("pacer: a line can never be sent (burst %d)", p.lim.Burst())
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
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, w := range p.waiters {
			if w == ch {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
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
	if len(p.waiters) == 0 {
		p.busy = false
		return
	}
	next := p.waiters[0]
	p.waiters = p.waiters[1:]
	close(next)
}

// queued reports how many callers wait for their turn (for tests).
func (p *Pacer) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}
