package calendar

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const fixturePageURL = "https://wikitech.wikimedia.org/wiki/Deployments"

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func findWindow(t *testing.T, ws []Window, id string) Window {
	t.Helper()
	for _, w := range ws {
		if w.ID == id {
			return w
		}
	}
	t.Fatalf("no window %q among %v", id, ids(ws))
	return Window{}
}

// TestParseFixtureWeekAcrossDST parses two weeks of the rendered Deployments
// page around the end of US daylight saving time (2026-11-01): the windows
// are pinned to San Francisco, so from the second week on their UTC times
// are one hour later.
func TestParseFixtureWeekAcrossDST(t *testing.T) {
	page, err := ParseDeploymentsHTML(readFixture(t, "deployments-2026-10-26.html"), fixturePageURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range page.Windows {
		if w.Unreadable != "" {
			t.Errorf("%s: unreadable: %s", w.ID, w.Unreadable)
		}
	}
	if len(page.Windows) != 36 {
		t.Fatalf("got %d windows, want 36: %v", len(page.Windows), ids(page.Windows))
	}

	for _, tc := range []struct {
		id, name, start, end string
		deployers, owners    []string
	}{
		{ // Monday, PDT: 00:00 SF = 07:00 UTC
			id: "deploycal-item-20261026T0700", name: "UTC morning backport window",
			start: "2026-10-26T07:00:00Z", end: "2026-10-26T08:00:00Z",
			deployers: []string{"Amir1", "Urbanecm"},
		},
		{ // Monday after the change, PST: 00:00 SF = 08:00 UTC
			id: "deploycal-item-20261102T0800", name: "UTC morning backport window",
			start: "2026-11-02T08:00:00Z", end: "2026-11-02T09:00:00Z",
			deployers: []string{"Amir1", "Urbanecm"},
		},
		{ // owners: placeholder dropped, duplicate dropped
			id: "deploycal-item-20261027T0700", name: "UTC morning backport window",
			start: "2026-10-27T07:00:00Z", end: "2026-10-27T08:00:00Z",
			deployers: []string{"Amir1", "Urbanecm"}, owners: []string{"Lucas_WMDE", "TheresNoTime"},
		},
		{ // three deployers, one owner
			id: "deploycal-item-20261102T1400", name: "UTC afternoon backport window",
			start: "2026-11-02T14:00:00Z", end: "2026-11-02T15:00:00Z",
			deployers: []string{"Lucas_WMDE", "TheresNoTime", "Urbanecm"}, owners: []string{"Jdlrobson"},
		},
		{ // no deployers, only "(Max 6 patches)" in the title
			id: "deploycal-item-20261027T1400", name: "Puppet request window",
			start: "2026-10-27T14:00:00Z", end: "2026-10-27T15:00:00Z",
		},
		{ // the train, two hours
			id: "deploycal-item-20261103T1600", name: "MediaWiki train - Utc-0+Utc-7 Version (group0)",
			start: "2026-11-03T16:00:00Z", end: "2026-11-03T18:00:00Z",
			deployers: []string{"dancy", "brennen"},
		},
		{ // half an hour, hand-written
			id: "deploycal-item-20261104T1900", name: "Database primary switchover for s7",
			start: "2026-11-04T19:00:00Z", end: "2026-11-04T19:30:00Z",
			deployers: []string{"kormat"},
		},
		{ // the last one: nobody signed up
			id: "deploycal-item-20261106T1800", name: "Weekly security deployment window",
			start: "2026-11-06T18:00:00Z", end: "2026-11-06T19:00:00Z",
		},
	} {
		w := findWindow(t, page.Windows, tc.id)
		if w.Name != tc.name {
			t.Errorf("%s: name %q, want %q", tc.id, w.Name, tc.name)
		}
		if !w.Start.Equal(utc(tc.start)) || !w.End.Equal(utc(tc.end)) {
			t.Errorf("%s: %s–%s, want %s–%s", tc.id, w.Start, w.End, tc.start, tc.end)
		}
		if !slices.Equal(w.Deployers, tc.deployers) {
			t.Errorf("%s: deployers %q, want %q", tc.id, w.Deployers, tc.deployers)
		}
		if !slices.Equal(w.Owners, tc.owners) {
			t.Errorf("%s: owners %q, want %q", tc.id, w.Owners, tc.owners)
		}
		if want := fixturePageURL + "#" + tc.id; w.URL != want {
			t.Errorf("%s: url %q, want %q", tc.id, w.URL, want)
		}
	}

	// The afternoon and late backport windows move by an hour too.
	var hours []int
	for _, w := range page.Windows {
		if w.Name == "UTC late backport window" {
			hours = append(hours, w.Start.Hour())
		}
	}
	if want := []int{20, 20, 20, 20, 21, 21, 21, 21}; !slices.Equal(hours, want) {
		t.Errorf("late backport UTC hours = %v, want %v", hours, want)
	}

	// Coverage: the second listed week ends on Monday 2026-11-09.
	if got := coveredUntil(page.Windows); !got.Equal(utc("2026-11-09T00:00:00Z")) {
		t.Errorf("coveredUntil = %s", got)
	}
}

const item = `<div class="deploycal-item" id="deploycal-item-20261102T0800" data-utcstart="2026-11-02T08:00:00+00:00" data-utcend="2026-11-02T09:00:00+00:00"><div class="deploycal-item-window">W</div></div>`

func TestParseDeploymentsHTMLFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name, html string
		want       string // substring of the error
	}{
		{"empty page", ``, "no deployment windows"},
		{"other page", `<div class="mw-parser-output"><p>Hello</p><div class="deploycal-itemx"></div></div>`, "no deployment windows"},
		{"old table markup only", `<table><tr class="deploycal-row"><td><span class="deploycal-time-utc"><time datetime="2026-11-02T08:00Z">08:00</time></span></td></tr></table>`, "no deployment windows"},
		{"start unreadable", `<div class="deploycal-item" id="a" data-utcstart="tomorrow" data-utcend="2026-11-02T09:00:00Z"></div><div class="deploycal-item" id="b"></div>`,
			`unreadable calendar card a (unreadable start time "tomorrow") (and 1 more like it): the calendar cannot be read`},
		{"no start", item + `<div class="deploycal-item" data-utcend="2026-11-02T09:00:00Z"><div class="deploycal-item-window">W</div></div>`,
			`unreadable calendar card #2 (no start time): the calendar cannot be read`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDeploymentsHTML(tc.html, "", 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.want == "no deployment windows" && !errors.Is(err, ErrNoWindows) {
				t.Errorf("err does not wrap ErrNoWindows")
			}
			if strings.Contains(tc.want, "unreadable calendar card") && !errors.Is(err, ErrUnreadableCard) {
				t.Errorf("err does not wrap ErrUnreadableCard")
			}
		})
	}
}

