package scap

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LineKind is which scap announcement a channel line is.
type LineKind int

const (
	// LineStarted: "Started scap <program>: <msg>".
	LineStarted LineKind = iota + 1
	// LineFinished: "Finished scap <program>: <msg> (duration: MMm SSs)".
	LineFinished
	// LineAborted: "<program> aborted: <msg> (duration: …)" (Ctrl-C).
	LineAborted
	// LineFailed: "<program> failed: <Exception> … (duration: …)".
	LineFailed
	// LineLocked: "Locking from deployment [<repo>]: <msg>" (`scap lock`).
	LineLocked
	// LineUnlocked: "Unlocked for deployment [<repo>]: <msg> (duration: …)".
	LineUnlocked
	// LineForceUnlocked: "Forcefully removing global lock: <msg>"
	// (`scap lock --unlock-all`).
	LineForceUnlocked
)

func (k LineKind) String() string {
	switch k {
	case LineStarted:
		return "started"
	case LineFinished:
		return "finished"
	case LineAborted:
		return "aborted"
	case LineFailed:
		return "failed"
	case LineLocked:
		return "locked"
	case LineUnlocked:
		return "unlocked"
	case LineForceUnlocked:
		return "force-unlocked"
	}
	return fmt.Sprintf("LineKind(%d)", int(k))
}

// Ends reports whether the line ends something that was running.
func (k LineKind) Ends() bool {
	return k == LineFinished || k == LineAborted || k == LineFailed || k == LineUnlocked || k == LineForceUnlocked
}

// Line is one parsed scap announcement.
type Line struct {
	Kind LineKind
	// Who is the SAL attribution "user@host" (scap's real user and host).
	Who string
	// Program is scap's subcommand ("sync-world"); "" for old scap's bare
	// "Started scap: …" and for "scap aborted".
	Program string
	// Repo is the bracketed repository of Locking/Unlocked lines
	// ("MediaWiki", "ALL REPOSITORIES", …).
	Repo string
	// Message is the free text (backport summary, lock reason, exception).
	Message string
	// Duration is the "(duration: MMm SSs)" suffix, when HasDuration.
	Duration    time.Duration
	HasDuration bool
}

// String renders the line in scap's wire format (as relayed, with "!log").
func (l Line) String() string {
	var b strings.Builder
	b.WriteString("!log ")
	b.WriteString(l.Who)
	b.WriteByte(' ')
	prog := l.Program
	switch l.Kind {
	case LineStarted, LineFinished:
		if l.Kind == LineStarted {
			b.WriteString("Started scap")
		} else {
			b.WriteString("Finished scap")
		}
		if prog != "" {
			b.WriteByte(' ')
			b.WriteString(prog)
		}
		b.WriteString(": ")
		b.WriteString(l.Message)
	case LineAborted, LineFailed:
		if prog == "" {
			prog = "scap"
		}
		b.WriteString(prog)
		if l.Kind == LineAborted {
			b.WriteString(" aborted: ")
		} else {
			b.WriteString(" failed: ")
		}
		b.WriteString(l.Message)
	case LineLocked:
		b.WriteString("Locking from deployment [" + l.Repo + "]: " + l.Message)
	case LineUnlocked:
		b.WriteString("Unlocked for deployment [" + l.Repo + "]: " + l.Message)
	case LineForceUnlocked:
		b.WriteString("Forcefully removing global lock: " + l.Message)
	}
	if l.HasDuration {
		secs := int64(l.Duration / time.Second)
		fmt.Fprintf(&b, " (duration: %02dm %02ds)", secs/60, secs%60)
	}
	return b.String()
}

