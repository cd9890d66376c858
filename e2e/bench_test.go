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
func BenchmarkCommandRoundTrip(b *testing.B) {
	w := startWorldPaced(b, true)
	alice := user(b, w.net, "alice_laptop", "alice", "alicepw-1234")
	lat := make([]time.Duration, 0, b.N)
	seen := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := alice.Privmsg(channel, "!status"); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		// Each reply is a new line; wait for the (seen+1)-th.
		n := 0
		_, err := alice.WaitFor(ctx, func(l ircnet.Line) bool {
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
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