// itemsTestPage has good, broken, duplicate and nested cards.
const itemsTestPage = `<div class="mw-parser-output">` +
	item + // good
	`<div class="deploycal-item" id="no-end" data-utcstart="2026-11-02T08:00:00Z"></div>` +
	`<div class="deploycal-item" id="inverted" data-utcstart="2026-11-02T10:00:00Z" data-utcend="2026-11-02T09:00:00Z"></div>` +
	`<div class="deploycal-item" data-utcstart="2026-11-02 12:00:00Z" data-utcend="2026-11-02 13:00:00Z"><span class="deploycal-item-window">no id</span></div>` +
	`<div class="deploycal-item other" id="deploycal-item-20261102T0800" data-utcstart="2026-11-02T08:00:00Z" data-utcend="2026-11-02T08:00:00Z">dup id, zero length</div>` +
	`<table><tr class="x deploycal-item	y" id="outer" data-utcstart="2026-11-02T14:00:00Z" data-utcend="2026-11-02T15:00:00Z">` +
	`<td class="deploycal-item-window">Outer <span class="deploycal-item" id="inner" data-utcstart="2026-11-02T14:30:00Z" data-utcend="2026-11-02T14:45:00Z"><span class="deploycal-item-window">Inner</span><span class="deploycal-item-deployer"><span class="ircnick">innernick</span></span></span></td></tr></table>` +
	`</div>`

