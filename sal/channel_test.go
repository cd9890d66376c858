package sal

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"poolbot"
	"poolbot/bot"
	"poolbot/chat"
	"poolbot/internal/testenv/ircnet"
)

// endFailLine is the END line of a failed restart of 8 registry hosts, as
// the procedure words it: well over one IRC line.
func endFailLine() string {
	hosts := []string{
		"registry2004.codfw.wmnet", "registry2005.codfw.wmnet",
		"reg1003.eqiad.wmnet", "reg1004.eqiad.wmnet", "registry1005.eqiad.wmnet",
		"registry1006.eqiad.wmnet", "registry2006.codfw.wmnet", "registry2007.codfw.wmnet",
	}
	text := fmt.Sprintf("END (FAIL) - depool apus in codfw: T422166 ceph maintenance: host 2/8 %s: "+
		"docker-registry-ml.service: GET http://%s:5005/debug/health: 503 {\"storagedriver_s3\":\"s3aws: blob upload unknown\"}; "+
		"done: %s; not touched: %s (duration: 4m12s)",
		hosts[1], hosts[1], hosts[0], strings.Join(hosts[2:], ", "))
	return poolbot.SALLine(poolbot.RequestID(12), "alice", text)
}

// splittingChat stands in for bot.IRC: the real adapter's LineBudget, and
// a Say that splits at the budget the adapter's Say uses for nick poolbot
// in #wikimedia-operations, recording one entry per IRC line.
type splittingChat struct {
	*bot.IRC
	mu    sync.Mutex
	lines []string
}

// sayBudget is 512 - CR LF - ":poolbot!~poolbot@<63-byte host> " -
// "PRIVMSG #wikimedia-operations :".
const sayBudget = 512 - 2 - (1 + 7 + 1 + 1 + 7 + 1 + 63 + 1) - len("PRIVMSG #wikimedia-operations :")

func (c *splittingChat) Say(_ context.Context, _, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, chat.Split(chat.Sanitize(text), sayBudget)...)
	return nil
}

func checkOneSALLine(t *testing.T, lines []string, message string) {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("the SAL line went out as %d IRC lines (only the first is logged): %q", len(lines), lines)
	}
	l := lines[0]
	if !strings.HasPrefix(l, "!log poolbot #12 alice: END (FAIL) - depool apus in codfw: T422166") ||
		!strings.HasSuffix(l, ellipsis) || !utf8.ValidString(l) {
		t.Fatalf("line %q", l)
	}
	if kept := strings.TrimSuffix(strings.TrimPrefix(l, "!log "), ellipsis); !strings.HasPrefix(message, kept) {
		t.Fatalf("line %q is not a prefix of the message", l)
	}
}

func TestChannelSinkNeverSplitsALine(t *testing.T) {
	irc := bot.NewIRC(bot.IRCConfig{Server: "irc.libera.chat:6697", Nick: "poolbot"}, nil, nil)
	chat := &splittingChat{IRC: irc}
	sink := ChannelSink{Chat: chat, Channel: "#wikimedia-operations"}
	msg := endFailLine()
	if len("!log "+msg) <= sayBudget {
		t.Fatalf("the test line (%d bytes) fits on one line anyway", len(msg))
	}
	if err := sink.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	checkOneSALLine(t, chat.lines, msg)

	// A short line is left alone.
	chat.lines = nil
	if err := sink.Send(context.Background(), "poolbot #12 alice: START - depool apus in codfw: T422166"); err != nil {
		t.Fatal(err)
	}
	if len(chat.lines) != 1 || chat.lines[0] != "!log poolbot #12 alice: START - depool apus in codfw: T422166" {
		t.Fatalf("%q", chat.lines)
	}
}

func TestFitLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 10, "abcdefg…"},
		{"abcdef   ghijk", 10, "abcdef…"},                    // no dangling space before the mark
		{"ééééééé", 10, "ééé…"},                              // 2-byte runes: never cut inside one
		{"a\r\nb\x00c\x02d  ", 20, "a  b cd"},                // sanitised, trailing spaces dropped
		{"🚀🚀🚀", 9, "🚀…"},                                     // 4-byte runes
		{"abcdef", 4, "abcd"},                                // too small for a mark
		{"a\xffb" + strings.Repeat("x", 20), 8, "a\uFFFDb…"}, // invalid UTF-8 is replaced first
	} {
		got := fitLine(c.in, c.max)
		if got != c.want || len(got) > c.max || !utf8.ValidString(got) {
			t.Errorf("fitLine(%q, %d) = %q (%d bytes), want %q", c.in, c.max, got, len(got), c.want)
		}
	}
}

// Through the real IRC adapter and a real ircd: the SAL channel sees the
// long END line as one "!log" line, not cut in two.
func TestChannelSinkOneLineOnIRC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an IRC network")
	}
	n := ircnet.Start(t, ircnet.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	const channel = "#wikimedia-operations"
	irc := bot.NewIRC(bot.IRCConfig{
		Server: n.FloodAddr(), Nick: "poolbot", SALChannel: channel,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second,
		ConnectTimeout: 10 * time.Second, ConfirmTimeout: 10 * time.Second,
	}, chat.HandlerFunc(func(context.Context, chat.Message, chat.Replier) {}), nil)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- irc.Run(runCtx) }()
	defer func() { stop(); <-done }()

	watcher, err := n.Dial(ctx, ircnet.ClientOptions{Nick: "stashbot"})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Join(ctx, channel); err != nil {
		t.Fatal(err)
	}
	for !slicesContainsFold(irc.Channels(), channel) {
		select {
		case <-ctx.Done():
			t.Fatal("the bot did not join")
		case <-time.After(20 * time.Millisecond):
		}
	}
	sink := ChannelSink{Chat: irc, Channel: channel}
	msg := endFailLine()
	if err := sink.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if err := irc.Say(ctx, channel, "sentinel"); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.WaitFor(ctx, func(l ircnet.Line) bool {
		return l.Msg.Command == "PRIVMSG" && len(l.Msg.Params) == 2 && l.Msg.Params[1] == "sentinel"
	}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range watcher.Lines() {
		if l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && l.Msg.Params[1] != "sentinel" {
			lines = append(lines, l.Msg.Params[1])
		}
	}
	checkOneSALLine(t, lines, msg)
}

func slicesContainsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// prioritySayer records the priority each line was said with.
type prioritySayer struct{ got []chat.Priority }

func (p *prioritySayer) Say(ctx context.Context, _, _ string) error {
	p.got = append(p.got, chat.PriorityFrom(ctx))
	return nil
}

// SAL lines are said in the pacer's first class, ahead of replies and
// notices waiting for their turn (a flood of replies made them 11 s late).
func TestChannelSinkSaysWithSALPriority(t *testing.T) {
	p := &prioritySayer{}
	if err := (ChannelSink{Chat: p, Channel: "#sal"}).Send(context.Background(), "poolbot #1 alice: START"); err != nil {
		t.Fatal(err)
	}
	if len(p.got) != 1 || p.got[0] != chat.PrioritySAL {
		t.Fatalf("said with %v, want PrioritySAL", p.got)
	}
}
