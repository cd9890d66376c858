package procedure

import (
	"context"

	"poolbot"
)

// The order of a service's queue.
//
// One operation at a time per service: a running request, or one parked
// after a crash, holds back every other request until it ends. Otherwise
// requests go in the order they were made (FIFO), with one exception: a
// request held by the last-datacenter guard steps aside. Only a pool of
// another datacenter (a later request, or someone outside poolbot) can
// clear that guard, so it must not hold back the requests behind it, a
// pool among them. It keeps its place at the front and starts as soon as
// the guard clears and nothing else runs.

// active is the request that holds the service's queue: the running or
// parked one. ok is false when none does.
func active(queue []poolbot.Request) (poolbot.Request, bool) {
	for _, r := range queue {
		if r.Parked || r.State.Running() {
			return r, true
		}
	}
	return poolbot.Request{}, false
}

// stepsAside reports whether a waiting request with verdict v lets the
// requests behind it go first: it is held by the last-datacenter guard,
// which only a later pool can clear.
func (v verdict) stepsAside() bool {
	for _, b := range v.blockers {
		if b.gate == "conftool" && b.key == "last-pooled" {
			return true
		}
	}
	return false
}

// stepAsideNote is what the waiting notice of a request that steps aside
// adds, so that operators know the queue behind it is not stuck.
const stepAsideNote = "requests behind it go first meanwhile (a pool of another datacenter clears this)"

// aheadOf returns the request that r waits behind, by the order above,
// evaluated now; ok is false when r is next in line.
func (e *Engine) aheadOf(ctx context.Context, svc *Service, queue []poolbot.Request, r poolbot.Request) (poolbot.Request, bool) {
	if a, ok := active(queue); ok {
		if a.ID == r.ID {
			return poolbot.Request{}, false
		}
		return a, true
	}
	now := e.clock.Now()
	for _, a := range queue {
		if a.ID == r.ID {
			return poolbot.Request{}, false
		}
		if !e.evaluate(ctx, svc, a, now).stepsAside() {
			return a, true
		}
	}
	return poolbot.Request{}, false
}
