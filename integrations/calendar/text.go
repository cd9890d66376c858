package calendar

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// cleanText collapses every run of whitespace (including CR, LF, tabs and
// non-breaking spaces) to one space, drops other control and format
// characters, and trims the result. Names and nicks go into IRC lines, so no
// CR, LF or NUL may survive.
func cleanText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	var c cleaner
	for _, r := range s {
		if keep, space := c.step(r, b.Len() > 0); keep {
			if space {
				b.WriteByte(' ')
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cleanBytes is cleanText of text collected from the markup, without
// copying it first.
func cleanBytes(s []byte) string {
	var b strings.Builder
	b.Grow(len(s))
	var c cleaner
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		s = s[n:]
		if keep, space := c.step(r, b.Len() > 0); keep {
			if space {
				b.WriteByte(' ')
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// appendClean appends cleanText(s) to dst. It may clean in place
// (appendClean(s[:0], s)): it never writes more than it has read.
func appendClean(dst, s []byte) []byte {
	start := len(dst)
	var c cleaner
	for len(s) > 0 {
		if b := s[0]; b < utf8.RuneSelf {
			// ASCII, the bulk of the text: cleaner.step inlined.
			s = s[1:]
			switch {
			case b == ' ' || '\t' <= b && b <= '\r':
				c.spacePending = len(dst) > start
				continue
			case b < ' ' || b == 0x7f:
				continue
			}
			if c.spacePending {
				dst = append(dst, ' ')
				c.spacePending = false
			}
			dst = append(dst, b)
			continue
		}
		r, n := utf8.DecodeRune(s)
		s = s[n:]
		if keep, space := c.step(r, len(dst) > start); keep {
			if space {
				dst = append(dst, ' ')
			}
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

// cleaner is the rule shared by cleanText, cleanBytes and appendClean.
type cleaner struct{ spacePending bool }

// step says whether rune r is kept and whether a space goes before it;
// started says whether anything was kept yet.
func (c *cleaner) step(r rune, started bool) (keep, space bool) {
	if r < utf8.RuneSelf { // the common case, without the tables
		switch {
		case r == ' ' || '\t' <= r && r <= '\r':
			c.spacePending = started
			return false, false
		case r < ' ' || r == 0x7f:
			return false, false
		}
		space, c.spacePending = c.spacePending, false
		return true, space
	}
	switch {
	case r == utf8.RuneError:
		return false, false
	case unicode.IsSpace(r):
		c.spacePending = started
		return false, false
	case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
		return false, false
	}
	space, c.spacePending = c.spacePending, false
	return true, space
}

// appendUnique appends s to list unless it is empty or already present
// (case-insensitively: IRC nicks are case-insensitive).
func appendUnique(list []string, s string) []string {
	if s == "" {
		return list
	}
	for _, have := range list {
		if strings.EqualFold(have, s) {
			return list
		}
	}
	return append(list, s)
}

// utcLayouts are the forms of data-utcstart/data-utcend accepted, after
// normalisation: a space between date and time becomes "T", and the string
// is upper-cased. Fractional seconds are accepted wherever seconds are.
// A time without a zone is UTC, as the attribute names promise.
var utcLayouts = [...]struct {
	layout string
	zoned  bool
}{
	{"2006-01-02T15:04:05Z07:00", true}, // RFC 3339: ...Z, ...+00:00
	{"2006-01-02T15:04:05Z0700", true},  // ...+0000
	{"2006-01-02T15:04:05Z07", true},    // ...+00
	{"2006-01-02T15:04Z07:00", true},    // no seconds
	{"2006-01-02T15:04Z0700", true},
	{"2006-01-02T15:04:05", false},
	{"2006-01-02T15:04", false},
	{"20060102T150405Z07:00", true}, // basic form, as in the item ids
	{"20060102T150405", false},
	{"20060102T1504Z07:00", true},
	{"20060102T1504", false},
}

// parseUTCAttr parses a data-utcstart/data-utcend value. Accepted: RFC 3339
// ("2026-11-02T08:00:00Z", "2026-11-02T08:00:00+00:00", with fractional
// seconds), the same with a space instead of "T" ("2026-11-02 08:00:00Z",
// "2026-11-02 08:00:00+00:00"), offsets written +0000 or +00, minutes
// precision ("2026-11-02T08:00Z"), no zone at all (read as UTC), and the
// basic form "20261102T080000Z". A non-UTC offset is honoured. Years outside
// 2000..2200 are rejected as garbage.
func parseUTCAttr(v string) (time.Time, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + strings.TrimLeft(s[10:], " ")
	}
	// "2026-11-02T08:00:00 +00:00" and "... UTC" are seen from hand edits.
	s = strings.TrimSuffix(s, " UTC")
	s = strings.Replace(s, " ", "", 1)
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time")
	}
	for _, l := range utcLayouts {
		t, err := time.Parse(l.layout, s)
		if err != nil {
			continue
		}
		if y := t.Year(); y < 2000 || y > 2200 {
			return time.Time{}, fmt.Errorf("time %q: year %d out of range", v, y)
		}
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("time %q: not RFC 3339 or a known variant", v)
}
