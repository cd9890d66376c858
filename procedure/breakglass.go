package procedure

import (
	"context"
	"fmt"
	"sync"
	"time"

	"poolbot"
	"poolbot/integrations/scap"
)

// The deployers' break-glass: `scap lock --unlock-all <reason>` asks the
// holder of scap's global lock to let go, through files in /tmp
// (reference §3). While poolbot holds the deploy block it watches for
// that signal. When it fires poolbot acknowledges it, releases the block
// at once (the deployer's scap is waiting for it), says so in the channel
// and in SAL, lets the host in progress finish (half-restarted units are
// worse), and then PARKS the request before the next host or the conftool
// change: it does not take the block again for that request until an
// operator says !resume (or ends it with !cancel). Parking rather than
// failing keeps the stored progress, so !resume continues where it
// stopped, and nothing is repeated.

// UnlockWatcher notices `scap lock --unlock-all` (*scap.UnlockWatcher).
type UnlockWatcher interface {
	Watch(ctx context.Context, since time.Time) (scap.UnlockRequest, error)
}

// breakGlass watches one hold of the deploy block.
type breakGlass struct {
	stop context.CancelFunc
	done chan struct{}

	mu  sync.Mutex
	req *scap.UnlockRequest
}

// firedRequest is the unlock request that broke the block, if any.
func (b *breakGlass) firedRequest() (scap.UnlockRequest, bool) {
	if b == nil {
		return scap.UnlockRequest{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.req == nil {
		return scap.UnlockRequest{}, false
	}
	return *b.req, true
}

// end stops the watch and waits for it.
func (b *breakGlass) end() {
	if b == nil {
		return
	}
	b.stop()
	<-b.done
}

// onceRelease makes a deploy block release idempotent: the break-glass
// releases the block early, and the end of the request must not release
// it again.
func onceRelease(release scap.Release) scap.Release {
	var once sync.Once
	var err error
	return func(ctx context.Context) error {
		once.Do(func() { err = release(ctx) })
		return err
	}
}

// watchBreakGlass starts watching for `scap lock --unlock-all` while r
// holds the deploy block. It returns the release to use from now on (safe
// to call twice).
func (e *Engine) watchBreakGlass(ctx context.Context, r poolbot.Request, release scap.Release) (scap.Release, *breakGlass) {
	release = onceRelease(release)
	if e.deps.Unlocks == nil || e.cfg.DryRun {
		return release, nil
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b := &breakGlass{stop: stop, done: make(chan struct{})}
	since := e.clock.Now()
	e.mu.Lock()
	e.broken[r.ID] = b
	e.mu.Unlock()
	go func() {
		defer close(b.done)
		req, err := e.deps.Unlocks.Watch(wctx, since)
		if err != nil {
			return // the block was released first
		}
		b.mu.Lock()
		b.req = &req
		b.mu.Unlock()
		rctx := context.WithoutCancel(ctx)
		relErr := release(rctx)
		released := "poolbot released it"
		if relErr != nil {
			released = "poolbot could NOT release it (" + relErr.Error() + "): unlock by hand"
		}
		line := fmt.Sprintf("deploy block BROKEN by %s with scap lock --unlock-all (%s); %s; the request stops before its next step and waits for an operator's !resume %d",
			req.Releaser, req.Reason, released, int64(r.ID))
		e.logSAL(rctx, r, line)
		e.announce(rctx, toOperator(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s: %s", r.ID, r.Summary(), line)))
		e.Notify(r.Service)
	}()
	return release, b
}

// brokenGlass reports whether the deploy block of request id was broken
// by a deployer.
func (e *Engine) brokenGlass(id poolbot.RequestID) bool {
	e.mu.Lock()
	b := e.broken[id]
	e.mu.Unlock()
	_, fired := b.firedRequest()
	return fired
}

// forgetBreakGlass stops the watch of request id.
func (e *Engine) forgetBreakGlass(id poolbot.RequestID) {
	e.mu.Lock()
	b := e.broken[id]
	delete(e.broken, id)
	e.mu.Unlock()
	b.end()
}

// parkAfterBreakGlass parks r where it stopped: it holds no deploy block
// and waits for !resume or !cancel.
func (e *Engine) parkAfterBreakGlass(ctx context.Context, r poolbot.Request, req scap.UnlockRequest) {
	ctx = context.WithoutCancel(ctx)
	cur, err := e.deps.Store.Request(ctx, r.ID)
	if err != nil {
		e.log.Error("parking after break-glass", "request", r.ID, "err", err)
		return
	}
	why := fmt.Sprintf("parked at %s: the deploy block was broken by %s (scap lock --unlock-all: %s); deploys are NOT blocked; !resume %d to take it again and continue, or !cancel %d",
		cur.State, req.Releaser, req.Reason, int64(r.ID), int64(r.ID))
	err = e.transition(ctx, cur, cur.State, cur.State, func(n *poolbot.Request) { n.Parked, n.Step = true, why }, "parked", why)
	if err != nil {
		e.log.Error("parking after break-glass", "request", r.ID, "err", err)
		return
	}
	e.stopWindowWatch(r.ID)
	e.announce(ctx, toOperator(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s %s", r.ID, r.Summary(), why)))
}
