package ircnet

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// rawRegister connects to addr with a bare TCP socket, sends NICK and USER
// (no CAP, no SASL: nothing the client could be waiting for) and returns
// how long the ircd took to answer 001.
func rawRegister(ctx context.Context, addr, nick string) (time.Duration, error) {
	var d net.Dialer
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "NICK %s\r\nUSER %s 0 * :%s\r\n", nick, nick, nick); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("before 001: %w", err)
		}
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == "001" {
			return time.Since(start), nil
		}
		if len(f) >= 2 && f[0] == "PING" {
			_, _ = fmt.Fprintf(c, "PONG %s\r\n", f[1])
		}
	}
}

// BenchmarkRawRegistration measures connect → 001 for a bare client on each
// client port: the ircd's own cost of registering anyone, which every
// start-up figure of the bot includes.
func BenchmarkRawRegistration(b *testing.B) {
	n := Start(b, Options{})
	for _, port := range []struct{ name, addr string }{{"main", n.Addr()}, {"flood", n.FloodAddr()}} {
		b.Run(port.name, func(b *testing.B) {
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				// The ircd registers on wall-clock second boundaries: start at
				// a random point of the second, as a client in the field
				// does, not just after the boundary the last one ended on.
				time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				d, err := rawRegister(ctx, port.addr, fmt.Sprintf("raw%s%d", port.name, i))
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/register")
		})
	}
}
