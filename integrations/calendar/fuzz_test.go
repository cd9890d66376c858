package calendar

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/net/html"
)

// checkWindows asserts what every caller relies on, whatever the input:
// sorted, UTC, End >= Start, unique IDs, no control characters in text that
// ends up in IRC lines.
func checkWindows(t *testing.T, ws []Window) {
	t.Helper()
	s := NewSchedule(time.Time{}, time.Time{}, ws)
	seen := map[string]bool{}
	for i, w := range s.Windows {
		if w.End.Before(w.Start) {
			t.Fatalf("window %q ends before it starts", w.ID)
		}
		if i > 0 && w.Start.Before(s.Windows[i-1].Start) {
			t.Fatal("not sorted")
		}
		if seen[w.ID] {
			t.Fatalf("duplicate ID %q", w.ID)
		}
		seen[w.ID] = true
		for _, text := range append(append([]string{w.ID, w.Name, w.URL}, w.Deployers...), w.Owners...) {
			if strings.ContainsFunc(text, func(r rune) bool { return unicode.IsControl(r) }) {
				t.Fatalf("control character in %q", text)
			}
		}
		for _, n := range append(append([]string{}, w.Deployers...), w.Owners...) {
			if n == "" || strings.ContainsAny(n, " \t") {
				t.Fatalf("bad nick %q", n)
			}
		}
	}
}

// markupSeeds are the seed inputs of the markup fuzz targets: small pages
// (the whole fixture is compared in TestParseMatchesOracle instead; as a
// seed, every mutation of its 45 KB that finds new coverage is minimized
// for up to a minute, during which the fuzzer runs nothing else).
func markupSeeds(t testing.TB) []string {
	fixture := readFixture(t, "deployments-2026-10-26.html")
	// The fixture's first two cards, with the page's wrapper and style.
	first := strings.Index(fixture, `<div class="deploycal-item"`)
	third := first
	for range 2 {
		third += 1 + strings.Index(fixture[third+1:], `<div class="deploycal-item"`)
	}
	return []string{
		fixture[:third] + "</div>",
		item,
		``,
		`<div class="deploycal-item" data-utcstart="2026-11-02 08:00:00Z" data-utcend="2026-11-02T08:00:00+00:00"><div class="deploycal-item-window">(Max 6 patches)(Max 12 patch)</div><span class="deploycal-item-deployer"><span class="ircnick">a</span></span></div>`,
		`<table><tr class="deploycal-item" id="x" data-utcstart="20261102T0800" data-utcend="20261102T0900"><td class="deploycal-item-changes"><b class="ircnick"><i class="deploycal-item">n</i></b></td></tr></table>`,
		`<DIV Class='deploycal-item' ID=a&amp;b data-UTCstart=20261102T0800 data-utcend="2026-11-02T09:00Z" data-utcend=x><pre class="deploycal-item-window">
W<br/>x<template>t</template><style class=ircnick>s</style></pre></DIV>`,
	}
}

// maxFuzzPage bounds the pages FuzzParseDeploymentsHTML tries: larger ones
// add no structure the small ones lack, and cost far more per run and far
// more to minimize.
const maxFuzzPage = 4 << 10

// FuzzParseDeploymentsHTML checks the parser's promises on any input.
//
// It used to run at ~50 execs/s: its seeds included the whole 45 KB
// fixture, and the fuzzer stops fuzzing while it minimizes a new
// interesting input, which for a mutated 45 KB page took up to the
// minimization limit (60 s) each time. The seeds are small now, and the
// size limit's early return is covered by a seed above it, so that no
// large input is ever new coverage (minimizing one that has to stay above
// the limit would again take the full minute).
func FuzzParseDeploymentsHTML(f *testing.F) {
	for _, s := range markupSeeds(f) {
		f.Add(s)
	}
	f.Add(strings.Repeat(item, maxFuzzPage/len(item)+1))
	f.Fuzz(func(t *testing.T, page string) {
		if len(page) > maxFuzzPage {
			return
		}
		p, err := ParseDeploymentsHTML(page, "https://wikitech.wikimedia.org/wiki/Deployments", 0)
		if err != nil {
			if len(p.Windows) != 0 {
				t.Fatal("windows returned with an error")
			}
			return
		}
		if len(p.Windows) == 0 {
			t.Fatal("no error and no windows")
		}
		checkWindows(t, p.Windows)
	})
}

