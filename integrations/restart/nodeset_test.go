package restart

import (
	"reflect"
	"strings"
	"testing"
)

func TestExpandNodeset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"registry[2003-2004].codfw.wmnet", []string{"registry2003.codfw.wmnet", "registry2004.codfw.wmnet"}},
		{"a[1-3,5].b", []string{"a1.b", "a2.b", "a3.b", "a5.b"}},
		{"host1.example", []string{"host1.example"}},
		{"a1, b2 ,c3", []string{"a1", "b2", "c3"}},
		{"n[08-11]", []string{"n08", "n09", "n10", "n11"}},
		{"n[0-2]", []string{"n0", "n1", "n2"}},
		{"n[1-9/4]", []string{"n1", "n5", "n9"}},
		{"n[1-10/4]", []string{"n1", "n5", "n9"}},
		{"r[1-2]c[1-2]", []string{"r1c1", "r1c2", "r2c1", "r2c2"}},
		{"[1-2]x", []string{"1x", "2x"}},
		{"a[1-2],a2,a[1]", []string{"a1", "a2"}},
		{"cp[3007-3008,3010,3030-3031].esams.wmnet", []string{
			"cp3007.esams.wmnet", "cp3008.esams.wmnet", "cp3010.esams.wmnet", "cp3030.esams.wmnet", "cp3031.esams.wmnet"}},
	} {
		got, err := ExpandNodeset(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExpandNodeset(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "a,,b", "a[", "a]", "a[1-2", "a[[1]]", "a[]", "a[3-1]", "a[x]", "a[1-]", "a[-1]",
		"a[1-3/0]", "a[1/2]", "a b", "a[1-2]!a1", "@group", "a&b", "a[99999999999]",
		"a[1-1000000]", "a[1-1000]b[1-1000]", "a[1,,2]",
	} {
		if got, err := ExpandNodeset(in); err == nil {
			t.Errorf("ExpandNodeset(%q) = %q, want an error", in, got)
		}
	}
}

// FuzzExpandNodeset checks that expansion never panics, stays bounded, and
// yields distinct plain names that expand to themselves.
func FuzzExpandNodeset(f *testing.F) {
	for _, s := range []string{
		"registry[2003-2004].codfw.wmnet", "a[1-3,5].b", "n[08-11]", "r[1-2]c[1-2]", "a1,b2",
		"n[1-9/4]", "a[", "a]b", "x[1-1000]y[1-100]", "[0]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ExpandNodeset(s)
		if err != nil {
			return
		}
		if len(names) == 0 || len(names) > MaxNodesetHosts {
			t.Fatalf("%q expanded to %d names", s, len(names))
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || strings.ContainsAny(n, "[],") || seen[n] {
				t.Fatalf("%q gave bad or duplicate name %q", s, n)
			}
			seen[n] = true
			again, err := ExpandNodeset(n)
			if err != nil || len(again) != 1 || again[0] != n {
				t.Fatalf("name %q from %q re-expands to %q, %v", n, s, again, err)
			}
		}
	})
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":          "''",
		"abc":       "'abc'",
		"it's":      `'it'\''s'`,
		"'":         `''\'''`,
		"a b":       "'a b'",
		"$(x)`y`\n": "'$(x)`y`\n'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
	if got := ShellJoin([]string{"systemctl", "restart", "docker-registry-ml.service"}); got != "'systemctl' 'restart' 'docker-registry-ml.service'" {
		t.Errorf("ShellJoin = %q", got)
	}
}

// unquotePOSIX parses a string made of single-quoted runs and
// backslash-escaped characters, the only forms ShellQuote writes, the way
// a POSIX shell would, and fails on anything that would be unquoted.
func unquotePOSIX(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch s[i] {
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 2
		case '\\':
			if i+1 >= len(s) {
				return "", false
			}
			b.WriteByte(s[i+1])
			i += 2
		default:
			return "", false // an unquoted character: the shell would interpret it
		}
	}
	return b.String(), true
}

// FuzzShellQuote: every string quotes to one shell word that reads back as
// itself, with nothing left unquoted.
func FuzzShellQuote(f *testing.F) {
	for _, s := range []string{"", "'", "''", "a'b", "'; touch /tmp/pwned", "$(id)", "\\", "\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := ShellQuote(s)
		got, ok := unquotePOSIX(q)
		if !ok || got != s {
			t.Fatalf("ShellQuote(%q) = %q reads back as %q (ok %v)", s, q, got, ok)
		}
	})
}

func TestOneLineTail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"a\nb\n\n", 0, "a | b"},
		{"\x1b[31mred\x1b[0m\r\n", 0, "red"},
		{"10%\r50%\r100%\ndone", 0, "100% | done"},
		{"tab\there\x00\x07", 0, "tab here"},
		{"abcdef", 3, "…def"},
		{"ééé", 3, "…é"},
		{"bad\xffutf8", 0, "bad\uFFFDutf8"},
	} {
		if got := OneLineTail([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("OneLineTail(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	t.Parallel()
	tb := newTailBuffer(5)
	for _, s := range []string{"ab", "cd", "efg", "h", "ijklmnop", "q"} {
		tb.Write([]byte(s))
	}
	if got := string(tb.Bytes()); got != "mnopq" || tb.Total() != 17 {
		t.Fatalf("tail %q total %d", got, tb.Total())
	}
}

func TestValidateHost(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"registry2003.codfw.wmnet", "127.0.0.1", "a", "a-b.c-d"} {
		if err := ValidateHost(h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for _, h := range []string{"", "-a", "a-", ".a", "a..b", "a.", "A.b", "a_b", "a b", "a;b", "a:22", "[::1]", "D{a}", strings.Repeat("a", 254)} {
		if ValidateHost(h) == nil {
			t.Errorf("%q accepted", h)
		}
	}
}
