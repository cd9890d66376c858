package procedure

import (
	"context"
	"errors"
	"fmt"
	"time"

	"poolbot"
	"poolbot/integrations/spicerack"
)

// spicerack's locks in etcd (reference §6): poolbot takes the lock of the
// cookbook sre.discovery.service-route (":rw", concurrency 1) while it
// changes conftool, so that a cookbook run and poolbot exclude each other,
// and checks the registry roll-restart cookbook's lock before restarts. A
// lock held by someone else is a gate naming its owner and expiry, with a
// wake-up at the expiry; a malformed value keeps the gate closed with an
// error naming the key.

// Locks takes and reads spicerack's locks (*spicerack.Locks).
type Locks interface {
	Acquire(ctx context.Context, spec spicerack.Spec) (spicerack.Lease, error)
	Release(ctx context.Context, lease spicerack.Lease) error
	Check(ctx context.Context, spec spicerack.Spec) error
}

// LockSpecs are the spicerack locks the procedure honours; a zero Spec is
// not used.
type LockSpecs struct {
	ServiceRoute    spicerack.Spec
	RegistryRestart spicerack.Spec
}

// lockPoll bounds the wait for a held lock whose expiry is far: a release
// by its holder is seen within it.
const lockPoll = 30 * time.Second

// lockBlocker turns a lock check into a gate blocker; ok is false when the
// lock is free.
func lockBlocker(err error) (b blocker, ok bool) {
	var held *spicerack.HeldError
	var bad *spicerack.MalformedError
	switch {
	case err == nil:
		return blocker{}, false
	case errors.As(err, &held):
		b = blocker{gate: "spicerack", key: held.Key, text: heldText(held)}
		b.key += "@" + held.Until().UTC().Format(time.RFC3339)
		b.clearsAt = held.Until()
		return b, true
	case errors.As(err, &bad):
		return blocker{gate: "spicerack", key: bad.Key + ":malformed",
			text: "gate closed: " + bad.Error() + " (fix or delete the key by hand)"}, true
	default:
		return blocker{gate: "spicerack", key: "unreadable", text: "spicerack locks unreadable (" + err.Error() + ")"}, true
	}
}

// heldText is what a notice says of a held lock: who and until when.
func heldText(h *spicerack.HeldError) string {
	who := ""
	for i, o := range h.Holders {
		if i > 0 {
			who += ", "
		}
		who += o.Owner
	}
	return fmt.Sprintf("spicerack lock %s held by %s until %s", h.Key, who, h.Until().UTC().Format("15:04:05 UTC"))
}

// lockGate adds the spicerack locks to a verdict: the service-route lock
// for requests that change the discovery record, the registry restart
// lock for every request. It is not skipped by !force: a cookbook run is
// changing the same things.
func (e *Engine) lockGate(ctx context.Context, r poolbot.Request, v *verdict) {
	if e.deps.Locks == nil {
		return
	}
	var specs []spicerack.Spec
	if _, switches := r.Action.Pooled(); switches && e.cfg.Locks.ServiceRoute.Name != "" {
		specs = append(specs, e.cfg.Locks.ServiceRoute)
	}
	if e.cfg.Locks.RegistryRestart.Name != "" {
		specs = append(specs, e.cfg.Locks.RegistryRestart)
	}
	for _, spec := range specs {
		if b, held := lockBlocker(e.deps.Locks.Check(ctx, spec)); held {
			v.blockers = append(v.blockers, b)
			if !b.clearsAt.IsZero() && (v.nextCheck.IsZero() || b.clearsAt.Before(v.nextCheck)) {
				// Wake up when the holder's lease expires.
				v.nextCheck = b.clearsAt.Add(time.Second)
			}
		}
	}
}

// withServiceRoute runs fn holding the service-route lock. A lock held by
// someone else is waited for (one notice naming the holder, a wake-up at
// its expiry); a malformed value or an unreadable etcd is an error. In
// dry-run mode no lock is written, as spicerack skips its locks.
func (e *Engine) withServiceRoute(ctx context.Context, r poolbot.Request, fn func() error) error {
	spec := e.cfg.Locks.ServiceRoute
	if e.deps.Locks == nil || spec.Name == "" || e.cfg.DryRun {
		return fn()
	}
	said := ""
	for {
		lease, err := e.deps.Locks.Acquire(ctx, spec)
		if err == nil {
			defer func() {
				if rerr := e.deps.Locks.Release(context.WithoutCancel(ctx), lease); rerr != nil {
					// It expires by its ttl, as spicerack's do.
					e.log.Warn("releasing spicerack lock", "key", spec.Key(), "err", rerr)
				}
			}()
			return fn()
		}
		var held *spicerack.HeldError
		if !errors.As(err, &held) {
			return fmt.Errorf("spicerack lock: %w", err)
		}
		if text := heldText(held); text != said {
			said = text
			e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s waits before changing conftool: %s", r.ID, r.Summary(), text)))
		}
		if !e.waitLock(ctx, r.Service, held.Until()) {
			return fmt.Errorf("stopped while waiting for %s", spec.Key())
		}
	}
}

// restartLockChecked says whether each host waits for the registry
// roll-restart cookbook's lock before it starts.
func (e *Engine) restartLockChecked() bool {
	return e.deps.Locks != nil && e.cfg.Locks.RegistryRestart.Name != ""
}

// waitRestartLock waits, before a host, while the registry roll-restart
// cookbook's lock is held. A malformed value or an unreadable etcd fails
// the request (the gate is closed; an operator looks). false with a nil
// error means ctx ended.
func (e *Engine) waitRestartLock(ctx context.Context, r poolbot.Request) (bool, error) {
	spec := e.cfg.Locks.RegistryRestart
	if !e.restartLockChecked() {
		return true, nil
	}
	said := ""
	for {
		err := e.deps.Locks.Check(ctx, spec)
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, nil
		}
		var held *spicerack.HeldError
		if !errors.As(err, &held) {
			return false, fmt.Errorf("spicerack lock: %w", err)
		}
		if text := heldText(held); text != said {
			said = text
			e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s waits before the next host: %s", r.ID, r.Summary(), text)))
		}
		if !e.waitLock(ctx, r.Service, held.Until()) {
			return false, nil
		}
	}
}

// waitLock sleeps until just after until (at most lockPoll), or a wake-up
// of the service; false when ctx ended.
func (e *Engine) waitLock(ctx context.Context, service string, until time.Time) bool {
	d := until.Sub(e.clock.Now()) + time.Second
	if d <= 0 || d > lockPoll {
		d = min(max(d, time.Second), lockPoll)
	}
	return e.sleep(ctx, service, d)
}
