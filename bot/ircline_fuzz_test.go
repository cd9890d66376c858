package bot

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircmsg"

	"poolbot/chat"
)

// worstHost is the longest host the server may put in the bot's prefix.
var worstHost = strings.Repeat("h", maxHostLen)

// FuzzIRCLine drives the path every outgoing line takes (IRC.pieces: the
// budget for the nick and target, chat.Sanitize, Split; then encodeLine, what
// submit sends) and checks each line as the server relays it to others,
// ":nick!~user@<63-byte host> PRIVMSG target :text" CR LF: at most 512
// bytes, no CR, LF or NUL inside, valid UTF-8; and that the pieces are the
// sanitised text with only the spaces around cuts dropped (Split's
// contract).
func FuzzIRCLine(f *testing.F) {
	f.Add("poolbot", "", "poolbot", "#wikimedia-operations", "", 0, "!log poolbot #12 alice: END (FAIL) - "+strings.Repeat("registry1001.eqiad.wmnet, ", 20))
	f.Add("poolbot", "poolbot", "poolbot_0", "#ops", "alice2: ", 64, "ok\r\nPRIVMSG #ops :injected")
	f.Add("p", "u", "p", "#c", "", 510, strings.Repeat("ü🚀", 300))
	f.Add("abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnopqrstuvwxyz0123", "#"+strings.Repeat("c", 63), strings.Repeat("n", 30)+": ", 510, strings.Repeat("x", 600))
	f.Add("poolbot", "", "poolbot", "alice", "", 0, "a\x00b\x03"+"04,05red\x0f \x01VERSION\x01\u2028\xc2\x85\xff\xfe end   ")
	f.Add("poolbot", "", "poolbot", "#wikimedia-operations", "", 0, strings.Repeat("x", 330)+" #12 FORCE requested by alice: needs !confirm 12 from another operator !log no")
	f.Fuzz(func(t *testing.T, cfgNick, user, nick, target, prefix string, maxLine int, text string) {
		cfg := IRCConfig{Server: "irc.example.org:6697", Nick: cfgNick, User: user, MaxLineBytes: maxLine}
		// Validate takes only a short printable-ASCII user (servers cap
		// the ident at USERLEN anyway); the budget counts it in full.
		if cfg.Validate() != nil || validNick(nick) != nil || !validTarget(target) {
			t.Skip()
		}
		// A reply's prefix is a sender's nick, sanitised, and ": ".
		if prefix != "" {
			p, ok := strings.CutSuffix(prefix, ": ")
			if !ok || validNick(p) != nil {
				t.Skip()
			}
		}
		i := NewIRC(cfg, nil, nil)
		source := nick + "!~" + i.cfg.User + "@" + worstHost

		clean := chat.Sanitize(text)
		pieces := i.pieces(nick, "PRIVMSG", target, prefix, text)
		rest := clean
		for k, p := range pieces {
			line := prefix + p
			msg, raw, err := encodeLine("PRIVMSG", target, line)
			if err != nil {
				t.Fatalf("piece %d %q: encode: %v", k, line, err)
			}
			// The server relays the line with our prefix in front.
			msg.Source = source
			msg.ForceTrailing()
			relayed, err := msg.LineBytes()
			if err != nil {
				t.Fatalf("piece %d: relayed form: %v", k, err)
			}
			for _, b := range [][]byte{raw, relayed} {
				if len(b) > 512 {
					t.Fatalf("piece %d: %d bytes on the wire: %q", k, len(b), b)
				}
				body, ok := bytes.CutSuffix(b, []byte("\r\n"))
				if !ok || bytes.ContainsAny(body, "\r\n\x00") || !utf8.Valid(body) {
					t.Fatalf("piece %d: bad line %q", k, b)
				}
			}
			if budget := i.budgetFor(nick, "PRIVMSG", target); len(line) > budget || len(line) > i.cfg.MaxLineBytes {
				t.Fatalf("piece %d: %d text bytes, budget %d, max_line_bytes %d", k, len(line), budget, i.cfg.MaxLineBytes)
			}
			// It parses back to the same text, alone in its parameter.
			back, err := ircmsg.ParseLine(string(relayed))
			if err != nil || back.Command != "PRIVMSG" || len(back.Params) != 2 || back.Params[0] != target || back.Params[1] != line {
				t.Fatalf("piece %d: %q parses as %+v (%v)", k, relayed, back, err)
			}
			// chat.Split drops only spaces, and only around cuts (the text's
			// own leading spaces stay when no cut comes first).
			if p == "" || p[len(p)-1] == ' ' || k > 0 && p[0] == ' ' {
				t.Fatalf("piece %d %q: empty or space at a cut", k, p)
			}
			if k > 0 || !strings.HasPrefix(rest, p) {
				rest = strings.TrimLeft(rest, " ")
			}
			if !strings.HasPrefix(rest, p) {
				t.Fatalf("piece %d %q is not the next part of the sanitised text %q", k, p, rest)
			}
			rest = rest[len(p):]
			// A continuation of a line said in a channel never reads as a
			// command ("!confirm …", "!log …"): it starts with no
			// punctuation, unless the piece before is all punctuation.
			const punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
			if k > 0 && prefix == "" && utf8.ValidString(text) && strings.IndexByte(punct, p[0]) >= 0 {
				_, size := utf8.DecodeRuneInString(pieces[k-1])
				if strings.Trim(pieces[k-1][size:], punct+" ") != "" {
					t.Fatalf("piece %d %q starts like a command after %q", k, p, pieces[k-1])
				}
			}
		}
		if strings.Trim(rest, " ") != "" {
			t.Fatalf("sanitised text %q lost its tail %q", clean, rest)
		}
	})
}

// LineBudget never promises more than Say uses, for the nick the bot has
// or one ircevent may pick on the next connection.
func TestLineBudget(t *testing.T) {
	i := NewIRC(IRCConfig{Server: "irc.libera.chat:6697", Nick: "poolbot"}, nil, nil)
	got := i.LineBudget("#wikimedia-operations")
	for _, nick := range []string{"poolbot", "poolbot_0", "poolbot_12"} {
		if say := i.budgetFor(nick, "PRIVMSG", "#wikimedia-operations"); got > say {
			t.Errorf("LineBudget %d > Say's budget %d as %s", got, say, nick)
		}
	}
	// Every line is UTF-8, the target included (FuzzIRCLine found "\x80").
	if err := i.Say(context.Background(), "#ops\x80", "x"); !errors.Is(err, ErrBadTarget) {
		t.Errorf("Say to a non-UTF-8 target: %v, want ErrBadTarget", err)
	}
	// 512 - CR LF - ":poolbot___!~poolbot@<63> " - "PRIVMSG #wikimedia-operations :"
	if want := 510 - (1 + 10 + 1 + 1 + 7 + 1 + 63 + 1) - 31; got != want {
		t.Errorf("LineBudget = %d, want %d", got, want)
	}
}
