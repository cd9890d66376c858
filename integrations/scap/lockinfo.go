package scap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"poolbot/internal/pyjson"
)

// AsctimeLayout is Python's time.asctime() format ("Thu Apr  2 14:09:39 2026":
// the day of the month is padded with a space), which scap writes as
// timestamp_utc.
const AsctimeLayout = "Mon Jan _2 15:04:05 2006"

// maxHintBytes bounds how much of a lock file body is read.
const maxHintBytes = 64 << 10

// LockInfo is the JSON scap writes into a lock file while it holds it
// exclusively. It is a hint only: it stays behind when the holder is killed.
type LockInfo struct {
	Locker       string `json:"locker"`
	PID          int    `json:"pid"`
	TimestampUTC string `json:"timestamp_utc"`
	Reason       string `json:"reason"`
}

// Time parses TimestampUTC; ok is false when it is missing or malformed.
func (i LockInfo) Time() (t time.Time, ok bool) {
	t, err := time.ParseInLocation(AsctimeLayout, i.TimestampUTC, time.UTC)
	return t, err == nil
}

// Empty reports whether the info says nothing (scap's "{}").
func (i LockInfo) Empty() bool { return i == LockInfo{} }

// MarshalScap renders the info exactly like Python's
// json.dumps(info, indent=4) with scap's key order: 4-space indent, ", "
// never at line ends, ": " after keys, every non-ASCII or control character
// as a lower-case \uXXXX escape (surrogate pairs above U+FFFF), no HTML
// escaping and no trailing newline.
func (i LockInfo) MarshalScap() []byte {
	var b bytes.Buffer
	b.WriteString("{\n    \"locker\": ")
	writePyString(&b, i.Locker)
	b.WriteString(",\n    \"pid\": ")
	b.WriteString(strconv.Itoa(i.PID))
	b.WriteString(",\n    \"timestamp_utc\": ")
	writePyString(&b, i.TimestampUTC)
	b.WriteString(",\n    \"reason\": ")
	writePyString(&b, i.Reason)
	b.WriteString("\n}")
	return b.Bytes()
}

// writePyString writes s as Python's json module does with ensure_ascii=True.
func writePyString(b *bytes.Buffer, s string) { b.WriteString(pyjson.Quote(s)) }

// ParseLockBody interprets a lock file body. Empty, whitespace and "{}"
// (and any object whose known fields are all empty) give (nil, "").
// A JSON object gives the info. Anything else (old scap versions wrote the
// bare reason) gives raw: its first line, trimmed and bounded, with control
// characters removed.
func ParseLockBody(body []byte) (info *LockInfo, raw string) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return nil, ""
	}
	if t[0] == '{' {
		var wire struct {
			Locker       any `json:"locker"`
			PID          any `json:"pid"`
			TimestampUTC any `json:"timestamp_utc"`
			Reason       any `json:"reason"`
		}
		if err := json.Unmarshal(t, &wire); err == nil {
			li := LockInfo{
				Locker:       anyString(wire.Locker),
				PID:          anyInt(wire.PID),
				TimestampUTC: anyString(wire.TimestampUTC),
				Reason:       anyString(wire.Reason),
			}
			if li.Empty() {
				return nil, ""
			}
			return &li, ""
		}
	}
	line, _, _ := bytes.Cut(t, []byte("\n"))
	return nil, sanitizeText(string(line), 200)
}

func anyString(v any) string {
	switch x := v.(type) {
	case string:
		return sanitizeText(x, 500)
	case nil:
		return ""
	default:
		return sanitizeText(fmt.Sprint(x), 500)
	}
}

func anyInt(v any) int {
	switch x := v.(type) {
	case float64:
		if x >= 0 && x <= 1<<31 && x == float64(int(x)) {
			return int(x)
		}
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil && n >= 0 {
			return n
		}
	}
	return 0
}

// sanitizeText makes s safe to show on one chat line: invalid UTF-8 and
// control characters become spaces, the ends are trimmed, and it is cut to
// at most max bytes on a rune boundary (with "…" when cut). Inner runs of
// spaces stay (asctime pads the day with one).
func sanitizeText(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if r == utf8.RuneError && n == 1 || r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			r = ' '
		}
		b.WriteRune(r)
	}
	out := strings.TrimSpace(b.String())
	if len(out) > max {
		cut := max - len("…")
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "…"
	}
	return out
}
