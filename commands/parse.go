package commands

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"poolbot"
	"poolbot/chat"
)

// Invocation is a parsed command line.
type Invocation struct {
	// Name is the command word, lower-cased, without prefix.
	Name string
	// Rest is everything after the command word, trimmed.
	Rest string
	// Addressed is true when the command was addressed to the bot by nick
	// ("poolbot: status") or sent privately, rather than with the prefix
	// in a channel. An unknown command only earns an error when
	// addressed: "!log …" and other bots' commands share the channel.
	Addressed bool
}

// Parse recognises a command in a chat line:
//
//	!status                   prefix (configurable)
//	poolbot: status           addressed by nick (also "poolbot, status")
//	status                    bare, in a private message only
//
// ok is false when the line is not meant for poolbot.
func Parse(text, prefix, nick string, private bool) (inv Invocation, ok bool) {
	text = strings.TrimSpace(text)
	switch {
	case prefix != "" && strings.HasPrefix(text, prefix):
		text = text[len(prefix):]
		inv.Addressed = private
	case nick != "" && hasNickAddress(text, nick):
		text = strings.TrimLeftFunc(text[len(nick)+1:], unicode.IsSpace)
		inv.Addressed = true
	case private:
		inv.Addressed = true
	default:
		return inv, false
	}
	name, rest, _ := strings.Cut(text, " ")
	name = strings.ToLower(name)
	if name == "" || !isWord(name) {
		return inv, false
	}
	inv.Name, inv.Rest = name, strings.TrimSpace(rest)
	return inv, true
}

// hasNickAddress reports whether text starts with "nick:" or "nick,"
// (case-insensitively, as IRC nicks are).
func hasNickAddress(text, nick string) bool {
	if len(text) <= len(nick) || !strings.EqualFold(text[:len(nick)], nick) {
		return false
	}
	c := text[len(nick)]
	return c == ':' || c == ','
}

func isWord(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// nextField splits the first whitespace-separated word off s.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeftFunc(s[i:], unicode.IsSpace)
}

// ParseID accepts "12" or "#12".
func ParseID(s string) (poolbot.RequestID, bool) {
	s = strings.TrimPrefix(s, "#")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return poolbot.RequestID(n), true
}

// MaxReasonBytes bounds a reason so SAL lines that carry it stay within
// one IRC line.
const MaxReasonBytes = 250

// CleanReason makes user text safe to store, echo and log: IRC colour and
// formatting codes are removed, control characters (CR, LF, NUL, tabs…)
// become spaces, runs of spaces collapse. It returns "" for a reason that
// is empty after cleaning.
func CleanReason(s string) string {
	s = chat.Sanitize(s) // formatting codes go; controls become spaces, collapsed below
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) || isBidiControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// isBidiControl reports the bidirectional embedding, override and isolate
// characters, which can make a logged reason read differently from what
// was typed.
func isBidiControl(r rune) bool {
	return (r >= '\u202A' && r <= '\u202E') || (r >= '\u2066' && r <= '\u2069')
}