func FuzzExpandICS(f *testing.F) {
	fixture, err := os.ReadFile("testdata/deployments.ics")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture)
	f.Add([]byte(icsHead + vevent("UID:x", "DTSTART;TZID=America/Los_Angeles:20261102T060000", "DURATION:P1DT1H",
		"RRULE:FREQ=MONTHLY;BYDAY=-1FR;BYSETPOS=1;COUNT=4", "EXDATE;VALUE=DATE:20261103") + icsTail))
	f.Add([]byte(icsHead + vevent("UID:y", "DTSTART;VALUE=DATE:20261102", "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29") + icsTail))
	f.Add([]byte(icsHead + vevent("UID:z", "RECURRENCE-ID;VALUE=DATE:20261102", "DTSTART:20261102T100000Z", "STATUS:CANCELLED") + icsTail))
	from, to := utc("2026-11-01T00:00:00Z"), utc("2026-11-15T00:00:00Z")
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		ws, err := ExpandICS(data, from, to, ICSOptions{DeployersProperty: "X-DEPLOYERS"})
		if err != nil {
			return
		}
		for _, w := range ws {
			if !(Window{Start: w.Start, End: w.End}).overlaps(from, to) {
				t.Fatalf("window %q (%s–%s) outside the horizon", w.ID, w.Start, w.End)
			}
		}
		// ICS deployers are display names (ATTENDEE CN), so only check
		// the ordering and control-character invariants here.
		for i := range ws {
			ws[i].Deployers = nil
		}
		checkWindows(t, ws)
	})
}

// yearOfMarkup generates the rendered page for 52 weeks of a busy
// calendar: ~1500 windows in the semantic markup.
func yearOfMarkup() string {
	var b strings.Builder
	b.WriteString(`<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">`)
	day := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	for range 52 * 5 {
		fmt.Fprintf(&b, `<h3><span class="mw-headline">%s</span></h3>`, day.Format("Monday, January 2"))
		for _, h := range []int{7, 13, 14, 15, 18, 20} {
			start := day.Add(time.Duration(h) * time.Hour)
			end := start.Add(time.Hour)
			id := "deploycal-item-" + start.Format("20060102T1504")
			fmt.Fprintf(&b, `<div class="deploycal-item" id="%s" data-utcstart="%s" data-utcend="%s">`, id, start.Format("2006-01-02T15:04:05-07:00"), end.Format("2006-01-02T15:04:05-07:00"))
			fmt.Fprintf(&b, `<div class="deploycal-item-time"><span class="deploycal-time-utc"><time datetime="%s">%s UTC</time></span></div>`, start.Format(time.RFC3339), start.Format("15:04"))
			b.WriteString(`<div class="deploycal-item-window"><a href="/wiki/Backport_windows" title="Backport windows">UTC afternoon backport window</a><br /><small><b>Your patch may or may not be deployed at the sole discretion of the deployer</b><br /><b>(Max 6 patches)</b></small></div>`)
			b.WriteString(`<div class="deploycal-item-deployer"><b>Deployer:</b> <span class="ircnick-container"><span class="ircnick" title="IRC nickname">Lucas_WMDE</span> <span class="ircnick-name">(Lucas)</span></span>, <span class="ircnick-container"><span class="ircnick" title="IRC nickname">Urbanecm</span></span></div>`)
			b.WriteString(`<div class="deploycal-item-changes"><b>Changes:</b><ul><li><span class="ircnick-container"><span class="ircnick" title="IRC nickname">irc-nickname</span> (Requesting Developer)</span><ul><li><i>Gerrit link to backport or config change</i></li></ul></li></ul></div></div>`)
		}
		day = day.AddDate(0, 0, 1)
		if day.Weekday() == time.Saturday {
			day = day.AddDate(0, 0, 2)
		}
	}
	b.WriteString(`</div>`)
	return b.String()
}

func BenchmarkParseDeploymentsHTMLYear(b *testing.B) {
	page := yearOfMarkup()
	p, err := ParseDeploymentsHTML(page, fixturePageURL, 0)
	if err != nil || len(p.Windows) != 1560 {
		b.Fatalf("%d windows, %v", len(p.Windows), err)
	}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDeploymentsHTML(page, fixturePageURL, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExpandICSFixture(b *testing.B) {
	data, err := os.ReadFile("testdata/deployments.ics")
	if err != nil {
		b.Fatal(err)
	}
	from, to := utc("2026-10-25T00:00:00Z"), utc("2026-11-08T00:00:00Z")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ExpandICS(data, from, to, ICSOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarkupTokensYear is the floor under
// BenchmarkParseDeploymentsHTMLYear: markupTokens alone over the same page.
func BenchmarkMarkupTokensYear(b *testing.B) {
	page := yearOfMarkup()
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		z := newMarkupTokens(page)
		for z.next() != tokenEnd {
		}
	}
}

// BenchmarkTokenizeYear is x/net/html's Tokenizer over the same page, for
// comparison with BenchmarkMarkupTokensYear (it allocates two small copies
// of every attribute name).
func BenchmarkTokenizeYear(b *testing.B) {
	page := yearOfMarkup()
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		z := html.NewTokenizer(strings.NewReader(page))
		for z.Next() != html.ErrorToken {
		}
	}
}
