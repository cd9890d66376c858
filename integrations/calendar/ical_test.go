package calendar

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func expandFixture(t *testing.T, from, to string) []Window {
	t.Helper()
	data, err := os.ReadFile("testdata/deployments.ics")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := ExpandICS(data, utc(from), utc(to), ICSOptions{DeployersProperty: "X-DEPLOYERS"})
	if err != nil {
		t.Fatal(err)
	}
	return NewSchedule(time.Time{}, time.Time{}, ws).Windows
}

func byUID(ws []Window, uid string) []Window {
	var out []Window
	for _, w := range ws {
		if strings.HasPrefix(w.ID, uid+"/") {
			out = append(out, w)
		}
	}
	return out
}

func starts(ws []Window) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Start.Format("01-02T15:04Z"))
	}
	return out
}

// TestICSWeeklyAcrossEuropeanDST is the case verified in the library
// survey: 12 instances counted before EXDATE removes one (11 left), 08:00Z
// before the 2026-03-29 change and 07:00Z after, the 03-09 instance moved to
// 10:00 Berlin by a RECURRENCE-ID override.
func TestICSWeeklyAcrossEuropeanDST(t *testing.T) {
	ws := byUID(expandFixture(t, "2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z"), "standup-20260302@poolbot.test")
	want := []string{
		"03-02T08:00Z", "03-09T09:00Z", "03-11T08:00Z", "03-16T08:00Z", "03-18T08:00Z", "03-23T08:00Z", "03-25T08:00Z",
		"03-30T07:00Z", "04-01T07:00Z", "04-06T07:00Z", "04-08T07:00Z",
	}
	if got := starts(ws); !slices.Equal(got, want) {
		t.Fatalf("starts = %v\nwant     %v", got, want)
	}
	moved := ws[1]
	if moved.Name != "Weekly infrastructure deploy (moved)" || moved.ID != "standup-20260302@poolbot.test/20260309T080000Z" {
		t.Errorf("override: %+v", moved)
	}
	if !slices.Equal(moved.Deployers, []string{"Amir1", "Urbanecm"}) {
		t.Errorf("override did not inherit the deployers: %q", moved.Deployers)
	}
	for _, w := range ws {
		if w.End.Sub(w.Start) != 30*time.Minute {
			t.Errorf("%s lasts %s", w.ID, w.End.Sub(w.Start))
		}
	}
}

func TestICSWeekAcrossUSDST(t *testing.T) {
	ws := expandFixture(t, "2026-10-25T00:00:00Z", "2026-12-01T00:00:00Z")

	backport := byUID(ws, "backport-afternoon@poolbot.test")
	// 06:00 in San Francisco: 13:00Z before 2026-11-01, 14:00Z after;
	// 10-28 and 11-03 removed by one multi-valued EXDATE; UNTIL ends it.
	if got, want := starts(backport), []string{"10-26T13:00Z", "10-27T13:00Z", "10-29T13:00Z", "11-02T14:00Z", "11-04T14:00Z", "11-05T14:00Z"}; !slices.Equal(got, want) {
		t.Errorf("backport starts = %v, want %v", got, want)
	}
	b := backport[0]
	if b.Name != "UTC afternoon backport window, (Max 6 patches)" || b.URL != "https://wikitech.wikimedia.org/wiki/Backport_windows" {
		t.Errorf("backport window: %+v", b)
	}
	if !slices.Equal(b.Deployers, []string{"Lucas_WMDE", "TheresNoTime"}) {
		t.Errorf("deployers from ATTENDEE CN = %q", b.Deployers)
	}

	train := byUID(ws, "train@poolbot.test")
	// COUNT=3 weekly from 10-27, the 11-03 instance cancelled by its override.
	if got, want := starts(train), []string{"10-27T15:00Z", "11-10T16:00Z"}; !slices.Equal(got, want) {
		t.Errorf("train starts = %v, want %v", got, want)
	}
	if len(train) > 0 {
		if d := train[0].End.Sub(train[0].Start); d != 2*time.Hour {
			t.Errorf("train lasts %s", d)
		}
		if !slices.Equal(train[0].Deployers, []string{"dancy", "brennen"}) {
			t.Errorf("train deployers = %q", train[0].Deployers)
		}
	}

	freeze := byUID(ws, "freeze-thanksgiving-2026@poolbot.test")
	// All-day, in the calendar's X-WR-TIMEZONE (America/Los_Angeles, PST).
	if len(freeze) != 1 || !freeze[0].Start.Equal(utc("2026-11-26T08:00:00Z")) || !freeze[0].End.Equal(utc("2026-11-28T08:00:00Z")) {
		t.Errorf("freeze = %+v", freeze)
	}

	sw := byUID(ws, "s7-switchover@poolbot.test")
	if len(sw) != 1 || !sw[0].Start.Equal(utc("2026-11-04T19:00:00Z")) || !sw[0].End.Equal(utc("2026-11-04T19:30:00Z")) ||
		sw[0].URL != "https://phabricator.wikimedia.org/T422100" || !slices.Equal(sw[0].Deployers, []string{"kormat"}) {
		t.Errorf("switchover = %+v", sw)
	}

	puppet := byUID(ws, "floating-puppet@poolbot.test")
	if len(puppet) != 1 || !puppet[0].Start.Equal(utc("2026-10-27T14:00:00Z")) {
		t.Errorf("floating time not read in X-WR-TIMEZONE: %+v", puppet)
	}

	if got := byUID(ws, "cancelled-series@poolbot.test"); len(got) != 0 {
		t.Errorf("cancelled series expanded: %v", starts(got))
	}
	if len(ws) != 6+2+1+1+1 {
		t.Errorf("%d windows: %v", len(ws), ids(ws))
	}
}

