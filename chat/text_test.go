package chat

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircfmt"
)

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"ok\r\nPRIVMSG #chan :injected", "ok  PRIVMSG #chan :injected"},
		{"a\x00b", "a b"},
		{"\x00", " "},
		{"tab\there", "tab here"},
		{"\x01ACTION waves\x01", " ACTION waves "},
		{"bell\x07", "bell "},
		{"del\x7f", "del "},
		{"\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x1estrike\x1e \x11mono\x11 \x16rev\x16 \x0freset", "bold italic under strike mono rev reset"},
		{"\x0304red\x03 plain", "red plain"},
		{"\x034,12on blue\x0f", "on blue"},
		{"\x0312,5x", "x"},
		{"\x03123", "3"},   // at most two digits
		{"\x03,5", ",5"},   // no foreground: a reset, the comma is text
		{"\x035,", ","},    // a comma without a background digit is text
		{"\x03\x02x", "x"}, // bare colour code
		{"\x04FF0000red", "red"},
		{"\x04ff0000,00FF00x", "x"},
		{"\x04FF00 short", "FF00 short"},                      // hex colour needs six digits
		{"caf\xc3\xa9 \xff\xfe end", "café \uFFFD\uFFFD end"}, // one U+FFFD per bad byte
		{"next\u0085line", "next line"},
		{"line\u2028sep\u2029para", "line sep para"},
		{"üñí©ødé 🚀", "üñí©ødé 🚀"},
		{"", ""},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want []string
	}{
		{"short", 10, []string{"short"}},
		{"exactly10!", 10, []string{"exactly10!"}},
		{"one two three four", 9, []string{"one two", "three", "four"}},
		{"one two three", 7, []string{"one two", "three"}}, // the space right at the cut
		{"abcdefghijkl", 5, []string{"abcde", "fghij", "kl"}},
		{"aaa bbbbbbbbbbbb", 5, []string{"aaa", "bbbbb", "bbbbb", "bb"}},
		{"ééééé", 5, []string{"éé", "éé", "é"}}, // never half a rune
		{"🚀🚀", 5, []string{"🚀", "🚀"}},
		{"🚀🚀", 1, []string{"🚀", "🚀"}}, // raised to MinSplitBytes
		{"  indented", 20, []string{"  indented"}},
		{"word     spaced    out  ", 6, []string{"word", "spaced", "out"}},
		{"   ", 10, nil},
		{"", 10, nil},
	} {
		got := Split(tc.in, tc.max)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Split(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// checkSanitized fails unless out is safe on an IRC line.
func checkSanitized(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("Sanitize(%q) = %q: not UTF-8", in, out)
	}
	for _, r := range out {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			t.Fatalf("Sanitize(%q) = %q: contains %U", in, out, r)
		}
	}
}

// controlsToSpace is Sanitize's second half, written plainly, for the
// differential check against ircfmt.Strip.
func controlsToSpace(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"plain", "ok\r\nPRIVMSG #c :x", "\x00", "\x0304,05c\x03", "\x04AbCdEf,123456x",
		"\x03,", "\x0399,99", "caf\xc3\xa9\xff", "\u0085\u2028", "\x01ACTION x\x01", "\x031\x02\x03"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Sanitize(in)
		checkSanitized(t, in, out)
		if again := Sanitize(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, out, again)
		}
		// Formatting is removed exactly as irc-go's ircfmt.Strip removes it
		// (which knows no \x04 hex colours).
		if utf8.ValidString(in) && !strings.Contains(in, "\x04") {
			if want := controlsToSpace(ircfmt.Strip(in)); out != want {
				t.Fatalf("Sanitize(%q) = %q, ircfmt.Strip gives %q", in, out, want)
			}
		}
		// Every piece of sanitised text split for a line is still clean.
		for _, p := range Split(out, 40) {
			if strings.ContainsAny(p, "\r\n\x00") {
				t.Fatalf("piece %q has CR, LF or NUL", p)
			}
		}
	})
}

func FuzzSplit(f *testing.F) {
	f.Add("one two three four", 9)
	f.Add("ééééé", 5)
	f.Add("🚀 🚀🚀 x", 4)
	f.Add(strings.Repeat("word ", 200), 400)
	f.Add("\xff\xfe\xfd\x80\x80", 3)
	f.Add("  lead   and trail  ", 6)
	f.Fuzz(func(t *testing.T, in string, maxBytes int) {
		if maxBytes > 1000 || maxBytes < -10 {
			maxBytes %= 1000
		}
		pieces := Split(in, maxBytes)
		limit := max(maxBytes, MinSplitBytes)
		for _, p := range pieces {
			if len(p) > limit {
				t.Fatalf("Split(%q, %d): piece %q is %d bytes", in, maxBytes, p, len(p))
			}
			if strings.Trim(p, " ") == "" {
				t.Fatalf("Split(%q, %d): empty piece %q", in, maxBytes, p)
			}
			if utf8.ValidString(in) && !utf8.ValidString(p) {
				t.Fatalf("Split(%q, %d): piece %q is not UTF-8", in, maxBytes, p)
			}
		}
		// A continuation never starts like a command, unless the piece
		// before it is punctuation after its first rune (then there is no
		// other cut). Split expects sanitised, valid UTF-8 text here.
		for k, p := range pieces {
			if !utf8.ValidString(in) {
				break
			}
			_, size := utf8.DecodeRuneInString(pieces[max(k-1, 0)])
			if k > 0 && strings.IndexByte(commandPunctuation, p[0]) >= 0 &&
				strings.Trim(pieces[k-1][size:], commandPunctuation+" ") != "" {
				t.Fatalf("Split(%q, %d): piece %d %q starts like a command", in, maxBytes, k, p)
			}
		}
		// Nothing but spaces is lost, and the order is kept.
		noSpace := func(s string) string { return strings.ReplaceAll(s, " ", "") }
		if got, want := noSpace(strings.Join(pieces, "")), noSpace(in); got != want {
			t.Fatalf("Split(%q, %d) = %q: content %q, want %q", in, maxBytes, pieces, got, want)
		}
	})
}

// A line split for IRC never puts a command at the start of a
// continuation: the notice that once continued "!confirm 1 from another
// operator…" now cuts before the word in front of it; "!log" likewise; in
// a word longer than a line the cut moves back a rune.
func TestSplitContinuationIsNoCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want []string
	}{
		{"#12 FORCE requested by alice: needs !confirm 1 from another operator", 40,
			[]string{"#12 FORCE requested by alice:", "needs !confirm 1 from another operator"}},
		{"done: registry2001 !log poolbot injected", 19,
			[]string{"done:", "registry2001 !log", "poolbot injected"}},
		{"abcdef!log", 6, []string{"abcde", "f!log"}},
		{"!!!!!!!!", 4, []string{"!!!!", "!!!!"}}, // nothing else to cut at
	} {
		got := Split(tc.in, tc.max)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func BenchmarkSanitize(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"clean-ascii", strings.Repeat("depool apus in eqiad T422166 ", 14)},
		{"formatted-utf8", strings.Repeat("\x0304réd\x03 \x02bold\x02 ok\r\n", 25)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.in)))
			b.ReportAllocs()
			for b.Loop() {
				Sanitize(bc.in) // b.Loop keeps the call
			}
		})
	}
}

func BenchmarkSplit(b *testing.B) {
	in := strings.Repeat("restarted docker-registry-restricted on registry1004 (3/8) ", 40) // ~2.4 KB
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		Split(in, 400)
	}
}
