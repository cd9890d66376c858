package sal

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/internal/testenv"
	"poolbot/store"
)

type flakySink struct {
	mu    sync.Mutex
	fail  bool
	lines []string
	got   chan string
}

func (s *flakySink) Send(_ context.Context, m string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disconnected")
	}
	s.lines = append(s.lines, m)
	s.got <- m
	return nil
}

func (s *flakySink) setFail(f bool) { s.mu.Lock(); s.fail = f; s.mu.Unlock() }

func queue(t testing.TB, st *store.Store, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if err := st.Tx(context.Background(), func(tx *store.Tx) error { return tx.QueueSAL(0, l) }); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSenderDeliversInOrderAcrossFailures(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sink := &flakySink{fail: true, got: make(chan string, 10)}
	s := NewSender(st, sink, nil, nil)
	s.MinBackoff, s.MaxBackoff, s.Poll = 5*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond
	queue(t, st, "one", "two")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	// While the sink fails nothing is marked sent.
	testenv.Eventually(t, 5*time.Second, "the sender to retry", func() bool {
		l, _, _ := st.NextSAL(ctx)
		return l.Attempts >= 2
	})
	if n, _ := st.SALBacklog(ctx); n != 2 {
		t.Fatalf("backlog %d while failing", n)
	}
	sink.setFail(false)
	queue(t, st, "three")
	s.Wake()
	var got []string
	for len(got) < 3 {
		select {
		case l := <-sink.got:
			got = append(got, l)
		case <-time.After(5 * time.Second):
			t.Fatalf("delivered only %v", got)
		}
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Fatalf("order %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, _ := st.SALBacklog(context.Background()); n != 0 {
		t.Fatalf("backlog %d after delivery", n)
	}
}

// tcpircbot is a stand-in for logmsgbot's relay: it reads one message per
// connection until the client closes, as the real relay does.
func TestTCPIRCBotSink(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- string(b)
	}()
	sink := TCPIRCBotSink{Addr: l.Addr().String(), Attribution: "poolbot@alert1001", Timeout: time.Second}
	msg := poolbot.SALLine(poolbot.RequestID(7), "alice", "START - depool apus in codfw\r\nPRIVMSG #x :injected "+strings.Repeat("é", 400))
	if err := sink.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	line := <-got
	if !strings.HasPrefix(line, "!log poolbot@alert1001 poolbot #7 alice: START - depool apus in codfw  PRIVMSG") {
		t.Fatalf("line %q", line)
	}
	if strings.ContainsAny(line, "\r\n\x00") || len(line) > tcpircbotChunk {
		t.Fatalf("line not one chunk: %d bytes, %q", len(line), line)
	}
	// Credited to the operator, as logmsgbot's user@host.
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- string(b)
	}()
	sink.AttributeOperator = true
	if err := sink.Send(context.Background(), poolbot.SALLine(poolbot.RequestID(7), "alice", "END (PASS) - depool apus in codfw: 3/3 hosts restarted - T1")); err != nil {
		t.Fatal(err)
	}
	if line := <-got; line != "!log alice@alert1001 poolbot #7: END (PASS) - depool apus in codfw: 3/3 hosts restarted - T1" {
		t.Fatalf("attributed line %q", line)
	}
	// A relay that is down is an error, so the line stays queued.
	l.Close()
	if err := sink.Send(context.Background(), "x"); err == nil {
		t.Fatal("send to a closed relay succeeded")
	}
}

func TestParseSALLine(t *testing.T) {
	id, op, text, ok := poolbot.ParseSALLine(poolbot.SALLine(poolbot.RequestID(12), "alice", "conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"))
	if !ok || id != 12 || op != "alice" || text != "conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw" {
		t.Fatalf("%v %q %q %v", id, op, text, ok)
	}
	for _, bad := range []string{"", "poolbot", "poolbot #x alice: y", "poolbot #0 alice: y", "poolbot #1 a b: y", "scap #1 alice: y", "poolbot #1 alice@h: y", "poolbot #1 alice"} {
		if _, _, _, ok := poolbot.ParseSALLine(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}