const icsHead = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//poolbot tests//EN\r\n"
const icsTail = "END:VCALENDAR\r\n"

func vevent(lines ...string) string {
	return "BEGIN:VEVENT\r\nDTSTAMP:20261001T000000Z\r\n" + strings.Join(lines, "\r\n") + "\r\nEND:VEVENT\r\n"
}

func TestICSHorizon(t *testing.T) {
	data := icsHead +
		vevent("UID:long", "DTSTART:20261020T000000Z", "DTEND:20261103T000000Z", "SUMMARY:Two-week freeze") +
		vevent("UID:daily", "DTSTART:20250101T100000Z", "DTEND:20250101T110000Z", "RRULE:FREQ=DAILY", "SUMMARY:Daily") +
		vevent("UID:instant", "DTSTART:20261101T000000Z", "SUMMARY:Marker") +
		vevent("UID:past", "DTSTART:20261031T000000Z", "DTEND:20261031T120000Z") +
		icsTail
	ws, err := ExpandICS([]byte(data), utc("2026-11-01T00:00:00Z"), utc("2026-11-04T00:00:00Z"), ICSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := ids(NewSchedule(time.Time{}, time.Time{}, ws).Windows)
	want := []string{"long/20261020T000000Z", "instant/20261101T000000Z", "daily/20261101T100000Z", "daily/20261102T100000Z", "daily/20261103T100000Z"}
	if !slices.Equal(got, want) {
		t.Errorf("ids = %v\nwant  %v", got, want)
	}
}

func TestICSDateExdateOnTimedEvent(t *testing.T) {
	data := icsHead + vevent("UID:x", "DTSTART;TZID=America/Los_Angeles:20261102T060000", "DURATION:PT1H",
		"RRULE:FREQ=DAILY;COUNT=4", "EXDATE;VALUE=DATE:20261103", "RDATE;TZID=America/Los_Angeles:20261110T090000") + icsTail
	ws, err := ExpandICS([]byte(data), utc("2026-11-01T00:00:00Z"), utc("2026-11-15T00:00:00Z"), ICSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := starts(NewSchedule(time.Time{}, time.Time{}, ws).Windows), []string{"11-02T14:00Z", "11-04T14:00Z", "11-05T14:00Z", "11-10T17:00Z"}; !slices.Equal(got, want) {
		t.Errorf("starts = %v, want %v", got, want)
	}
}

// TestICSUnreadableEnd: an event whose end cannot be read (no DTEND or
// DURATION on a timed event, which RFC 5545 makes an instant, an unreadable
// or negative one, an end before the start) blocks from its start for the
// configured length and is named unreadable, like a Deployments card
// without an end; before, it was an instant (or the whole feed an error).
func TestICSUnreadableEnd(t *testing.T) {
	data := icsHead +
		vevent("UID:noend", "DTSTART:20261102T100000Z", "SUMMARY:Switchover") +
		vevent("UID:series", "DTSTART:20261102T120000Z", "RRULE:FREQ=DAILY;COUNT=2", "SUMMARY:Daily") +
		vevent("UID:eb", "DTSTART:20261102T140000Z", "DTEND:20261102T130000Z") +
		vevent("UID:nd", "DTSTART:20261102T150000Z", "DURATION:-PT1H") +
		vevent("UID:bad", "DTSTART:20261102T160000Z", "DTEND:tomorrow") +
		vevent("UID:allday", "DTSTART;VALUE=DATE:20261105") +
		icsTail
	ws, err := ExpandICS([]byte(data), utc("2026-11-01T00:00:00Z"), utc("2026-11-15T00:00:00Z"), ICSOptions{UnreadableLength: 45 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSchedule(time.Time{}, time.Time{}, ws)
	want := map[string]string{
		"noend/20261102T100000Z":  "no end time",
		"series/20261102T120000Z": "no end time",
		"series/20261103T120000Z": "no end time",
		"eb/20261102T140000Z":     "end 2026-11-02 13:00 UTC before start",
		"nd/20261102T150000Z":     `negative duration "-PT1H"`,
		"bad/20261102T160000Z":    `unreadable end time "tomorrow"`,
		"allday/20261105T000000Z": "",
	}
	if len(s.Windows) != len(want) {
		t.Fatalf("windows %v", ids(s.Windows))
	}
	for _, w := range s.Windows {
		why, ok := want[w.ID]
		if !ok || w.Unreadable != why {
			t.Errorf("%s: unreadable %q, want %q", w.ID, w.Unreadable, why)
		}
		length := 45 * time.Minute
		if why == "" {
			length = 24 * time.Hour // an all-day event is a day (RFC 5545)
		}
		if got := w.End.Sub(w.Start); got != length {
			t.Errorf("%s: lasts %s, want %s", w.ID, got, length)
		}
	}
	if a := s.Active(utc("2026-11-02T10:30:00Z")); len(a) != 1 || a[0].ID != "noend/20261102T100000Z" {
		t.Errorf("active at 10:30: %v", ids(a))
	}
}

func TestICSErrors(t *testing.T) {
	for _, tc := range []struct {
		name, ics, want string
	}{
		{"unknown TZID", vevent("UID:outlook", "DTSTART;TZID=W. Europe Standard Time:20260302T090000", "DTEND;TZID=W. Europe Standard Time:20260302T100000"),
			`event "outlook": unreadable calendar card: DTSTART: TZID: unknown time zone "W. Europe Standard Time"`},
		{"unknown TZID in EXDATE", vevent("UID:e", "DTSTART:20260302T090000Z", "RRULE:FREQ=DAILY;COUNT=2", "EXDATE;TZID=Mars/Olympus:20260303T090000"),
			`EXDATE: TZID: unknown time zone "Mars/Olympus"`},
		{"Local is not a zone", vevent("UID:l", "DTSTART;TZID=Local:20260302T090000"), `unknown time zone "Local"`},
		{"hourly", vevent("UID:h", "DTSTART:20260302T090000Z", "RRULE:FREQ=HOURLY;INTERVAL=24;BYHOUR=5"), "frequency HOURLY is not supported"},
		{"bad rrule", vevent("UID:r", "DTSTART:20260302T090000Z", "RRULE:FREQ=WEEKLY;BYDAY=XX"), `RRULE "FREQ=WEEKLY;BYDAY=XX"`},
		{"this and future", vevent("UID:t", "RECURRENCE-ID;RANGE=THISANDFUTURE:20260302T090000Z", "DTSTART:20260302T100000Z"), "THISANDFUTURE is not supported"},
		{"no dtstart", vevent("UID:n", "SUMMARY:x"), `event "n": unreadable calendar card: no DTSTART`},
		{"bad dtstart", vevent("UID:b", "DTSTART:2026-03-02T09:00:00Z"), `bad DATE-TIME "2026-03-02T09:00:00Z"`},
		{"period rdate", vevent("UID:p", "DTSTART:20260302T090000Z", "RDATE;VALUE=PERIOD:20260303T090000Z/PT1H"), "VALUE=PERIOD is not supported"},
		{"too many instances", vevent("UID:m", "DTSTART:20000101T000000Z", "RRULE:FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23"),
			"more than 100000 instances"},
		{"ancient", vevent("UID:a", "DTSTART:00010101T000000Z"), "year 1 out of range"},
		{"bad X-WR-TIMEZONE", "X-WR-TIMEZONE:Pacific Standard Time\r\n", `X-WR-TIMEZONE: unknown time zone "Pacific Standard Time"`},
		{"not a calendar", "", "parse iCalendar"},
		{"decoder panic", "X;A=B\r\n", "parse iCalendar: malformed content line (decoder: runtime error: index out of range"},
		{"long parameter", vevent("UID:p", "DTSTART;X-A="+strings.Repeat("a", 2000)+":20260302T090000Z"), "line 7: property name and parameters longer than 1024 bytes"},
		{"long folded parameter", vevent("UID:p", "DTSTART;X-A="+strings.Repeat("a\r\n ", 2000)+":20260302T090000Z"), "line 7: property name and parameters longer than 1024 bytes"},
		{"deep nesting", strings.Repeat("BEGIN:X\r\n", 20), "line 19: components nested deeper than 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := icsHead + tc.ics + icsTail
			if tc.name == "not a calendar" {
				data = "BEGIN:VCARD\r\nEND:VCARD\r\n"
			}
			_, err := ExpandICS([]byte(data), utc("2026-03-01T00:00:00Z"), utc("2026-03-15T00:00:00Z"), ICSOptions{})
			wantErrContains(t, err, tc.want)
		})
	}
}

func TestICalFileSource(t *testing.T) {
	clock := clockwork.NewFakeClockAt(utc("2026-11-01T12:00:00Z"))
	src, err := NewICal(ICalConfig{File: "testdata/deployments.ics", DeployersProperty: "X-DEPLOYERS"}, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	s, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Default horizon: 14 days ahead, 1 day back.
	if !s.Until.Equal(utc("2026-11-15T12:00:00Z")) || !s.FetchedAt.Equal(clock.Now()) || !strings.HasPrefix(s.Revision, "sha256:") {
		t.Errorf("until %s fetchedAt %s revision %q", s.Until, s.FetchedAt, s.Revision)
	}
	if got, want := starts(s.Windows), []string{"11-02T14:00Z", "11-04T14:00Z", "11-04T19:00Z", "11-05T14:00Z", "11-10T16:00Z"}; !slices.Equal(got, want) {
		t.Errorf("starts = %v, want %v", got, want)
	}
	// An operation needing three hours cannot fit past the horizon.
	if _, ok := s.FirstGap(utc("2026-11-15T10:00:00Z"), 3*time.Hour, 0, 0); ok {
		t.Errorf("FirstGap beyond the horizon succeeded")
	}

	missing, err := NewICal(ICalConfig{File: filepath.Join(t.TempDir(), "nope.ics")}, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = missing.Fetch(t.Context())
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// icsServer serves the fixture with an ETag and honours If-None-Match.
type icsServer struct {
	mu            sync.Mutex
	body          string
	etag          string
	full, notMods int
	status        int
}

func (s *icsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != 0 {
		http.Error(w, "upstream calendar unavailable", s.status)
		return
	}
	if r.Header.Get("If-None-Match") == s.etag {
		s.notMods++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.full++
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("ETag", s.etag)
	fmt.Fprint(w, s.body)
}

func TestICalURLSource(t *testing.T) {
	data, err := os.ReadFile("testdata/deployments.ics")
	if err != nil {
		t.Fatal(err)
	}
	h := &icsServer{body: string(data), etag: `"v1"`}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	clock := clockwork.NewFakeClockAt(utc("2026-11-01T12:00:00Z"))
	src, err := NewICal(ICalConfig{URL: srv.URL + "/deployments.ics"}, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(24 * time.Hour)
	s2, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h.full != 1 || h.notMods != 1 {
		t.Errorf("full %d, not modified %d", h.full, h.notMods)
	}
	// Same document, re-expanded for the later clock.
	if s1.Revision != s2.Revision || !s2.Until.Equal(s1.Until.Add(24*time.Hour)) || len(s2.Windows) == 0 {
		t.Errorf("s1 %s %s, s2 %s %s", s1.Revision, s1.Until, s2.Revision, s2.Until)
	}

	h.mu.Lock()
	h.status = http.StatusBadGateway
	h.mu.Unlock()
	_, err = src.Fetch(t.Context())
	wantErrContains(t, err, "calendar: ical: read "+srv.URL+"/deployments.ics: HTTP 502 Bad Gateway: upstream calendar unavailable")

	small, err := NewICal(ICalConfig{URL: srv.URL, MaxBodyBytes: 1024}, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.status = 0
	h.mu.Unlock()
	if _, err := small.Fetch(t.Context()); !errors.Is(err, errBodyTooLarge) {
		t.Errorf("oversized calendar: %v", err)
	}

	slow := hangingWiki(t)
	timeout, err := NewICal(ICalConfig{URL: slow.URL, Timeout: 50 * time.Millisecond}, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = timeout.Fetch(t.Context())
	wantErrContains(t, err, "no complete answer within 00m 00.05s")
}
