package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// salFlushTimeout bounds the delivery of queued SAL lines at shutdown;
// lines still queued then go out after the next start (the outbox is
// durable).
const salFlushTimeout = 15 * time.Second

// stages runs poolbot's parts and stops them in order when ctx ends
// (SIGTERM, SIGINT) or one of them fails:
//
//  1. the workers (the procedure, the SAL sender, the calendar refresh,
//     the watchers) stop: the procedure finishes the host step in
//     progress — or parks the request between hosts — and releases the
//     deploy block, recording SAL lines that say so;
//  2. the SAL outbox is flushed through the still-connected chat, within
//     flushTimeout;
//  3. the chat adapters and the HTTP server stop last (IRC sends QUIT
//     with its quit message; /healthz and /metrics answer until then).
//
// A chat adapter that ends by itself (the console at end of input) ends
// poolbot the same way.
type stages struct {
	chat         []func(context.Context) error
	workers      []func(context.Context) error
	flush        func(context.Context) error
	flushTimeout time.Duration
	log          *slog.Logger
}

func (s stages) run(ctx context.Context) error {
	chatCtx, stopChat := context.WithCancel(context.WithoutCancel(ctx))
	defer stopChat()
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()

	var chatWG sync.WaitGroup
	chatErrs := make([]error, len(s.chat))
	for i, run := range s.chat {
		chatWG.Go(func() {
			chatErrs[i] = run(chatCtx)
			stopWork()
		})
	}
	g, gctx := errgroup.WithContext(workCtx)
	for _, run := range s.workers {
		g.Go(func() error { return run(gctx) })
	}
	werr := g.Wait()
	if errors.Is(werr, context.Canceled) {
		werr = nil // a worker's way of saying it stopped because it was asked to
	}
	s.log.Info("shutting down: workers stopped; flushing the SAL outbox, then leaving chat")

	if s.flush != nil {
		fctx, cancel := context.WithTimeout(chatCtx, s.flushTimeout)
		if err := s.flush(fctx); err != nil {
			s.log.Warn("SAL lines left in the outbox at shutdown; they are delivered after the next start", "err", err)
		}
		cancel()
	}
	stopChat()
	chatWG.Wait()
	return errors.Join(append([]error{werr}, chatErrs...)...)
}
