package chat

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func waitQueued(t *testing.T, p *Pacer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued, want %d", p.queued(), n)
		}
		runtime.Gosched()
	}
}

// The burst goes at once, then one line per interval, in submission order.
func TestPacerRateBurstAndOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc := clockwork.NewFakeClockAt(time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC))
	p := NewPacer(1/1.2, 4, fc)

	// The first caller takes the turn and sends its 4-line burst at once.
	var mu sync.Mutex
	var order []int
	record := func(id int) func(int) error {
		return func(int) error {
			mu.Lock()
			order = append(order, id)
			mu.Unlock()
			return nil
		}
	}
	if err := p.Pace(ctx, 4, record(0)); err != nil {
		t.Fatal(err)
	}
	// Five more callers, queued in a known order while the bucket is empty.
	done := make(chan int, 5)
	for id := 1; id <= 5; id++ {
		go func() {
			if err := p.Pace(ctx, 1, record(id)); err != nil {
				t.Error(err)
			}
			done <- id
		}()
		if id == 1 {
			// Caller 1 holds the turn and sleeps on the pacer's timer.
			if err := fc.BlockUntilContext(ctx, 1); err != nil {
				t.Fatal(err)
			}
		} else {
			waitQueued(t, p, id-1)
		}
	}
	for want := 1; want <= 5; want++ {
		select {
		case id := <-done:
			t.Fatalf("caller %d finished before the clock moved", id)
		default:
		}
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		fc.Advance(1199 * time.Millisecond)
		select {
		case id := <-done:
			t.Fatalf("caller %d finished 1ms early", id)
		default:
		}
		fc.Advance(time.Millisecond)
		if got := <-done; got != want {
			t.Fatalf("caller %d finished, want %d", got, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []int{0, 0, 0, 0, 1, 2, 3, 4, 5}
	for k := range want {
		if order[k] != want[k] {
			t.Fatalf("send order %v, want %v", order, want)
		}
	}
}

// A batch keeps its turn: another caller's line never lands inside it.
func TestPacerBatchNotInterleaved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc := clockwork.NewFakeClock()
	p := NewPacer(1, 1, fc)
	var mu sync.Mutex
	var sent []string
	send := func(who string) func(int) error {
		return func(int) error { mu.Lock(); sent = append(sent, who); mu.Unlock(); return nil }
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Pace(ctx, 3, send("a")) })
	if err := fc.BlockUntilContext(ctx, 1); err != nil { // a sent 1, waits for its 2nd token
		t.Fatal(err)
	}
	wg.Go(func() { _ = p.Pace(ctx, 2, send("b")) })
	waitQueued(t, p, 1)
	for range 4 {
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		fc.Advance(time.Second)
	}
	wg.Wait()
	if got := len(sent); got != 5 || sent[0] != "a" || sent[1] != "a" || sent[2] != "a" || sent[3] != "b" || sent[4] != "b" {
		t.Fatalf("sent %v, want a a a b b", sent)
	}
}

// A caller whose ctx ends leaves the queue without blocking the others,
// and returns its token so the next caller is not delayed for it.
func TestPacerCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc := clockwork.NewFakeClock()
	p := NewPacer(1, 1, fc)
	if err := p.Wait(ctx); err != nil { // uses the only token
		t.Fatal(err)
	}
	holder := make(chan error, 1)
	go func() { holder <- p.Wait(ctx) }() // sleeps 1s on the timer, holding the turn
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithCancel(ctx)
	queued := make(chan error, 1)
	go func() { queued <- p.Wait(qctx) }()
	waitQueued(t, p, 1)
	qcancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	if p.queued() != 0 {
		t.Fatal("cancelled waiter still queued")
	}
	fc.Advance(time.Second)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	// A ctx that ends while sleeping for a token gives the token back.
	sctx, scancel := context.WithCancel(ctx)
	sleeping := make(chan error, 1)
	go func() { sleeping <- p.Wait(sctx) }()
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	scancel()
	if err := <-sleeping; !errors.Is(err, context.Canceled) {
		t.Fatalf("sleeping waiter: %v", err)
	}
	fc.Advance(time.Second)
	if err := p.Pace(ctx, 1, func(int) error { return nil }); err != nil { // no wait: the token is there
		t.Fatal(err)
	}
	// An error from send stops the batch.
	boom := errors.New("boom")
	calls := 0
	fc.Advance(time.Second)
	if err := p.Pace(ctx, 3, func(int) error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Pace = %v after %d calls", err, calls)
	}
}

func BenchmarkPacerUncontended(b *testing.B) {
	p := NewPacer(1e9, 1e6, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Wait(ctx)
	}
}

// Waiting callers go by priority: SAL lines, then operators' replies, then
// the rest; within a priority in the order they came.
func TestPacerPriorities(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc := clockwork.NewFakeClock()
	p := NewPacer(1, 1, fc)
	if err := p.Wait(ctx); err != nil { // the only token
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	done := make(chan struct{}, 8)
	send := func(prio Priority, name string) {
		go func() {
			_ = p.Pace(WithPriority(ctx, prio), 1, func(int) error {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return nil
			})
			done <- struct{}{}
		}()
	}
	send(PriorityOther, "holder") // takes the turn, sleeps for the token
	if err := fc.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	queued := 0
	for _, c := range []struct {
		prio Priority
		name string
	}{{PriorityOther, "other1"}, {PriorityOperator, "op1"}, {PriorityOther, "other2"},
		{PrioritySAL, "sal1"}, {PriorityOperator, "op2"}, {PrioritySAL, "sal2"}} {
		send(c.prio, c.name)
		queued++
		waitQueued(t, p, queued)
	}
	for range 7 {
		if err := fc.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		fc.Advance(time.Second)
		<-done
	}
	want := []string{"holder", "sal1", "sal2", "op1", "op2", "other1", "other2"}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for k := range want {
		if order[k] != want[k] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	if PriorityFrom(ctx) != PriorityOther {
		t.Fatal("no priority set should mean PriorityOther")
	}
}
