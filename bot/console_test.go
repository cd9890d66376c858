package bot

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"poolbot/chat"
)

func TestConsole(t *testing.T) {
	in := strings.NewReader("!status\n\n/msg help\n!say \x1b]0;pwned\x07 \x1b[31mred\n")
	var out bytes.Buffer
	c := NewConsole(in, &out, "alice", "#wikimedia-operations", "poolbot")
	var got []chat.Message
	h := chat.HandlerFunc(func(ctx context.Context, m chat.Message, r chat.Replier) {
		got = append(got, m)
		_ = r.Reply(ctx, "echo "+m.Text)
	})
	if err := c.Run(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("messages %+v", got)
	}
	m := got[0]
	if m.Network != "console" || m.Account != "alice" || !m.AccountKnown || m.Channel != "#wikimedia-operations" || m.Private() {
		t.Fatalf("message %+v", m)
	}
	if !got[1].Private() || got[1].Text != "help" {
		t.Fatalf("/msg gave %+v", got[1])
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[0] != "[#wikimedia-operations] <poolbot> alice: echo !status" || lines[1] != "[alice] <poolbot> echo help" {
		t.Fatalf("output %q", lines)
	}
	// Text echoed to the terminal cannot carry escape sequences.
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Fatalf("terminal control characters in output %q", out.String())
	}
	if err := c.Say(context.Background(), "#ops", "!log a\r\nb"); err != nil || !strings.HasSuffix(out.String(), "[#ops] <poolbot> !log a  b\n") {
		t.Fatalf("say: %v %q", err, out.String())
	}
}
