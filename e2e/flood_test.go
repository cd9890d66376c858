package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"poolbot/chat"
	"poolbot/internal/testenv/ircnet"
)

// floodWorld is a world with the bot on the flood port (default pacing
// unless rate is set), alice (an operator) and bob (logged in, not an
// operator) in the channel.
func floodWorld(t testing.TB, limiter *chat.CommandLimiter, rate float64, burst int) (w *world, alice, bob *ircnet.Client) {
	t.Helper()
	w = startWorldWith(t, worldOptions{limiter: limiter, rate: rate, burst: burst})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.net.Register(ctx, "bob", "bobpw-1234"); err != nil {
		t.Fatal(err)
	}
	type dialed struct {
		c   *ircnet.Client
		err error
	}
	bobCh := make(chan dialed, 1)
	go func() {
		c, err := dialUser(w.net, "bob", "bob", "bobpw-1234")
		bobCh <- dialed{c, err}
	}()
	alice = user(t, w.net, "alice_laptop", "alice", "alicepw-1234")
	d := <-bobCh
	if d.err != nil {
		t.Fatal(d.err)
	}
	t.Cleanup(d.c.Close)
	// The pacer's bucket full again after the bot's JOIN.
	time.Sleep(7 * time.Second)
	return w, alice, d.c
}

// flood sends n copies of command from c in one write.
func flood(t testing.TB, c *ircnet.Client, n int, command string) {
	t.Helper()
	lines := make([]string, n)
	for k := range lines {
		lines[k] = "PRIVMSG " + channel + " :" + command
	}
	if err := c.SendRaw(strings.Join(lines, "\r\n")); err != nil {
		t.Fatal(err)
	}
}

// repliesTo are the bot's channel lines addressed to nick.
func repliesTo(c *ircnet.Client, nick string) []string {
	var out []string
	for _, l := range c.Lines() {
		if l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
			strings.HasPrefix(l.Msg.Params[1], nick+": ") {
			out = append(out, strings.TrimPrefix(l.Msg.Params[1], nick+": "))
		}
	}
	return out
}

// Fifty commands in one burst from a logged-in non-operator: the first
// five are answered (refused: bob is no operator) and recorded, the sixth
// gets the one "rate-limited" answer, the other 44 are ignored and only
// counted. alice's !status, sent after the flood, is answered after those
// six lines, not after fifty.
func TestFloodFromOneIdentityIsCutShort(t *testing.T) {
	t.Parallel()
	limiter := chat.NewCommandLimiter(chat.CommandLimit{}, nil)
	w, alice, bob := floodWorld(t, limiter, 0, 0)
	flood(t, bob, 50, "!cancel 1 flood")
	if err := alice.Privmsg(channel, "!status"); err != nil {
		t.Fatal(err)
	}
	if r := reply(t, alice, "no active or queued requests"); !strings.HasPrefix(r, "alice_laptop: ") {
		t.Fatalf("answer %q not addressed to alice", r)
	}

	// The dispatcher handles messages in order, so bob's fifty were all
	// handled before alice's command: what bob got is all he gets.
	got := repliesTo(alice, "bob")
	if len(got) != chat.DefaultCommandBurst+1 {
		t.Fatalf("bob got %d answers, want %d:\n%s", len(got), chat.DefaultCommandBurst+1, strings.Join(got, "\n"))
	}
	for _, r := range got[:chat.DefaultCommandBurst] {
		if !strings.Contains(r, "not a poolbot operator") {
			t.Errorf("answer %q, want a refusal", r)
		}
	}
	if last := got[len(got)-1]; !strings.HasPrefix(last, "rate-limited: ") {
		t.Errorf("last answer %q, want the rate-limited notice", last)
	}
	if n := limiter.Limited(); n != 50-chat.DefaultCommandBurst {
		t.Errorf("limiter counted %d, want %d", n, 50-chat.DefaultCommandBurst)
	}
	events, err := w.store.RecentEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range events {
		if e.Kind == "refused" {
			refused++
		}
	}
	if refused != chat.DefaultCommandBurst {
		t.Errorf("%d refusals recorded, want %d (the rest only counted)", refused, chat.DefaultCommandBurst)
	}
}

// BenchmarkOperatorReplyDuringFlood: bob floods 50 commands, then alice
// (an operator) asks !status; the figure is alice's wait for her answer,
// through the real ircd's flood port. "limited" is poolbot now (per-identity
// limit, pacing derived from the flood class); "before" is no limit and the
// old fixed pacing (burst 4, 1 line / 1.2 s).
//
// go test ./e2e/ -run '^$' -bench OperatorReplyDuringFlood -benchtime 1x
func BenchmarkOperatorReplyDuringFlood(b *testing.B) {
	for _, c := range []struct {
		name    string
		limiter bool
		rate    float64
		burst   int
	}{{"limited", true, 0, 0}, {"before", false, 1 / 1.2, 4}} {
		b.Run(c.name, func(b *testing.B) {
			var limiter *chat.CommandLimiter
			if c.limiter {
				limiter = chat.NewCommandLimiter(chat.CommandLimit{}, nil)
			}
			_, alice, bob := floodWorld(b, limiter, c.rate, c.burst)
			var total time.Duration
			for b.Loop() {
				flood(b, bob, 50, "!cancel 1 flood")
				t0 := time.Now()
				if err := alice.Privmsg(channel, "!status"); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				l, err := alice.WaitFor(ctx, func(l ircnet.Line) bool {
					return l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
						strings.HasPrefix(l.Msg.Params[1], "alice_laptop: ")
				})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				total += l.Time.Sub(t0)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-operator-reply")
		})
	}
}
