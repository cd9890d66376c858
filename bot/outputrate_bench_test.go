package bot

import (
	"fmt"
	"testing"
	"time"

	"poolbot/internal/testenv/ircnet"
)

// BenchmarkOutputRate says 200 lines as fast as the pacer lets it, on the
// flood port under the Libera-like class (InspIRCd: threshold 10,
// commandrate 1000, no fakelag: an over-threshold client is killed), and
// reports:
//
//	%allowed    200 lines / time from the first Say to the 200th line seen
//	            by a client in the channel, over the 1 line a second the
//	            class allows
//	peak-cmds   the highest penalty (in commands) the server's counter
//	            reached, replayed from the lines' arrival times: +1 a line,
//	            −1 at each wall-clock second (the test ircd drains then:
//	            see ircnet's pacemaker); the class kills at 10
//	margin      10 − peak-cmds
//	disconnects times the bot quit or lost its connection (must be 0)
//
// "derived" is the pacing derived from the class (chat.FloodClass);
// "fixed-1.2s" is the pacing before it (a burst of 4, then 1 line/1.2 s).
//
// go test ./bot/ -run '^$' -bench OutputRate -benchtime 1x -timeout 20m
func BenchmarkOutputRate(b *testing.B) {
	for _, c := range []struct {
		name  string
		rate  float64
		burst int
	}{{"derived", 0, 0}, {"fixed-1.2s", 1 / 1.2, 4}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				outputRateRun(b, c.rate, c.burst)
			}
		})
	}
}

func outputRateRun(b *testing.B, rate float64, burst int) {
	const lines = 200
	class := ircnet.LiberaLike()
	n := ircnet.Start(b, ircnet.Options{Flood: class})
	ctx := testCtx(b, 10*time.Minute)
	if err := n.RegisterAll(ctx, ircnet.Account{Name: "poolbot", Password: "poolbot-secret-pw"}); err != nil {
		b.Fatal(err)
	}
	cfg := botConfig(n, "poolbot")
	cfg.Rate, cfg.Burst = rate, burst
	bot, _ := startBot(b, cfg, newRecorder())
	watcher := dial(b, ctx, n, ircnet.ClientOptions{Nick: "watcher"})[0]
	if err := watcher.Join(ctx, "#ops"); err != nil {
		b.Fatal(err)
	}
	waitJoined(b, ctx, bot, "#ops")
	// The pacer's bucket refills and the server's counter drains the JOIN.
	time.Sleep(8 * time.Second)
	mark := len(watcher.Lines())

	t0 := time.Now()
	for k := range lines {
		if err := bot.Say(ctx, "#ops", fmt.Sprintf("line %03d of %d", k, lines)); err != nil {
			b.Fatalf("line %d: %v", k, err)
		}
	}
	last := fmt.Sprintf("line %03d of %d", lines-1, lines)
	end, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && len(l.Msg.Params) == 2 && l.Msg.Params[1] == last
	})
	if err != nil {
		b.Fatal(err)
	}
	elapsed := end.Time.Sub(t0)

	disconnects, got := 0, 0
	var penalty, peak float64
	var prev time.Time
	for _, l := range watcher.Lines()[mark:] {
		if l.Msg.Nick() != "poolbot" {
			continue
		}
		switch l.Msg.Command {
		case "QUIT":
			disconnects++
		case "PRIVMSG":
			got++
			if !prev.IsZero() {
				ticks := l.Time.Unix() - prev.Unix() // wall-clock seconds crossed
				penalty = max(0, penalty-float64(ticks))
			}
			prev = l.Time
			penalty++
			peak = max(peak, penalty)
		}
	}
	if !bot.Connected() {
		disconnects++
	}
	if got != lines {
		b.Fatalf("%d lines arrived, want %d", got, lines)
	}
	allowed := float64(class.CommandRate) / 1000
	b.ReportMetric(100*float64(lines)/elapsed.Seconds()/allowed, "%allowed")
	b.ReportMetric(elapsed.Seconds(), "s/200lines")
	b.ReportMetric(peak, "peak-cmds")
	b.ReportMetric(float64(class.Threshold)-peak, "margin")
	b.ReportMetric(float64(disconnects), "disconnects")
}