// ParseLine recognises scap's announcements as relayed into the channel
// ("!log user@host <scap message>"). It does not check who sent the line;
// Tracker does. ok is false for every other line.
//
// tcpircbot relays at most 460 bytes per IRC message, so a long Finished,
// aborted, failed or Unlocked line may lack its "(duration: …)" tail (it
// arrives as a second message without "!log"); such lines are accepted
// with HasDuration false.
func ParseLine(text string) (Line, bool) {
	text = strings.TrimSpace(text)
	if strings.ContainsAny(text, "\x00\r\n") {
		return Line{}, false
	}
	rest, ok := strings.CutPrefix(text, "!log ")
	if !ok {
		return Line{}, false
	}
	who, body, ok := strings.Cut(rest, " ")
	if !ok || !validWho(who) {
		return Line{}, false
	}
	l := Line{Who: who}
	switch {
	case strings.HasPrefix(body, "Started scap"):
		l.Kind = LineStarted
		if l.Program, l.Message, ok = programAndMessage(body[len("Started scap"):]); !ok {
			return Line{}, false
		}
		return l, true
	case strings.HasPrefix(body, "Finished scap"):
		l.Kind = LineFinished
		if l.Program, l.Message, ok = programAndMessage(body[len("Finished scap"):]); !ok {
			return Line{}, false
		}
		l.Message, l.Duration, l.HasDuration = splitDuration(l.Message)
		return l, true
	case strings.HasPrefix(body, "Locking from deployment ["):
		l.Kind = LineLocked
		if l.Repo, l.Message, ok = repoAndMessage(body[len("Locking from deployment "):]); !ok {
			return Line{}, false
		}
		return l, true
	case strings.HasPrefix(body, "Unlocked for deployment ["):
		l.Kind = LineUnlocked
		if l.Repo, l.Message, ok = repoAndMessage(body[len("Unlocked for deployment "):]); !ok {
			return Line{}, false
		}
		l.Message, l.Duration, l.HasDuration = splitDuration(l.Message)
		return l, true
	case strings.HasPrefix(body, "Forcefully removing global lock:"):
		l.Kind = LineForceUnlocked
		l.Message = strings.TrimPrefix(body[len("Forcefully removing global lock:"):], " ")
		return l, true
	}
	// "<program> aborted: <msg>" / "<program> failed: <msg>", where the
	// program is one word, optionally preceded by "scap".
	for _, k := range []struct {
		sep  string
		kind LineKind
	}{{" aborted:", LineAborted}, {" failed:", LineFailed}} {
		i := strings.Index(body, k.sep)
		if i <= 0 {
			continue
		}
		prog := body[:i]
		after := body[i+len(k.sep):]
		if after != "" && after[0] != ' ' {
			continue
		}
		prog = strings.TrimPrefix(prog, "scap ")
		if prog == "scap" {
			prog = ""
		}
		if prog != "" && !validProgram(prog) {
			continue
		}
		l.Kind, l.Program = k.kind, prog
		l.Message, l.Duration, l.HasDuration = splitDuration(strings.TrimPrefix(after, " "))
		return l, true
	}
	return Line{}, false
}

// validWho mirrors stashbot's check of a relayed attribution: the first
// word fullmatches [^@]+@.+ .
func validWho(w string) bool {
	i := strings.IndexByte(w, '@')
	return i > 0 && i < len(w)-1
}

// validProgram accepts scap subcommand names such as sync-world or sync-file.
func validProgram(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// programAndMessage parses what follows "Started scap"/"Finished scap":
// " <program>: <msg>", " <program>" or ": <msg>" (old scap had no program).
func programAndMessage(s string) (prog, msg string, ok bool) {
	switch {
	case s == "" || s == ":":
		return "", "", true
	case strings.HasPrefix(s, ": "):
		return "", s[2:], true
	case s[0] != ' ':
		return "", "", false // "Started scaphold"
	}
	s = s[1:]
	tok, tail, hasTail := strings.Cut(s, " ")
	if p, colon := strings.CutSuffix(tok, ":"); colon {
		if !validProgram(p) {
			return "", "", false
		}
		return p, tail, true
	}
	if hasTail || !validProgram(tok) {
		return "", "", false
	}
	return tok, "", true
}

// repoAndMessage parses "[<repo>]: <msg>" or "[<repo>]".
func repoAndMessage(s string) (repo, msg string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return "", "", false
	}
	end := strings.IndexByte(s, ']')
	if end <= 1 {
		return "", "", false
	}
	repo, rest := s[1:end], s[end+1:]
	switch {
	case rest == "":
		return repo, "", true
	case strings.HasPrefix(rest, ": "):
		return repo, rest[2:], true
	case rest == ":":
		return repo, "", true
	}
	return "", "", false
}

// splitDuration removes scap's " (duration: MMm SSs)" suffix
// ("%02dm %02ds" % divmod(seconds, 60); minutes may exceed 99).
func splitDuration(s string) (msg string, d time.Duration, ok bool) {
	const open = "(duration: "
	if !strings.HasSuffix(s, "s)") {
		return s, 0, false
	}
	i := strings.LastIndex(s, open)
	if i < 0 {
		return s, 0, false
	}
	inner := s[i+len(open) : len(s)-len("s)")] // "MMm SS"
	mins, secs, found := strings.Cut(inner, "m ")
	// Six digits of minutes is nearly two years of scap run; more would
	// overflow time.Duration (found by FuzzParseLine).
	if !found || !allDigits(mins, 6) || !allDigits(secs, 2) {
		return s, 0, false
	}
	m, _ := strconv.ParseInt(mins, 10, 64)
	sec, _ := strconv.ParseInt(secs, 10, 64)
	if sec > 59 {
		return s, 0, false
	}
	msg = s[:i]
	if msg != "" {
		if msg[len(msg)-1] != ' ' {
			return s, 0, false
		}
		msg = msg[:len(msg)-1]
	}
	return msg, time.Duration(m*60+sec) * time.Second, true
}

func allDigits(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
