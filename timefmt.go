package poolbot

import (
	"fmt"
	"time"
)

// NearClock is how close to now a time is shown with its seconds
// ("14:05:07 UTC"): near enough that a minute's rounding would mislead.
const NearClock = 5 * time.Minute

// FormatClock is when something is expected to happen (an estimated start,
// the end of a window, a wake-up) for chat, seen from now: "14:05 UTC",
// "Tue 14:05 UTC" on another day, "14:05:07 UTC" within NearClock of now.
// Minutes are rounded up, never down, so the time shown is never earlier
// than the real one.
func FormatClock(t, now time.Time) string {
	t = t.UTC()
	if d := t.Sub(now); d >= -NearClock && d <= NearClock {
		up := t.Add(time.Second - 1).Truncate(time.Second)
		return dayPrefix(up, now) + up.Format("15:04:05") + " UTC"
	}
	up := ceilMinute(t)
	return dayPrefix(up, now) + up.Format("15:04") + " UTC"
}

// FormatSince is when something happened or began (a window's start, a
// change seen): "14:05 UTC", "Tue 14:05 UTC" on another day than now.
// Minutes are cut, so the time shown is never later than the real one.
func FormatSince(t, now time.Time) string {
	t = t.UTC().Truncate(time.Minute)
	return dayPrefix(t, now) + t.Format("15:04") + " UTC"
}

// FormatSpan is a span of time such as a deployment window, "14:00–15:00
// UTC": its start cut to the minute and its end rounded up, so the span
// shown covers the real one and never ends before it starts.
func FormatSpan(start, end, now time.Time) string {
	s := start.UTC().Truncate(time.Minute)
	e := ceilMinute(end.UTC())
	if e.Before(s) {
		e = s
	}
	return fmt.Sprintf("%s%s–%s UTC", dayPrefix(s, now), s.Format("15:04"), e.Format("15:04"))
}

func ceilMinute(t time.Time) time.Time {
	if c := t.Truncate(time.Minute); !c.Equal(t) {
		return c.Add(time.Minute)
	}
	return t
}

func dayPrefix(t, now time.Time) string {
	ty, tm, td := t.UTC().Date()
	ny, nm, nd := now.UTC().Date()
	if ty == ny && tm == nm && td == nd {
		return ""
	}
	return t.UTC().Format("Mon") + " "
}
