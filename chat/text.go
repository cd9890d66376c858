package chat

import (
	"strings"
	"unicode/utf8"
)

// Sanitize makes text safe to put in the body of one IRC line, whoever
// wrote it:
//
//   - invalid UTF-8 becomes U+FFFD;
//   - mIRC formatting is removed: bold \x02, colour \x03 with its
//     "N[,M]" digits, hex colour \x04 with "RRGGBB[,RRGGBB]", reset \x0F,
//     monospace \x11, reverse \x16, italic \x1D, strikethrough \x1E,
//     underline \x1F — so echoed user text cannot restyle or hide parts of
//     the bot's output;
//   - every other C0 control (NUL, CR, LF, TAB, and \x01, which would turn
//     the line into a CTCP), DEL, the C1 controls U+0080–U+009F and the
//     Unicode line and paragraph separators become a space — so no text can
//     end the line and start a protocol command of its own.
//
// The result is never longer than the input plus the growth from replacing
// invalid bytes. Sanitize does not trim or split; see Split.
func Sanitize(s string) string {
	// Fast path: nothing to do for plain printable text.
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
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
		c := s[i]
		switch {
		case c == 0x02 || c == 0x0f || c == 0x11 || c == 0x16 || c == 0x1d || c == 0x1e || c == 0x1f:
			i++
		case c == 0x03:
			i = skipColour(s, i+1, isDigit, 2)
		case c == 0x04:
			i = skipColour(s, i+1, isHexDigit, 6)
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
			i++
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				b.WriteRune(utf8.RuneError)
			case r >= 0x80 && r <= 0x9f, r == '\u2028', r == '\u2029':
				b.WriteByte(' ')
			default:
				b.WriteString(s[i : i+size])
			}
			i += size
		}
	}
	return b.String()
}

// skipColour returns the index after a colour code's arguments starting at
// i: a foreground of 1..max digits, optionally ",background" (the comma is
// part of the code only when a digit follows it). For \x03 that is the
// de-facto "1–2 digits" rule; \x04 takes exactly six hex digits.
func skipColour(s string, i int, digit func(byte) bool, max int) int {
	n := countDigits(s, i, digit, max)
	if n == 0 || (max == 6 && n != 6) {
		return i
	}
	i += n
	if i < len(s) && s[i] == ',' {
		if m := countDigits(s, i+1, digit, max); m > 0 && (max != 6 || m == 6) {
			i += 1 + m
		}
	}
	return i
}

func countDigits(s string, i int, digit func(byte) bool, max int) int {
	n := 0
	for n < max && i+n < len(s) && digit(s[i+n]) {
		n++
	}
	return n
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isHexDigit(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// MinSplitBytes is the smallest budget Split honours: one UTF-8 rune must
// always fit.
const MinSplitBytes = utf8.UTFMax

// Split cuts text into pieces of at most maxBytes bytes each, for one IRC
// line apiece. It cuts at the last space that fits where it can (dropping
// that space), otherwise at a rune boundary, so no piece ever ends in the
// middle of a UTF-8 sequence. Spaces around a cut are dropped and pieces
// that would be only spaces are left out; every other byte of text appears
// in the pieces, in order. Empty or all-space text gives no pieces.
// A maxBytes below MinSplitBytes counts as MinSplitBytes.
//
// No piece after the first starts with ASCII punctuation: a continuation
// beginning "!confirm 1" or "!log …" would read as a command to poolbot or
// to the SAL bot (stashbot logs every line that starts with "!log "), so
// the cut moves back to the word before (or, in a word longer than a line,
// one rune back) until the next piece starts otherwise. Text that is all
// punctuation up to the cut is cut as it comes.
//
// Split expects sanitised text (see Sanitize); it never looks at line
// breaks.
func Split(text string, maxBytes int) []string {
	if maxBytes < MinSplitBytes {
		maxBytes = MinSplitBytes
	}
	var pieces []string
	s := strings.TrimRight(text, " ")
	for len(s) > maxBytes {
		piece, rest := cutAt(s, maxBytes)
		if piece = strings.TrimRight(piece, " "); piece != "" {
			pieces = append(pieces, piece)
		}
		s = strings.TrimLeft(rest, " ")
	}
	if s != "" && strings.Trim(s, " ") != "" {
		pieces = append(pieces, s)
	}
	return pieces
}

// cutAt cuts s (longer than maxBytes, no leading space) for Split: at
// the last space that fits, else at the last rune boundary that fits; but
// where the next piece would then look like a command, at an earlier
// space, else inside a word, else (all punctuation) as it comes.
func cutAt(s string, maxBytes int) (piece, rest string) {
	// s[:cut] is the longest prefix that fits without splitting a rune.
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut == 0 { // not UTF-8 at all: any cut will do
		cut = maxBytes
	}
	piece, rest = s[:cut], s[cut:]
	// Prefer the last space at or before the cut (s[cut] itself may be one).
	sp := strings.LastIndexByte(s[:cut+1], ' ')
	if sp > 0 {
		piece, rest = s[:sp], s[sp+1:]
	}
	if !looksLikeCommand(rest) {
		return piece, rest
	}
	for ; sp > 0; sp = strings.LastIndexByte(s[:sp], ' ') {
		if !looksLikeCommand(s[sp:]) && strings.TrimRight(s[:sp], " ") != "" {
			return s[:sp], s[sp+1:]
		}
	}
	for c := cut; c > 0; c-- {
		if utf8.RuneStart(s[c]) && !looksLikeCommand(s[c:]) {
			return s[:c], s[c:]
		}
	}
	return piece, rest
}

// looksLikeCommand reports whether the next piece, rest without its
// leading spaces, would start with ASCII punctuation, as a bot command
// does ("!log", "!depool", ".status").
func looksLikeCommand(rest string) bool {
	rest = strings.TrimLeft(rest, " ")
	return rest != "" && strings.IndexByte(commandPunctuation, rest[0]) >= 0
}

const commandPunctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
