package slack

import (
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack/slackutilsx"
)

// Slack's message text format, both ways.
//
// Incoming text (message events, slash command text) is Slack's "mrkdwn"
// source: '&', '<' and '>' typed by the user arrive as "&amp;", "&lt;" and
// "&gt;", and everything between a real '<' and '>' is a control sequence:
// <@U123> or <@U123|name> (a user mention), <#C123|name> (a channel),
// <!here>, <!channel>, <!subteam^S1|@team>, <!date^…|fallback>, and links
// <https://…> or <https://…|label>. PlainText turns that into the plain
// text the command layer and the IRC SAL lines expect.
//
// Outgoing text is escaped with Escape (slackutilsx.EscapeMessage:
// '&', '<', '>'), so text that came from IRC or from users cannot form a
// control sequence: "<!channel>" is shown as typed and pings nobody.

// Escape makes text safe to post as Slack message text or as a mrkdwn
// text object: it escapes '&', '<' and '>' and removes NUL and the C0/C1
// control characters other than newline and tab, which Slack would
// otherwise show as boxes or reject.
func Escape(text string) string {
	return slackutilsx.EscapeMessage(stripControls(text))
}

func stripControls(s string) string {
	clean := true
	for _, r := range s {
		if isStrippedControl(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case isStrippedControl(r):
			b.WriteByte(' ')
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func isStrippedControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r <= 0x9f)
}

// PlainText turns Slack message text into plain text: control
// sequences become what a reader sees ("@name", "#channel", "@here", the
// link's address), the HTML entities are unescaped, and line breaks become
// spaces (a command is one line, as on IRC). Malformed sequences (a '<'
// without '>') are kept as typed.
func PlainText(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	for {
		open := strings.IndexByte(text, '<')
		if open < 0 {
			break
		}
		end := strings.IndexByte(text[open:], '>')
		if end < 0 {
			break
		}
		b.WriteString(unescapeSlack(text[:open]))
		b.WriteString(slackSequence(text[open+1 : open+end]))
		text = text[open+end+1:]
	}
	b.WriteString(unescapeSlack(text))
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, b.String())
}

// slackSequence renders the inside of one <…> control sequence.
func slackSequence(seq string) string {
	target, label, hasLabel := strings.Cut(seq, "|")
	label = unescapeSlack(label)
	switch {
	case strings.HasPrefix(target, "@"): // user
		if hasLabel && label != "" {
			return "@" + strings.TrimPrefix(label, "@")
		}
		return target
	case strings.HasPrefix(target, "#"): // channel
		if hasLabel && label != "" {
			return "#" + strings.TrimPrefix(label, "#")
		}
		return target
	case strings.HasPrefix(target, "!"): // special: here, channel, subteam, date
		if hasLabel && label != "" {
			return label
		}
		name, _, _ := strings.Cut(target[1:], "^")
		return "@" + name
	}
	// A link. Slack labels links the user typed without a scheme with the
	// text as typed ("phabricator.wikimedia.org/T1"); keep that, and keep
	// the address when the label says something else.
	target = unescapeSlack(target)
	if !hasLabel || label == "" || label == target {
		return target
	}
	bare := target
	for _, p := range []string{"https://", "http://", "mailto:"} {
		bare = strings.TrimPrefix(bare, p)
	}
	if label == bare {
		return label
	}
	return label + " (" + target + ")"
}

var slackUnescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

func unescapeSlack(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	return slackUnescaper.Replace(s)
}

// stripBotMention reports whether text starts with a mention of the user
// botUserID ("<@U123>" or "<@U123|name>", after leading spaces), and
// returns the text after it.
func stripBotMention(text, botUserID string) (rest string, ok bool) {
	if botUserID == "" {
		return text, false
	}
	t := strings.TrimLeft(text, " \t\n")
	open := "<@" + botUserID
	if !strings.HasPrefix(t, open) || len(t) == len(open) {
		return text, false
	}
	switch t[len(open)] {
	case '>':
		return strings.TrimLeft(t[len(open)+1:], " \t\n:,"), true
	case '|':
		if end := strings.IndexByte(t, '>'); end > 0 {
			return strings.TrimLeft(t[end+1:], " \t\n:,"), true
		}
	}
	return text, false
}

// validSlackID reports whether s looks like a Slack object ID (user,
// channel, team, bot): upper-case letters and digits. IDs from events are
// checked before they go into a "<@…>" sequence or a comparison.
func validSlackID(s string) bool {
	if len(s) < 2 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// truncateRunes cuts s to at most n bytes on a rune boundary, marking the
// cut with "…".
func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
