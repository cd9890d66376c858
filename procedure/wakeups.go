package procedure

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Wake-ups: how a worker is woken (Notify by the chat side, one-time
// scheduler jobs at the moment a window ends, the scap poll) and how it
// sleeps between host steps without missing a cancel.

// Notify wakes the worker of a service: its queue or the world changed.
// It never blocks.
func (e *Engine) Notify(service string) {
	if ch, ok := e.wake[service]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// NotifyAll wakes every worker (a scap run finished, the calendar
// changed).
func (e *Engine) NotifyAll() {
	for s := range e.wake {
		e.Notify(s)
	}
}

// timer waits d on the engine's clock, or until wake fires (nil: never) or
// ctx ends. ok is false when ctx ended; woken says wake fired.
func (e *Engine) timer(ctx context.Context, d time.Duration, wake <-chan struct{}) (woken, ok bool) {
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, false
	case <-t.Chan():
		return false, true
	case <-wake:
		return true, true
	}
}

// sleep waits d on the engine's clock, or until the service is woken (a
// cancel arrived) or ctx ends; false means ctx ended. The wake-up is put
// back for the worker loop.
func (e *Engine) sleep(ctx context.Context, service string, d time.Duration) bool {
	woken, ok := e.timer(ctx, d, e.wake[service])
	if woken {
		e.Notify(service)
	}
	return ok
}

// waitOrWake is sleep that consumes the wake-up: the caller re-reads the
// request, and the worker reads the queue again when the request is over.
func (e *Engine) waitOrWake(ctx context.Context, service string, d time.Duration) bool {
	_, ok := e.timer(ctx, d, e.wake[service])
	return ok
}

// sleepFor waits d on the engine's clock, whatever wakes the service;
// false when ctx ended.
func (e *Engine) sleepFor(ctx context.Context, d time.Duration) bool {
	_, ok := e.timer(ctx, d, nil)
	return ok
}

// wakeAt schedules a one-time wake-up of a service at t (replacing an
// earlier one with the same name).
func (e *Engine) wakeAt(service, name string, t time.Time) {
	if !t.After(e.clock.Now()) {
		e.Notify(service)
		return
	}
	tag := service + "/" + name
	e.sched.RemoveByTags(tag)
	_, err := e.sched.NewJob(gocron.OneTimeJob(gocron.OneTimeJobStartDateTime(t)),
		gocron.NewTask(func() { e.Notify(service) }),
		gocron.WithName("wake "+tag), gocron.WithTags(tag, service))
	if err != nil {
		e.log.Error("scheduling wake-up", "service", service, "at", t, "err", err)
	}
}

func (e *Engine) setScapWaiter(service string, waiting bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.scapWaiters[service] = waiting
}

// pollScap runs every ScapPoll: when a request waits on scap and scap is
// now clear, wake its service.
func (e *Engine) pollScap(ctx context.Context) {
	e.mu.Lock()
	var waiting []string
	for s, w := range e.scapWaiters {
		if w {
			waiting = append(waiting, s)
		}
	}
	e.mu.Unlock()
	if len(waiting) == 0 || e.deps.Scap == nil {
		return
	}
	act, _ := e.deps.Scap.Check(ctx)
	if act.Clear() {
		for _, s := range waiting {
			e.Notify(s)
		}
	}
}

// gocronLogger adapts slog to gocron's logger.
type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug("scheduler: "+msg, args...) }

func (g gocronLogger) Info(msg string, args ...any) { g.l.Debug("scheduler: "+msg, args...) }

func (g gocronLogger) Warn(msg string, args ...any) { g.l.Warn("scheduler: "+msg, args...) }

func (g gocronLogger) Error(msg string, args ...any) { g.l.Error("scheduler: "+msg, args...) }
