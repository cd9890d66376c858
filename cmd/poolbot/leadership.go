package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/config"
	"poolbot/integrations/conftool"
	"poolbot/integrations/leader"
)

// One active poolbot (issue 15): with a leader section, an instance takes
// the leader lock in etcd before it joins chat, acts or sends SAL. Until
// then it is standby: it says so in its log, in /healthz and in the
// poolbot_leader metric (with the holder), and serves only /healthz and
// /metrics. It takes over when the active one's key expires (a crash) or
// is released (a clean stop), and continues the stored requests from the
// same database. An active instance that loses the lock (a renewal
// refused, or impossible for a whole ttl) stops at once, so that two never
// act together; systemd starts it again as a standby.

// leadership is the leader lock of a running daemon and the HTTP server
// that runs from the start so that a standby answers /healthz.
type leadership struct {
	lock *leader.Lock
	lost atomic.Bool
	// http is the /healthz and /metrics server's result; stopHTTP stops it.
	http     chan error
	stopHTTP context.CancelFunc
}

// ErrLeaderLost ends a daemon that lost the leader lock.
var ErrLeaderLost = errors.New("leader lock lost: stopped so that only one poolbot acts (a standby takes over)")

// waitLeadership returns nil, nil without a leader section. Otherwise it
// blocks until this instance is the active poolbot; ok is false when ctx
// ended first (stopped while standby).
func waitLeadership(ctx context.Context, cfg *config.Config, clock clockwork.Clock, log *slog.Logger,
	metrics *monitoringParts) (l *leadership, ok bool, err error) {
	if cfg.Leader == nil {
		return nil, true, nil
	}
	kv, err := conftool.NewEtcd(cfg.Conftool.Etcd, conftool.Options{Clock: clock, Logger: log.With("component", "conftool")})
	if err != nil {
		return nil, false, err
	}
	lock, err := leader.New(kv, *cfg.Leader, leader.Options{Clock: clock, Logger: log})
	if err != nil {
		return nil, false, err
	}
	l = &leadership{lock: lock, http: make(chan error, 1)}
	if err := metrics.metrics.AddLeader(func() (bool, string) {
		h, known := lock.Holder()
		if !known {
			return lock.IsLeader(), ""
		}
		return lock.IsLeader(), h.String()
	}); err != nil {
		return nil, false, err
	}
	// The HTTP server runs from now until runDaemon returns.
	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.stopHTTP = stop
	if runners := metrics.runners(); len(runners) > 0 {
		go func() { l.http <- runners[0](hctx) }()
	} else {
		close(l.http)
	}
	log.Info("standby until this poolbot holds the leader lock", "key", cfg.Leader.Key, "me", lock.Me().String())
	if err := lock.Acquire(ctx); err != nil {
		l.close(log)
		if ctx.Err() != nil {
			log.Info("stopped while standby")
			return nil, false, nil
		}
		return nil, false, err
	}
	log.Info("this poolbot is active", "me", lock.Me().String())
	return l, true, nil
}

// watch cancels the daemon's context when the lock is lost.
func (l *leadership) watch(ctx context.Context, cancel context.CancelFunc, log *slog.Logger) {
	if l == nil {
		return
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-l.lock.Lost():
			l.lost.Store(true)
			log.Error("leader lock lost: stopping so that only one poolbot acts")
			cancel()
		}
	}()
}

// httpRunner is the stage runner standing for the HTTP server that
// already runs: it stops the server with the chat stage, last, and ends
// poolbot if the server fails, like metrics.runners does without a leader.
func (l *leadership) httpRunner() func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case err, ok := <-l.http:
			if !ok {
				<-ctx.Done()
			}
			return err
		case <-ctx.Done():
			l.stopHTTP()
			return <-l.http
		}
	}
}

// close releases the lock (a standby takes over at its next poll rather
// than after the ttl) and stops the HTTP server.
func (l *leadership) close(log *slog.Logger) {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.lock.Release(ctx); err != nil {
		log.Warn("releasing the leader lock; it expires by its ttl", "err", err)
	}
	l.stopHTTP()
}

// result is the daemon's error: a lost lock wins over a clean stop.
func (l *leadership) result(err error) error {
	if l != nil && l.lost.Load() {
		return fmt.Errorf("%w", ErrLeaderLost)
	}
	return err
}
