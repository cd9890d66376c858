package chat

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// A burst, then one command per interval; over the limit the identity is
// told once, then ignored (but counted); identities do not share buckets.
func TestCommandLimiter(t *testing.T) {
	fc := clockwork.NewFakeClock()
	l := NewCommandLimiter(CommandLimit{Burst: 3, Every: 10 * time.Second}, fc)
	for k := range 3 {
		if ok, _ := l.Allow("irc account bob"); !ok {
			t.Fatalf("command %d of the burst refused", k+1)
		}
	}
	if ok, tell := l.Allow("irc account bob"); ok || !tell {
		t.Fatalf("4th: ok %v tell %v, want refused and told", ok, tell)
	}
	for range 10 {
		if ok, tell := l.Allow("irc account bob"); ok || tell {
			t.Fatalf("later: ok %v tell %v, want refused silently", ok, tell)
		}
	}
	if ok, _ := l.Allow("irc account alice"); !ok {
		t.Fatal("alice refused because of bob")
	}
	if got := l.Limited(); got != 11 {
		t.Fatalf("Limited = %d, want 11", got)
	}
	fc.Advance(9 * time.Second)
	if ok, _ := l.Allow("irc account bob"); ok {
		t.Fatal("allowed before the interval")
	}
	fc.Advance(time.Second)
	if ok, _ := l.Allow("irc account bob"); !ok {
		t.Fatal("refused after the interval")
	}
	// Allowed again, so the next refusal is told again.
	if ok, tell := l.Allow("irc account bob"); ok || !tell {
		t.Fatalf("after a refill: ok %v tell %v, want refused and told", ok, tell)
	}
}

func TestIdentity(t *testing.T) {
	for _, c := range []struct {
		m    Message
		want string
	}{
		{Message{Network: "irc", Nick: "bob", Account: "bob", Source: "bob!~b@host"}, "irc account bob"},
		{Message{Network: "irc", Nick: "bob2", Account: "bob", Source: "bob2!~b@other"}, "irc account bob"},
		{Message{Network: "irc", Nick: "eve", Source: "eve!~e@host"}, "irc eve!~e@host"},
		{Message{Network: "console", Nick: "op"}, "console nick op"},
	} {
		if got := Identity(c.m); got != c.want {
			t.Errorf("Identity(%+v) = %q, want %q", c.m, got, c.want)
		}
	}
}

// Strangers do not grow the limiter without bound: idle identities whose
// bucket refilled are forgotten.
func TestCommandLimiterForgetsIdle(t *testing.T) {
	fc := clockwork.NewFakeClock()
	l := NewCommandLimiter(CommandLimit{Burst: 1, Every: time.Second}, fc)
	for k := range limiterSweepAt {
		l.Allow(string(rune('a'+k%26)) + time.Duration(k).String())
	}
	fc.Advance(2 * time.Second)
	l.Allow("newcomer")
	l.mu.Lock()
	n := len(l.buckets)
	l.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d identities kept, want 1", n)
	}
}

func TestFloodClassPacing(t *testing.T) {
	rate, burst := DefaultFloodClass().Pacing()
	if burst != 6 || rate != 0.92 {
		t.Fatalf("default class: rate %v burst %d, want 0.92 and 6", rate, burst)
	}
	if err := (FloodClass{Threshold: 5, CommandRate: 1000}).Validate(); err == nil {
		t.Fatal("threshold 5 accepted: a JOIN (2) would not fit beside the reserve")
	}
	if err := (FloodClass{Threshold: 10, CommandRate: 0}).Validate(); err == nil {
		t.Fatal("command_rate 0 accepted")
	}
}
