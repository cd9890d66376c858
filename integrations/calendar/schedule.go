package calendar

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Window is one deployment window.
type Window struct {
	// ID identifies the window within its schedule: the item's id on wikitech
	// (e.g. "deploycal-item-20261102T0800"), "<UID>/<start>" for iCalendar.
	ID string
	// Name is the window's title, e.g. "UTC morning backport window".
	Name string
	// Start and End are in UTC. End == Start is a zero-length window.
	Start, End time.Time
	// Deployers are the IRC nicks running the window (may be empty).
	Deployers []string
	// Owners are the IRC nicks of people with patches in the window.
	Owners []string
	// URL points at the window on the calendar (may be empty).
	URL string
	// Unreadable is set when the calendar entry could not be read
	// completely, and says what is missing ("no end time"): End is then
	// Start plus calendar.unreadable_window_length, so that the gate stays
	// closed around what could be read, and notices name the entry as
	// unreadable rather than as a window.
	Unreadable string
}

// BeyondCalendarID is the ID of the synthetic window Blocking reports when
// the requested interval reaches past Schedule.Until.
const BeyondCalendarID = "beyond-calendar"

// occupiedEnd is the end of the half-open interval the window occupies: a
// zero-length (or inverted) window occupies the single instant Start, so that
// it still blocks and is still active at exactly Start.
func (w Window) occupiedEnd() time.Time {
	if w.End.After(w.Start) {
		return w.End
	}
	return w.Start.Add(time.Nanosecond)
}

// ActiveAt reports whether t is in [Start, End) (or t == Start for a
// zero-length window).
func (w Window) ActiveAt(t time.Time) bool {
	return !t.Before(w.Start) && t.Before(w.occupiedEnd())
}

// overlaps reports whether the window shares any instant with [from, to).
func (w Window) overlaps(from, to time.Time) bool {
	return w.Start.Before(to) && from.Before(w.occupiedEnd())
}

// Schedule is a snapshot of the calendar: its windows sorted by start time,
// when it was fetched, and how far it is known to be complete.
type Schedule struct {
	// Windows are sorted by Start, then End, then ID. Treat as read-only.
	Windows []Window
	// FetchedAt is when the source last confirmed this content.
	FetchedAt time.Time
	// Until is the end of the period the calendar is known to cover: the
	// iCalendar horizon, or for wikitech the end of the last week the page
	// lists. Time at or after Until is unknown, and FirstGap treats it as busy.
	// The zero value means the schedule is complete for all time.
	Until time.Time
	// Revision identifies the content (wikitech revid, HTTP ETag, ...) for
	// logs and notices; may be empty.
	Revision string
}

// NewSchedule returns a schedule of a copy of windows, sorted, with times
// converted to UTC and repeated IDs made unique ("-2", "-3"...).
func NewSchedule(fetchedAt, until time.Time, windows []Window) Schedule {
	ws := make([]Window, len(windows))
	for i, w := range windows {
		w.Start, w.End = w.Start.UTC(), w.End.UTC()
		ws[i] = w
	}
	slices.SortStableFunc(ws, func(a, b Window) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		if c := a.End.Compare(b.End); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	seen := make(map[string]int, len(ws))
	for i := range ws {
		seen[ws[i].ID]++
		if n := seen[ws[i].ID]; n > 1 {
			ws[i].ID = fmt.Sprintf("%s-%d", ws[i].ID, n)
		}
	}
	if !until.IsZero() {
		until = until.UTC()
	}
	return Schedule{Windows: ws, FetchedAt: fetchedAt, Until: until}
}

// startsAfter returns the index of the first window whose Start is after t.
func (s Schedule) startsAfter(t time.Time) int {
	i, _ := slices.BinarySearchFunc(s.Windows, t, func(w Window, t time.Time) int {
		if w.Start.After(t) {
			return 1
		}
		return -1
	})
	return i
}

// Active returns the windows active at t: Start <= t < End (t == Start for a
// zero-length window), in start order.
func (s Schedule) Active(t time.Time) []Window {
	var out []Window
	for _, w := range s.Windows[:s.startsAfter(t)] {
		if w.ActiveAt(t) {
			out = append(out, w)
		}
	}
	return out
}

// Next returns the first window that starts strictly after t.
func (s Schedule) Next(t time.Time) (Window, bool) {
	i := s.startsAfter(t)
	if i == len(s.Windows) {
		return Window{}, false
	}
	return s.Windows[i], true
}

// FirstGap returns the earliest start s >= t for an operation of duration d
// such that [s-lead, s+d+tail) overlaps no window, and lies before Until
// when Until is set. Overlapping and adjacent windows are handled as one busy
// stretch; an operation may end exactly when a window starts and begin (minus
// lead) exactly when a window ends. ok is false when no such start exists
// before the end of the known calendar: the caller must keep waiting (and
// refresh the calendar), never proceed. Negative durations count as zero.
func (s Schedule) FirstGap(t time.Time, d, lead, tail time.Duration) (start time.Time, ok bool) {
	d, lead, tail = max(d, 0), max(lead, 0), max(tail, 0)
	after := d + tail
	// An operation starting at c conflicts with the busy interval [bs, be)
	// exactly when c lies in the open interval (bs-after, be+lead). Windows
	// are sorted by Start, so those forbidden intervals come sorted by their
	// low end, and one pass that jumps c past each interval containing it
	// finds the answer: once c <= low end, no later interval can contain it.
	c := t
	for _, w := range s.Windows {
		lo, hi := w.Start.Add(-after), w.occupiedEnd().Add(lead)
		if !lo.Before(c) {
			break
		}
		if c.Before(hi) {
			c = hi
		}
	}
	if !s.Until.IsZero() && c.Add(after).After(s.Until) {
		return time.Time{}, false
	}
	return c, true
}

// Blocking returns the windows that overlap [t-lead, t+d+tail), the interval
// an operation of duration d starting at t must keep clear, in start order.
// When that interval reaches past Until, the result ends with a synthetic
// window (ID BeyondCalendarID) starting at Until, so a notice can say that
// the calendar does not reach far enough yet.
func (s Schedule) Blocking(t time.Time, d, lead, tail time.Duration) []Window {
	d, lead, tail = max(d, 0), max(lead, 0), max(tail, 0)
	from, to := t.Add(-lead), t.Add(d+tail)
	var out []Window
	for _, w := range s.Windows {
		if !w.Start.Before(to) {
			break
		}
		if w.overlaps(from, to) {
			out = append(out, w)
		}
	}
	if !s.Until.IsZero() && to.After(s.Until) {
		out = append(out, Window{
			ID:    BeyondCalendarID,
			Name:  "beyond the end of the published calendar",
			Start: s.Until,
			End:   s.Until,
		})
	}
	return out
}
