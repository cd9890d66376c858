package restart

import "strings"

// ShellQuote quotes s as a single POSIX shell word with single quotes.
//
// Inside single quotes a POSIX shell interprets nothing at all: no
// expansion, no escapes, no word splitting, newlines included. The only
// character that cannot appear is the single quote itself, so each one is
// written as the four characters quote, backslash, quote, quote (close the
// quotes, an escaped quote, reopen):
//
//	it's  ->  'it'\''s'
//
// The empty string becomes a pair of quotes. The result is always quoted,
// even when s is "safe", so that correctness never depends on a list of
// safe characters.
func ShellQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			b.WriteString(`'\''`)
			continue
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
	return b.String()
}

// ShellJoin turns argv into the command string for a remote shell, quoting
// every element with ShellQuote and separating them with spaces. An SSH
// "exec" request (and so cumin, through ClusterShell and ssh) carries one
// string that the remote sshd runs as `$SHELL -c <string>`; quoting every
// element makes the remote shell see exactly argv, one word per element,
// whatever the elements contain (`'; touch /tmp/pwned` stays one literal
// argument). Elements must not contain NUL bytes, which no shell can pass;
// Run refuses those before quoting.
func ShellJoin(argv []string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = ShellQuote(a)
	}
	return strings.Join(quoted, " ")
}
