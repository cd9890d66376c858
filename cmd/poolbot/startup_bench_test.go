package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv/ircnet"
	"poolbot/internal/testenv/site"
)

// BenchmarkStartToJoined runs the real poolbot binary (`poolbot run`) and
// measures from exec to its JOIN seen by a client in the channel, on the
// flood port (the default pacer), through a TCP relay that notes when
// poolbot ends its registration (its USER line: ircevent sends NICK and
// USER after CAP END) and when the ircd answers 001.
//
// InspIRCd 3 registers clients only on wall-clock second boundaries (see
// ircnet's pacemaker.go), so each run starts at a random point of a
// second and the ircd's share (USER → 001) is reported apart:
//
//	start-ms  exec → JOIN seen in the channel
//	ircd-ms   the ircd holding the registration (USER → 001)
//	own-ms    start-ms − ircd-ms: poolbot's own cost (and the round trips)
//	peak-MB   the largest VmHWM of a run (peak resident set)
//
// go test ./cmd/poolbot/ -run '^$' -bench StartToJoined -benchtime 10x
func BenchmarkStartToJoined(b *testing.B) {
	const channel = "#wikimedia-operations"
	bin := filepath.Join(b.TempDir(), "poolbot")
	if out, err := exec.Command("go", "build", "-o", bin, "poolbot/cmd/poolbot").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	w := site.New(b, 1)
	n := ircnet.Start(b, ircnet.Options{})
	ctx := context.Background()
	if err := n.RegisterAll(ctx, ircnet.Account{Name: "poolbot", Password: "botpw-1234"}); err != nil {
		b.Fatal(err)
	}
	pwFile := filepath.Join(w.Dir, "irc-password")
	if err := os.WriteFile(pwFile, []byte("botpw-1234\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	relay := startRegistrationRelay(b, n.FloodAddr())
	cfg := w.Config(b, fmt.Sprintf(`  irc: {server: %q, nick: poolbot, sasl_account: poolbot, channels: [%q],
         reconnect_min: 200ms, reconnect_max: 1s}
  irc_sasl_password: {file: %q}`, relay.addr, channel, pwFile), "")
	watcher, err := n.Dial(ctx, ircnet.ClientOptions{Nick: "watcher"})
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Join(ctx, channel); err != nil {
		b.Fatal(err)
	}

	var start, ircd time.Duration
	var peakKB int
	joins := 0
	for b.Loop() {
		b.StopTimer()
		time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))
		b.StartTimer()
		t0 := time.Now()
		cmd := exec.Command(bin, "run", "-config", cfg)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		seen := 0
		_, err := watcher.WaitFor(wctx, func(l ircnet.Line) bool {
			if l.Msg.Command == "JOIN" && l.Msg.Nick() == "poolbot" {
				seen++
			}
			return seen > joins
		})
		cancel()
		joined := time.Since(t0)
		b.StopTimer()
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			b.Fatal(err)
		}
		joins++
		start += joined
		ircd += relay.lastWait()
		peakKB = max(peakKB, procStatusKB(cmd.Process.Pid, "VmHWM"))
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("poolbot run: %v", err)
		}
		b.StartTimer()
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(start), "start-ms")
	b.ReportMetric(ms(ircd), "ircd-ms")
	b.ReportMetric(ms(start-ircd), "own-ms")
	b.ReportMetric(float64(peakKB)/1024, "peak-MB")
}

// procStatusKB reads a "kB" field of /proc/<pid>/status (0 if absent).
func procStatusKB(pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb
		}
	}
	return 0
}

// registrationRelay forwards one client connection at a time to the ircd
// and notes the time between the client's USER (the last line of its
// registration) and the server's 001.
type registrationRelay struct {
	addr string
	mu   sync.Mutex
	wait time.Duration
}

func startRegistrationRelay(b *testing.B, upstream string) *registrationRelay {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	r := &registrationRelay{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.serve(c, upstream)
		}
	}()
	return r
}

func (r *registrationRelay) lastWait() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wait
}

func (r *registrationRelay) serve(c net.Conn, upstream string) {
	defer c.Close()
	s, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer s.Close()
	userSent := make(chan time.Time, 1)
	go func() {
		defer s.Close()
		sc := bufio.NewReader(c)
		for {
			line, err := sc.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "USER ") {
				select {
				case userSent <- time.Now():
				default:
				}
			}
			if _, err := s.Write([]byte(line)); err != nil {
				return
			}
		}
	}()
	sr := bufio.NewReader(s)
	for {
		line, err := sr.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "@") { // server-time tags
			f = f[1:]
		}
		if len(f) >= 2 && f[1] == "001" {
			select {
			case t := <-userSent:
				r.mu.Lock()
				r.wait = time.Since(t)
				r.mu.Unlock()
			default:
			}
		}
		if _, err := c.Write([]byte(line)); err != nil {
			return
		}
	}
}
