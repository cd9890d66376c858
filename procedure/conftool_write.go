package procedure

import (
	"context"
	"errors"
	"fmt"
	"time"

	"poolbot"
	"poolbot/integrations/conftool"
)

// After a conftool write whose answer did not say what happened (etcd died
// after the write landed, the answer was lost on the way, a read-back
// failed), the procedure does not guess: it reads the object back until the
// state is known, for at most writeReadBackFor, every writeReadBackEvery.
// Each read tries every etcd endpoint (the client fails over). Then it
// continues when the object holds what was asked for, or fails with the
// state read in the END line. A shutdown meanwhile finishes this step
// first, like the write itself.
const (
	writeReadBackFor   = time.Minute
	writeReadBackEvery = 2 * time.Second
)

// errPooledUnknown: the pooled state could not be read back within
// writeReadBackFor.
var errPooledUnknown = errors.New("pooled state unknown")

// setPooled sets r's discovery record to want. The write is recorded as
// poolbot's own before it is made, so that the drift watch knows it
// whatever happens to its answer. It returns the state the object holds
// and, when the answer was not the write's, a note on how that state was
// learnt for the SAL line. An error means the object does not hold want
// (its text says what it holds, or that nobody could tell).
func (e *Engine) setPooled(ctx context.Context, r poolbot.Request, want bool) (conftool.State, string, error) {
	own := e.deps.OwnWrites
	if own != nil {
		own.Intend(r.Service, r.Datacenter, want)
	}
	st, werr := e.deps.Conftool.SetPooled(ctx, r.Service, r.Datacenter, want)
	if werr == nil {
		if own != nil {
			own.Record(r.Service, r.Datacenter, st)
		}
		return st, "", nil
	}
	if errors.Is(werr, conftool.ErrNotFound) {
		// No object to write: nothing was written.
		if own != nil {
			own.Forget(r.Service, r.Datacenter, want)
		}
		return st, "", werr
	}
	var race *conftool.LastPooledError
	if errors.As(werr, &race) && race.Depool != 0 && own != nil {
		// The depool landed, and a concurrent depool elsewhere made
		// conftool put the object back: both writes are poolbot's own.
		own.Record(r.Service, r.Datacenter, conftool.State{Pooled: want, ModifiedIndex: race.Depool})
		if race.Repool != 0 {
			own.Record(r.Service, r.Datacenter, conftool.State{Pooled: !want, ModifiedIndex: race.Repool})
		}
	}
	// The outcome of the write is not known from its answer: ask etcd.
	e.log.Warn("conftool write without a usable answer: reading the object back until its state is known",
		"request", int64(r.ID), "service", r.Service, "datacenter", r.Datacenter, "err", werr)
	e.announce(ctx, about(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s conftool write of %s/%s pooled=%t ended in an error (%v); reading the object back (up to %s) to learn what it holds before going on",
		r.ID, r.Service, r.Datacenter, want, werr, poolbot.FormatDuration(writeReadBackFor))))
	st, rerr := e.readBack(ctx, r)
	switch {
	case rerr != nil:
		// Still unknown: the intent stays recorded (the write may yet
		// show up in the watch, and it is poolbot's).
		// The write's own error first, as in the other cases: it names
		// conftool (the END line says "conftool: " once).
		return conftool.State{}, "", fmt.Errorf("%v; %w: %s/%s could not be read back for %s (%v): CHECK it by hand",
			werr, errPooledUnknown, r.Service, r.Datacenter, poolbot.FormatDuration(writeReadBackFor), rerr)
	case st.Pooled != want:
		if own != nil {
			own.Forget(r.Service, r.Datacenter, want)
		}
		return st, "", fmt.Errorf("%v; read back: %s/%s pooled=%t now", werr, r.Service, r.Datacenter, st.Pooled)
	}
	if own != nil {
		own.Record(r.Service, r.Datacenter, st)
	}
	return st, fmt.Sprintf("the write ended in an error (%v); read back pooled=%t", werr, st.Pooled), nil
}

// readBack reads r's discovery record until it answers or
// writeReadBackFor has passed.
func (e *Engine) readBack(ctx context.Context, r poolbot.Request) (conftool.State, error) {
	deadline := e.clock.Now().Add(writeReadBackFor)
	for {
		st, err := e.deps.Conftool.Get(ctx, r.Service, r.Datacenter)
		if err == nil {
			return st, nil
		}
		if !e.clock.Now().Before(deadline) {
			return conftool.State{}, err
		}
		t := e.clock.NewTimer(min(writeReadBackEvery, deadline.Sub(e.clock.Now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return conftool.State{}, err
		case <-t.Chan():
		}
	}
}
