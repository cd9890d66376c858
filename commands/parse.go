package commands

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"poolbot"
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

// CleanReason makes user text safe to store, echo and log (see
// CleanReasonChanges). It returns "" for a reason that is empty after
// cleaning.
func CleanReason(s string) string {
	c, _ := CleanReasonChanges(s)
	return c
}

// ReasonChanges counts what CleanReasonChanges took out of a reason, so
// the operator is told what was stored instead of what was typed.
type ReasonChanges struct {
	// InvalidBytes are bytes that are not UTF-8; they are removed.
	InvalidBytes int
	// Formatting are IRC formatting codes (bold, colour with its numbers,
	// reset, …); they are removed, the text they formatted stays.
	Formatting int
	// Controls are control and bidirectional-override characters; each
	// becomes a space (a bidi override would make the logged reason read
	// differently from what was typed).
	Controls int
}

// String says what was changed ("" when nothing was): "removed 3 invalid
// bytes (not UTF-8)", joined with the other kinds.
func (c ReasonChanges) String() string {
	var parts []string
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.Itoa(n) + " " + many
	}
	if c.InvalidBytes > 0 {
		parts = append(parts, "removed "+plural(c.InvalidBytes, "invalid byte", "invalid bytes")+" (not UTF-8)")
	}
	if c.Formatting > 0 {
		parts = append(parts, "removed "+plural(c.Formatting, "IRC formatting code", "IRC formatting codes"))
	}
	if c.Controls > 0 {
		parts = append(parts, "replaced "+plural(c.Controls, "control character", "control characters")+" by a space")
	}
	return strings.Join(parts, ", ")
}

// CleanReasonChanges makes user text safe to store, echo and log, and
// says what it changed. What was meant is kept: IRC formatting codes are
// removed and the text they formatted stays; bytes that are not UTF-8 are
// removed; control characters (CR, LF, NUL, tabs…) and bidirectional
// overrides become spaces; runs of white space collapse to one space, and
// leading and trailing space goes (white space alone is not counted as a
// change).
func CleanReasonChanges(s string) (string, ReasonChanges) {
	var ch ReasonChanges
	var b strings.Builder
	space := false
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case 0x02, 0x0f, 0x11, 0x16, 0x1d, 0x1e, 0x1f: // bold, reset, monospace, reverse, italic, strike, underline
			ch.Formatting++
			i++
			continue
		case 0x03: // colour: ^C[NN[,NN]]
			ch.Formatting++
			i = skipColourCode(s, i+1, isDecimal, 2)
			continue
		case 0x04: // hex colour: ^D[RRGGBB[,RRGGBB]]
			ch.Formatting++
			i = skipColourCode(s, i+1, isHex, 6)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			ch.InvalidBytes++
			continue
		case r != ' ' && (unicode.IsControl(r) || isBidiControl(r)):
			ch.Controls++
			space = true
			continue
		case unicode.IsSpace(r):
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String(), ch
}

// skipColourCode returns the index after a colour code's arguments that
// start at i: up to n digits, then, only after those, a comma and up to n
// more (a comma without digits after it is text).
func skipColourCode(s string, i int, digit func(byte) bool, n int) int {
	j := i
	for j < len(s) && j-i < n && digit(s[j]) {
		j++
	}
	if j == i {
		return j
	}
	if j+1 < len(s) && s[j] == ',' && digit(s[j+1]) {
		k := j + 1
		for k < len(s) && k-(j+1) < n && digit(s[k]) {
			k++
		}
		return k
	}
	return j
}

func isDecimal(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool     { return isDecimal(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// isBidiControl reports the bidirectional embedding, override and isolate
// characters, which can make a logged reason read differently from what
// was typed.
func isBidiControl(r rune) bool {
	return (r >= '\u202A' && r <= '\u202E') || (r >= '\u2066' && r <= '\u2069')
}
