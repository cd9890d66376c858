package conftool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"
)

// PollWatcher implements Watcher for any Client by listing a service every
// interval and reporting differences (SourceResync). It is what the confctl
// backend offers instead of etcd's watch: confctl has no way to wait for a
// change. Changes between two polls collapse into one.
type PollWatcher struct {
	client   Client
	interval time.Duration
	clock    clockwork.Clock
	opts     Options
}

// NewPollWatcher returns a watcher polling client every interval (at least
// one second).
func NewPollWatcher(client Client, interval time.Duration, opts Options) *PollWatcher {
	return &PollWatcher{client: client, interval: max(interval, time.Second), clock: opts.clock(), opts: opts}
}

// Watch implements Watcher.
func (p *PollWatcher) Watch(ctx context.Context, service string) (<-chan Change, error) {
	if err := ValidateName("service", service); err != nil {
		return nil, fmt.Errorf("conftool: watch: %w", err)
	}
	ch := make(chan Change, watchBuffer)
	go p.run(ctx, service, ch)
	return ch, nil
}

func (p *PollWatcher) run(ctx context.Context, service string, out chan<- Change) {
	defer close(out)
	log := p.opts.logger().With("component", "conftool", "service", service)
	var known map[string]State
	failing := false
	for {
		states, err := p.client.List(ctx, service)
		if errors.Is(err, ErrNotFound) {
			states, err = map[string]State{}, nil
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("watch: polling discovery objects failed", "err", err)
			if !failing {
				failing = true
				if !send(ctx, out, Change{Service: service, Source: SourceError, Err: fmt.Errorf("conftool: watch %s: %w", service, err)}) {
					return
				}
			}
		default:
			failing = false
			source := SourceResync
			if known == nil {
				source, known = SourceInitial, map[string]State{}
			}
			for _, c := range diffStates(service, known, states, source, 0) {
				if !send(ctx, out, c) {
					return
				}
			}
			known = states
		}
		if !sleepCtx(ctx, p.clock, p.interval) {
			return
		}
	}
}

// WatcherFor returns client's own watcher when it has one (the etcd
// backend), else a PollWatcher that lists every interval (confctl).
func WatcherFor(client Client, interval time.Duration, opts Options) Watcher {
	if w, ok := client.(Watcher); ok {
		return w
	}
	return NewPollWatcher(client, interval, opts)
}

// sleepCtx waits d on clock; false when ctx ended first.
func sleepCtx(ctx context.Context, clock clockwork.Clock, d time.Duration) bool {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.Chan():
		return true
	case <-ctx.Done():
		return false
	}
}
