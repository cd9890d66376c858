package poolbot

import (
	"testing"
	"time"
)

// Issue 12 item 6: a time something is expected at is never shown earlier
// than it is; a span never ends before it starts; one duration style.
func TestFormatClockNeverEarlier(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 20, 0, 0, time.UTC)
	cases := []struct {
		t    time.Time
		want string
	}{
		// Within NearClock: seconds, rounded up.
		{now.Add(90*time.Second + 300*time.Millisecond), "01:21:31 UTC"},
		{now.Add(4 * time.Minute), "01:24:00 UTC"},
		// Further: minutes, rounded up (was cut: 01:45 for 01:45:59).
		{now.Add(25*time.Minute + 59*time.Second), "01:46 UTC"},
		{now.Add(25 * time.Minute), "01:45 UTC"},
		{now.Add(24 * time.Hour), "Tue 01:20 UTC"},
	}
	for _, c := range cases {
		got := FormatClock(c.t, now)
		if got != c.want {
			t.Errorf("FormatClock(%s) = %q, want %q", c.t.Format(time.TimeOnly), got, c.want)
		}
		shown, err := time.Parse("15:04 UTC", got)
		if err != nil {
			shown, err = time.Parse("15:04:05 UTC", got)
		}
		if err == nil {
			y, m, d := c.t.Date()
			shown = time.Date(y, m, d, shown.Hour(), shown.Minute(), shown.Second(), 0, time.UTC)
			if shown.Before(c.t) {
				t.Errorf("%q is earlier than %s", got, c.t.Format(time.TimeOnly))
			}
		}
	}
}

func TestFormatSpanNeverEndsBeforeItStarts(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 21, 40, 0, time.UTC)
	// The window of the incident: 01:21:10–01:21:50 was shown as
	// 01:21–01:22, then as 01:21–01:21 UTC (active).
	start, end := now.Add(-30*time.Second), now.Add(10*time.Second)
	if got := FormatSpan(start, end, now); got != "01:21–01:22 UTC" {
		t.Fatalf("span %q", got)
	}
	if got := FormatSpan(now.Add(time.Hour), now.Add(2*time.Hour), now); got != "02:21–03:22 UTC" {
		t.Fatalf("span %q", got)
	}
	if got := FormatSpan(now.Add(24*time.Hour), now.Add(25*time.Hour), now); got != "Tue 01:21–02:22 UTC" {
		t.Fatalf("span %q", got)
	}
	if got := FormatSince(now, now); got != "01:21 UTC" {
		t.Fatalf("since %q", got)
	}
}

func TestFormatDurationOneStyle(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                "00m 00s",
		50 * time.Millisecond:            "00m 00.05s",
		300 * time.Millisecond:           "00m 00.3s",
		1500 * time.Millisecond:          "00m 02s",
		30 * time.Second:                 "00m 30s",
		10 * time.Minute:                 "10m 00s",
		time.Hour + 2*time.Minute + 15e9: "1h 02m 15s",
		-time.Second:                     "00m 00s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
	}
}
