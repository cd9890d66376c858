package sal

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/bot"
	"poolbot/chat"
	"poolbot/internal/testenv/ircnet"
	"poolbot/store"
)

// wakeWorld is a real ircd, a stashbot-like watcher in the SAL channel, an
// IRC adapter that is not running yet, and a Sender on a ChannelSink
// through it.
type wakeWorld struct {
	net     *ircnet.Net
	store   *store.Store
	irc     *bot.IRC
	watcher *ircnet.Client
}

// newIRC is a fresh adapter, as a restarted poolbot has (its pacer full).
func newIRC(n *ircnet.Net) *bot.IRC {
	return bot.NewIRC(bot.IRCConfig{
		Server: n.FloodAddr(), Nick: "poolbot", SALChannel: wakeChannel,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		ConnectTimeout: 10 * time.Second, ConfirmTimeout: 10 * time.Second,
	}, chat.HandlerFunc(func(context.Context, chat.Message, chat.Replier) {}), nil)
}

const wakeChannel = "#wikimedia-operations"

func newWakeWorld(t testing.TB) *wakeWorld {
	t.Helper()
	n := ircnet.Start(t, ircnet.Options{})
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	irc := newIRC(n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watcher, err := n.Dial(ctx, ircnet.ClientOptions{Nick: "stashbot"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Close)
	if err := watcher.Join(ctx, wakeChannel); err != nil {
		t.Fatal(err)
	}
	return &wakeWorld{net: n, store: st, irc: irc, watcher: watcher}
}

// runIRC runs the adapter until the returned stop is called.
func (w *wakeWorld) runIRC() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.irc.Run(ctx) }()
	return func() { cancel(); <-done }
}

func (w *wakeWorld) waitLog(ctx context.Context, text string) (ircnet.Line, error) {
	return w.watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
			l.Msg.Params[1] == "!log "+text
	})
}

// A restarted poolbot finishes work before it is on IRC: its SAL sender
// fails and backs off to MaxBackoff. When the adapter registers, the
// sender is woken and the line goes out at once. The sender's clock is
// fake and never advanced after the adapter starts, so the only thing that
// can send the line is the wake-up: without it, the line waits for a
// backoff timer that never fires and the test fails.
func TestSenderWokenWhenIRCIsReady(t *testing.T) {
	t.Parallel()
	w := newWakeWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	clock := clockwork.NewFakeClock()
	s := NewSender(w.store, ChannelSink{Chat: w.irc, Channel: wakeChannel}, clock, nil)
	queue(t, w.store, "poolbot #1 alice: END (PASS) - restart apus")
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// Let the sender fail until its backoff is at the maximum (1 min).
	for {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatalf("sender not waiting: %v", err)
		}
		l, ok, err := w.store.NextSAL(ctx)
		if err != nil || !ok {
			t.Fatalf("outbox: %v %v", ok, err)
		}
		if l.Attempts >= 8 { // 1+2+4+…+32 s, then 60 s
			break
		}
		clock.Advance(s.MaxBackoff)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}

	defer w.runIRC()()
	if _, err := w.waitLog(ctx, "poolbot #1 alice: END (PASS) - restart apus"); err != nil {
		t.Fatalf("the SAL line did not go out when the bot came on IRC: %v", err)
	}
	// Marked sent right after the server's echo.
	for {
		n, err := w.store.SALBacklog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("backlog %d: the delivered line was not marked sent", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// BenchmarkSALAfterReconnect measures what a restarted poolbot does with
// a SAL line it queued before it was on IRC: its sender failed and backs
// off a full minute (MaxBackoff); the figure is the time from the bot's
// JOIN seen in the SAL channel to the line seen there. Each run is a fresh
// adapter and sender, as after a restart.
//
// go test ./sal/ -run '^$' -bench SALAfterReconnect -benchtime 5x
func BenchmarkSALAfterReconnect(b *testing.B) {
	w := newWakeWorld(b)
	var total, worst time.Duration
	joins := 0
	for b.Loop() {
		irc := newIRC(w.net)
		s := NewSender(w.store, ChannelSink{Chat: irc, Channel: wakeChannel}, nil, nil)
		s.MinBackoff = s.MaxBackoff // the first failure already backs off a minute
		text := "poolbot #1 alice: line " + time.Now().Format(time.RFC3339Nano)
		queue(b, w.store, text)
		sctx, stopSender := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(sctx) }()
		time.Sleep(50 * time.Millisecond) // the first attempt fails: not connected
		w.irc = irc
		stopIRC := w.runIRC()
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.MaxBackoff)
		seen := 0
		joined, err := w.watcher.WaitFor(ctx, func(l ircnet.Line) bool {
			if l.Msg.Command == "JOIN" && l.Msg.Nick() == "poolbot" {
				seen++
			}
			return seen > joins
		})
		if err != nil {
			b.Fatal(err)
		}
		joins++
		logged, err := w.waitLog(ctx, text)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		d := logged.Time.Sub(joined.Time)
		total += d
		worst = max(worst, d)
		stopSender()
		<-done
		stopIRC()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-join-to-SAL")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-worst")
}