func TestParseDeploymentsHTMLItems(t *testing.T) {
	page, err := ParseDeploymentsHTML(itemsTestPage, fixturePageURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(page.Windows), []string{"deploycal-item-20261102T0800", "no-end", "inverted", "deploycal-item-20261102T1200", "deploycal-item-20261102T0800-2", "outer", "inner"}; !slices.Equal(got, want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
	for i, want := range []string{"", "no end time", "end 2026-11-02 09:00 UTC before start", "", "", "", ""} {
		if got := page.Windows[i].Unreadable; got != want {
			t.Errorf("%s: unreadable %q, want %q", page.Windows[i].ID, got, want)
		}
	}
	noID := page.Windows[3]
	if noID.URL != fixturePageURL || noID.Name != "no id" {
		t.Errorf("item without id: %+v", noID)
	}
	dup := page.Windows[4]
	if dup.URL != fixturePageURL+"#deploycal-item-20261102T0800" || !dup.Start.Equal(dup.End) {
		t.Errorf("duplicate id item: %+v", dup)
	}
	outer, inner := page.Windows[5], page.Windows[6]
	if outer.Name != "Outer" || len(outer.Deployers) != 0 {
		t.Errorf("outer item took its nested item's content: %+v", outer)
	}
	if inner.Name != "Inner" || !slices.Equal(inner.Deployers, []string{"innernick"}) {
		t.Errorf("inner item: %+v", inner)
	}
}

// namesTestPage has a card with every kind of name and nick noise.
const namesTestPage = `<div class="deploycal-item" id="x" data-utcstart="2026-11-02T08:00:00Z" data-utcend="2026-11-02T09:00:00Z">` +
	`<div class="deploycal-item-window"><style>.a{color:red}</style><a href="/wiki/Backport_windows">UTC&nbsp;morning<br>backport   window</a>` +
	`<small><b>Your patch may or may not be deployed at the sole discretion of the deployer</b><b>(Max 6 patches)</b> (Max two patches) (Max 1 patch)</small><!-- comment --></div>` +
	`<div class="deploycal-item-deployer"><span class="ircnick"> Amir1 <span class="ircnick-name">(Amir)</span></span>, <span class="ircnick"><b>Urbanecm</b></span>, <span class="ircnick">amir1</span>, <span class="ircnick">evil&#13;&#10;PRIVMSG #x :hi&#0;</span><span class="ircnick">Lucas_WMDE</span><span class="ircnick">1abc</span><span class="ircnick">[m]x` + "`" + `^{|}-</span></div>` +
	`<div class="deploycal-item-changes"><span class="ircnick">IRC-Nickname</span><span class="ircnick">Someone</span><span class="ircnick"></span></div>` +
	`</div>`

// TestUnreadableCardBlocks: a card whose end cannot be read blocks from its
// start for the configured length, names itself unreadable, and is found by
// Active and Blocking; before, it was skipped and the gate saw nothing.
func TestUnreadableCardBlocks(t *testing.T) {
	const card = `<div class="deploycal-item" id="deploycal-item-20261102T1000" data-utcstart="2026-11-02T10:00:00Z"%s>` +
		`<div class="deploycal-item-window">Emergency config change</div>` +
		`<div class="deploycal-item-deployer"><span class="ircnick">Amir1</span></div></div>`
	for _, tc := range []struct {
		name, end string
		length    time.Duration
		want      string
		wantEnd   string
	}{
		{"no end", ``, 0, "no end time", "2026-11-02T11:00:00Z"},
		{"no end, 30m", ``, 30 * time.Minute, "no end time", "2026-11-02T10:30:00Z"},
		{"end unreadable", ` data-utcend="11:00"`, 0, `unreadable end time "11:00"`, "2026-11-02T11:00:00Z"},
		{"end before start", ` data-utcend="2026-11-02T09:00:00Z"`, 0, "end 2026-11-02 09:00 UTC before start", "2026-11-02T11:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, err := ParseDeploymentsHTML(item+fmt.Sprintf(card, tc.end), fixturePageURL, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			s := NewSchedule(utc("2026-11-02T09:00:00Z"), utc("2026-11-09T00:00:00Z"), page.Windows)
			at := utc("2026-11-02T10:20:00Z")
			active := s.Active(at)
			if len(active) != 1 || active[0].ID != "deploycal-item-20261102T1000" {
				t.Fatalf("active at 10:20: %+v", active)
			}
			w := active[0]
			if w.Unreadable != tc.want || !w.End.Equal(utc(tc.wantEnd)) || w.Name != "Emergency config change" || !slices.Equal(w.Deployers, []string{"Amir1"}) {
				t.Errorf("window %+v, want unreadable %q until %s", w, tc.want, tc.wantEnd)
			}
			if b := s.Blocking(utc("2026-11-02T09:50:00Z"), 5*time.Minute, 0, 10*time.Minute); len(b) != 1 || b[0].ID != w.ID {
				t.Errorf("blocking before it: %+v", b)
			}
			if gap, ok := s.FirstGap(at, 10*time.Minute, 0, 0); !ok || !gap.Equal(w.End) {
				t.Errorf("first gap %s %v, want %s", gap, ok, w.End)
			}
		})
	}
}

func TestWindowNameAndNicks(t *testing.T) {
	page, err := ParseDeploymentsHTML(namesTestPage, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	w := page.Windows[0]
	if want := "UTC morning backport window (Max two patches)"; w.Name != want {
		t.Errorf("name = %q, want %q", w.Name, want)
	}
	if want := []string{"Amir1", "Urbanecm", "Lucas_WMDE", "[m]x`^{|}-"}; !slices.Equal(w.Deployers, want) {
		t.Errorf("deployers = %q, want %q", w.Deployers, want)
	}
	if want := []string{"Someone"}; !slices.Equal(w.Owners, want) {
		t.Errorf("owners = %q, want %q", w.Owners, want)
	}
	if w.URL != "" {
		t.Errorf("url without page url = %q", w.URL)
	}
}

func TestParseUTCAttr(t *testing.T) {
	want := utc("2026-11-02T08:00:00Z")
	for _, v := range []string{
		"2026-11-02T08:00:00Z",
		"2026-11-02T08:00:00+00:00",
		"2026-11-02T09:00:00+01:00",
		"2026-11-02T00:00:00-08:00",
		"2026-11-02T08:00:00.000Z",
		"2026-11-02 08:00:00Z",
		"2026-11-02 08:00:00+00:00",
		"2026-11-02  08:00:00 +00:00",
		"2026-11-02T08:00:00+0000",
		"2026-11-02T08:00:00+00",
		"2026-11-02T08:00Z",
		"2026-11-02T08:00:00",
		"2026-11-02 08:00",
		"2026-11-02 08:00:00 UTC",
		"2026-11-02t08:00:00z",
		" 2026-11-02T08:00:00Z\n",
		"20261102T080000Z",
		"20261102T0800",
	} {
		got, err := parseUTCAttr(v)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseUTCAttr(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "tomorrow", "2026-11-02", "2026-11-02T25:00:00Z", "1899-11-02T08:00:00Z", "2026-11-02T08:00:00+00:00 junk", "1762070400"} {
		if got, err := parseUTCAttr(v); err == nil {
			t.Errorf("parseUTCAttr(%q) = %v, want error", v, got)
		}
	}
}

func TestCoveredUntil(t *testing.T) {
	mk := func(starts ...string) []Window {
		var ws []Window
		for _, s := range starts {
			ws = append(ws, Window{Start: utc(s), End: utc(s).Add(time.Hour)})
		}
		return ws
	}
	for _, tc := range []struct {
		name   string
		starts []string
		want   string
	}{
		{"one week", []string{"2026-10-26T07:00:00Z", "2026-10-30T17:00:00Z"}, "2026-11-02T00:00:00Z"},
		{"sunday window", []string{"2026-11-01T23:00:00Z"}, "2026-11-02T00:00:00Z"},
		{"two weeks, unordered", []string{"2026-11-05T21:00:00Z", "2026-10-26T07:00:00Z"}, "2026-11-09T00:00:00Z"},
		{"lone window after a gap week", []string{"2026-10-26T07:00:00Z", "2026-11-12T18:00:00Z"}, "2026-11-02T00:00:00Z"},
	} {
		if got := coveredUntil(mk(tc.starts...)); !got.Equal(utc(tc.want)) {
			t.Errorf("%s: coveredUntil = %s, want %s", tc.name, got, tc.want)
		}
	}
	if !coveredUntil(nil).IsZero() {
		t.Error("no windows: want zero")
	}
}
