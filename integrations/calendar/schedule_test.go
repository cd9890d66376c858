package calendar

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// at returns 2026-11-02 (a Monday) hh:mm UTC.
func at(hh, mm int) time.Time { return time.Date(2026, 11, 2, hh, mm, 0, 0, time.UTC) }

func win(id string, start, end time.Time) Window { return Window{ID: id, Start: start, End: end} }

func ids(ws []Window) []string {
	out := []string{}
	for _, w := range ws {
		out = append(out, w.ID)
	}
	return out
}

func TestNewScheduleSortsConvertsAndDedupes(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s := NewSchedule(at(0, 0), time.Time{}, []Window{
		win("b", at(10, 0), at(11, 0)),
		win("a", at(9, 0).In(berlin), at(9, 30)),
		win("a", at(12, 0), at(13, 0)),
	})
	if got, want := ids(s.Windows), []string{"a", "b", "a-2"}; !slices.Equal(got, want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
	if s.Windows[0].Start.Location() != time.UTC {
		t.Errorf("start not converted to UTC: %v", s.Windows[0].Start)
	}
}

func TestActive(t *testing.T) {
	s := NewSchedule(at(0, 0), time.Time{}, []Window{
		win("backport", at(8, 0), at(9, 0)),
		win("long", at(8, 30), at(12, 0)),
		win("instant", at(10, 0), at(10, 0)),
		win("train", at(15, 0), at(17, 0)),
	})
	for _, tc := range []struct {
		t    time.Time
		want []string
	}{
		{at(7, 59), nil},
		{at(8, 0), []string{"backport"}},
		{at(8, 45), []string{"backport", "long"}},
		{at(9, 0), []string{"long"}}, // End is exclusive
		{at(10, 0), []string{"long", "instant"}},
		{at(10, 0).Add(time.Nanosecond), []string{"long"}},
		{at(12, 0), nil},
		{at(16, 59), []string{"train"}},
		{at(17, 0), nil},
	} {
		if got := ids(s.Active(tc.t)); !slices.Equal(got, append([]string{}, tc.want...)) {
			t.Errorf("Active(%s) = %v, want %v", tc.t.Format("15:04:05.999999999"), got, tc.want)
		}
	}
}

func TestNext(t *testing.T) {
	s := NewSchedule(at(0, 0), time.Time{}, []Window{
		win("a", at(8, 0), at(9, 0)),
		win("b", at(8, 0), at(8, 30)),
		win("c", at(14, 0), at(15, 0)),
	})
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{at(7, 0), "b"}, // same start: shorter first
		{at(8, 0), "c"}, // strictly after
		{at(13, 59), "c"},
		{at(14, 0), ""},
	} {
		w, ok := s.Next(tc.t)
		if ok != (tc.want != "") || w.ID != tc.want {
			t.Errorf("Next(%s) = %q, %v; want %q", tc.t.Format("15:04"), w.ID, ok, tc.want)
		}
	}
}

func TestFirstGap(t *testing.T) {
	windows := []Window{
		win("morning", at(8, 0), at(9, 0)),
		win("afternoon", at(14, 0), at(15, 0)),
		win("puppet", at(15, 0), at(16, 0)), // adjacent: one busy stretch 14-17
		win("train", at(15, 30), at(17, 0)), // overlapping
		win("inside", at(15, 40), at(15, 50)),
		win("instant", at(19, 0), at(19, 0)),
		win("late", at(21, 0), at(22, 0)),
	}
	s := NewSchedule(at(0, 0), time.Time{}, windows)
	for _, tc := range []struct {
		name          string
		t             time.Time
		d, lead, tail time.Duration
		want          time.Time
		ok            bool
	}{
		{name: "free now", t: at(6, 0), d: time.Hour, want: at(6, 0), ok: true},
		{name: "ends exactly at window start", t: at(7, 0), d: time.Hour, want: at(7, 0), ok: true},
		{name: "tail pushes past window", t: at(7, 0), d: time.Hour, tail: time.Minute, want: at(9, 0), ok: true},
		{name: "inside window waits for end", t: at(8, 30), d: 10 * time.Minute, want: at(9, 0), ok: true},
		{name: "lead after window end", t: at(8, 30), d: 10 * time.Minute, lead: 15 * time.Minute, want: at(9, 15), ok: true},
		{name: "gap exactly long enough", t: at(9, 0), d: 5 * time.Hour, want: at(9, 0), ok: true},
		{name: "gap too short", t: at(9, 0), d: 5*time.Hour + time.Minute, want: at(22, 0), ok: true},
		{name: "merged busy stretch", t: at(14, 30), d: time.Hour, want: at(17, 0), ok: true},
		{name: "exact fit between morning and afternoon", t: at(9, 0), d: 4*time.Hour + 30*time.Minute, lead: 10 * time.Minute, tail: 20 * time.Minute, want: at(9, 10), ok: true},
		{name: "one minute too long", t: at(9, 0), d: 4*time.Hour + 31*time.Minute, lead: 10 * time.Minute, tail: 20 * time.Minute, want: at(22, 10), ok: true},
		{name: "zero-length window blocks its instant", t: at(18, 0), d: 90 * time.Minute, want: at(19, 0).Add(time.Nanosecond), ok: true},
		{name: "op ending at instant window is fine", t: at(18, 0), d: time.Hour, want: at(18, 0), ok: true},
		{name: "zero duration inside window", t: at(8, 15), want: at(9, 0), ok: true},
		{name: "negative durations are zero", t: at(8, 15), d: -time.Hour, lead: -time.Hour, tail: -time.Hour, want: at(9, 0), ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := s.FirstGap(tc.t, tc.d, tc.lead, tc.tail)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Fatalf("FirstGap = %s, %v; want %s, %v", got.Format(time.RFC3339Nano), ok, tc.want.Format(time.RFC3339Nano), tc.ok)
			}
			if b := s.Blocking(got, tc.d, tc.lead, tc.tail); len(b) != 0 {
				t.Errorf("Blocking at the gap = %v, want none", ids(b))
			}
		})
	}
}

