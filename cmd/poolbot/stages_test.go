package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder notes events in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// The order of a shutdown: workers stop, then the SAL flush runs while
// chat is still up, then chat stops. A worker's context.Canceled is a
// clean stop; a real error is returned.
func TestStagesOrder(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var chatUp sync.WaitGroup
	chatUp.Add(1)
	chat := func(ctx context.Context) error {
		chatUp.Done()
		<-ctx.Done()
		rec.add("chat stopped")
		return nil
	}
	worker := func(name string, err error) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // finishing the host in progress
			rec.add(name + " stopped")
			return err
		}
	}
	var chatCtxAliveAtFlush bool
	s := stages{
		chat:    []func(context.Context) error{chat},
		workers: []func(context.Context) error{worker("engine", nil), worker("calendar", context.Canceled)},
		flush: func(ctx context.Context) error {
			chatCtxAliveAtFlush = ctx.Err() == nil
			if _, ok := ctx.Deadline(); !ok {
				t.Error("flush without a deadline")
			}
			rec.add("flushed")
			return nil
		},
		flushTimeout: time.Second,
		log:          slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	chatUp.Wait()
	cancel() // SIGTERM
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	ev := rec.all()
	if len(ev) != 4 || ev[2] != "flushed" || ev[3] != "chat stopped" || !chatCtxAliveAtFlush {
		t.Fatalf("events %q (chat alive at flush: %v)", ev, chatCtxAliveAtFlush)
	}

	// A chat adapter that ends (the console at end of input) ends the
	// workers the same way; a worker's real error comes back.
	rec = &recorder{}
	boom := errors.New("boom")
	s.chat = []func(context.Context) error{func(context.Context) error { rec.add("console ended"); return nil }}
	s.workers = []func(context.Context) error{worker("engine", boom)}
	if err := s.run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("run: %v, want boom", err)
	}
	if ev := rec.all(); !slices.Equal(ev, []string{"console ended", "engine stopped", "flushed"}) {
		t.Fatalf("events %q", ev)
	}
}
