package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv/ircnet"
)

// BenchmarkCommandRoundTrip measures !status from an operator's client to
// poolbot's reply arriving back, through the real ircd (InspIRCd with
// Atheme), the IRC adapter, the command router and SQLite. The bot's
// pacer is set fast here: this measures latency, not flood protection.
//
//   - spaced-100ms, the main figure: commands 100 ms apart, as people type.
//   - back-to-back: the next command as soon as the reply is in. This one
//     is dominated by TCP, not poolbot: InspIRCd sets no TCP_NODELAY, so
//     Nagle holds its next small write (the echo of our reply, then the
//     next reply) until the bot ACKs the previous one, and the bot's
//     kernel delays that ACK (about 40 ms).
//
// go test ./e2e/ -run '^$' -bench CommandRoundTrip -benchtime 200x
func BenchmarkCommandRoundTrip(b *testing.B) {
	w := startWorldPaced(b, true)
	alice := user(b, w.net, "alice_laptop", "alice", "alicepw-1234")
	seen := 0
	for _, c := range []struct {
		name string
		gap  time.Duration
	}{{"spaced-100ms", 100 * time.Millisecond}, {"back-to-back", 0}} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				if c.gap > 0 {
					b.StopTimer()
					time.Sleep(c.gap)
					b.StartTimer()
				}
				start := time.Now()
				if err := alice.Privmsg(channel, "!status"); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				// Each reply is a new line; wait for the (seen+1)-th.
				n := 0
				l, err := alice.WaitFor(ctx, func(l ircnet.Line) bool {
					if l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && len(l.Msg.Params) == 2 &&
						strings.Contains(l.Msg.Params[1], "no active or queued requests") {
						n++
						return n > seen
					}
					return false
				})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				seen++
				lat = append(lat, l.Time.Sub(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