func TestFirstGapUntil(t *testing.T) {
	s := NewSchedule(at(0, 0), at(12, 0), []Window{win("a", at(8, 0), at(9, 0))})
	if got, ok := s.FirstGap(at(7, 0), time.Hour, 0, 0); !ok || !got.Equal(at(7, 0)) {
		t.Errorf("before a window: %s %v", got, ok)
	}
	if got, ok := s.FirstGap(at(8, 0), 3*time.Hour, 0, 0); !ok || !got.Equal(at(9, 0)) {
		t.Errorf("ending exactly at Until: %s %v", got, ok)
	}
	if got, ok := s.FirstGap(at(8, 0), 3*time.Hour, 0, time.Minute); ok {
		t.Errorf("past Until: got %s, want no gap", got)
	}
	if got, ok := s.FirstGap(at(13, 0), time.Minute, 0, 0); ok {
		t.Errorf("after Until: got %s, want no gap", got)
	}
	b := s.Blocking(at(10, 0), 3*time.Hour, 0, 0)
	if len(b) != 1 || b[0].ID != BeyondCalendarID || !b[0].Start.Equal(at(12, 0)) {
		t.Errorf("Blocking past Until = %+v", b)
	}
}

func TestBlocking(t *testing.T) {
	s := NewSchedule(at(0, 0), time.Time{}, []Window{
		win("morning", at(8, 0), at(9, 0)),
		win("instant", at(10, 0), at(10, 0)),
		win("afternoon", at(14, 0), at(15, 0)),
	})
	for _, tc := range []struct {
		t             time.Time
		d, lead, tail time.Duration
		want          []string
	}{
		{at(9, 0), time.Hour, 0, 0, nil},
		{at(9, 0), time.Hour, time.Second, 0, []string{"morning"}},
		{at(9, 0), time.Hour, 0, time.Second, []string{"instant"}},
		{at(7, 0), 0, 0, time.Hour, nil},
		{at(7, 0), 0, 0, time.Hour + 1, []string{"morning"}},
		{at(8, 0), 7 * time.Hour, 0, 0, []string{"morning", "instant", "afternoon"}},
		{at(10, 0), 0, 0, 0, nil}, // empty interval
	} {
		if got := ids(s.Blocking(tc.t, tc.d, tc.lead, tc.tail)); !slices.Equal(got, append([]string{}, tc.want...)) {
			t.Errorf("Blocking(%s, %s, %s, %s) = %v, want %v", tc.t.Format("15:04"), tc.d, tc.lead, tc.tail, got, tc.want)
		}
	}
}

// TestFirstGapAgainstBlocking checks FirstGap's one-pass algorithm against
// the definition, with Blocking (a direct overlap test) as the oracle, on
// random schedules with overlapping, adjacent, nested and zero-length windows.
func TestFirstGapAgainstBlocking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := at(0, 0)
	minute := func(n int) time.Time { return base.Add(time.Duration(n) * time.Minute) }
	for iter := range 600 {
		var ws []Window
		for i := range rng.IntN(12) {
			start := rng.IntN(600)
			length := rng.IntN(90)
			if rng.IntN(8) == 0 {
				length = 0
			}
			ws = append(ws, win(fmt.Sprint(i), minute(start), minute(start+length)))
		}
		until := time.Time{}
		if rng.IntN(3) == 0 {
			until = minute(300 + rng.IntN(400))
		}
		s := NewSchedule(base, until, ws)
		from := minute(rng.IntN(600))
		d := time.Duration(rng.IntN(120)) * time.Minute
		lead := time.Duration(rng.IntN(20)) * time.Minute
		tail := time.Duration(rng.IntN(20)) * time.Minute

		valid := func(c time.Time) bool {
			return len(s.Blocking(c, d, lead, tail)) == 0
		}
		got, ok := s.FirstGap(from, d, lead, tail)
		if !ok {
			for c := from; c.Before(minute(1200)); c = c.Add(time.Minute) {
				if valid(c) {
					t.Fatalf("iter %d: no gap reported, but %s is free (windows %v, until %s)", iter, c, ws, until)
				}
			}
			continue
		}
		if got.Before(from) || !valid(got) {
			t.Fatalf("iter %d: FirstGap = %s is not free (from %s, d %s lead %s tail %s, windows %v)", iter, got, from, d, lead, tail, ws)
		}
		if got.After(from) && valid(got.Add(-time.Nanosecond)) {
			t.Fatalf("iter %d: FirstGap = %s, but 1ns earlier is free too", iter, got)
		}
		for c := from; c.Before(got); c = c.Add(time.Minute) {
			if valid(c) {
				t.Fatalf("iter %d: FirstGap = %s, but %s is free", iter, got, c)
			}
		}
	}
}

func BenchmarkFirstGap(b *testing.B) {
	var ws []Window
	start := at(0, 0)
	for i := range 1500 { // a year of windows, several a day
		s := start.Add(time.Duration(i) * 5 * time.Hour)
		ws = append(ws, win(fmt.Sprint(i), s, s.Add(time.Hour)))
	}
	s := NewSchedule(start, time.Time{}, ws)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.FirstGap(start, 4*time.Hour+30*time.Minute, 10*time.Minute, 15*time.Minute); !ok {
			b.Fatal("no gap")
		}
	}
}
