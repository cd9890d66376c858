package calendar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// maxInstancesPerEvent bounds the recurrence expansion of one event (counted
// from its DTSTART up to the end of the horizon), so a daily rule starting in
// the year 1800 cannot stall the bot. Exceeding it is an error.
const maxInstancesPerEvent = 100_000

// ICal reads deployment windows from an iCalendar feed (URL or file).
//
// Fetching over HTTP is conditional: the ETag and Last-Modified of the last
// good response are sent back (If-None-Match, If-Modified-Since) and a 304
// reuses the cached document. The document is expanded again on every Fetch
// because the horizon moves with the clock.
type ICal struct {
	cfg  ICalConfig
	opt  Options
	zone *time.Location

	mu           sync.Mutex
	body         []byte
	etag         string
	lastModified string
}

// NewICal returns a source reading cfg.URL or cfg.File.
func NewICal(cfg ICalConfig, opt Options) (*ICal, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate("calendar.ical"); err != nil {
		return nil, err
	}
	zone, err := loadZone(cfg.Timezone)
	if err != nil {
		return nil, fmt.Errorf("calendar.ical.timezone: %w", err)
	}
	return &ICal{cfg: cfg, opt: opt.withDefaults(), zone: zone}, nil
}

// Fetch implements Source. The schedule holds the windows overlapping
// [now-lookback, now+horizon) and its Until is now+horizon.
func (c *ICal) Fetch(ctx context.Context) (Schedule, error) {
	ctx, cancel := withFetchTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	where := c.cfg.File
	if where == "" {
		where = c.cfg.URL
	}
	body, err := c.read(ctx)
	if err != nil {
		return Schedule{}, fmt.Errorf("calendar: ical: read %s: %w", where, explainTimeout(ctx, err))
	}
	now := c.opt.Clock.Now()
	from, to := now.Add(-c.cfg.Lookback), now.Add(c.cfg.Horizon)
	windows, err := ExpandICS(body, from, to, ICSOptions{Zone: c.zone, DeployersProperty: c.cfg.DeployersProperty,
		UnreadableLength: c.cfg.UnreadableWindowLength})
	if err != nil {
		return Schedule{}, fmt.Errorf("calendar: ical: %s: %w", where, err)
	}
	sched := NewSchedule(now, to, windows)
	sum := sha256.Sum256(body)
	sched.Revision = "sha256:" + hex.EncodeToString(sum[:6])
	c.opt.Logger.Debug("calendar: expanded iCalendar", "source", where, "windows", len(windows), "revision", sched.Revision)
	return sched, nil
}

func (c *ICal) read(ctx context.Context) ([]byte, error) {
	if c.cfg.File != "" {
		f, err := os.Open(c.cfg.File)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBody(f, c.cfg.MaxBodyBytes)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Accept", "text/calendar")
	c.mu.Lock()
	cached, etag, lastModified := c.body, c.etag, c.lastModified
	c.mu.Unlock()
	if cached != nil {
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		if lastModified != "" {
			req.Header.Set("If-Modified-Since", lastModified)
		}
	}
	resp, err := c.opt.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, c.cfg.MaxBodyBytes)
	if err != nil {
		return nil, fmt.Errorf("read reply (HTTP %d): %w", resp.StatusCode, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified && cached != nil:
		return cached, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, snippet(body))
	}
	c.mu.Lock()
	c.body, c.etag, c.lastModified = body, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	c.mu.Unlock()
	return body, nil
}

// ICSOptions say how to read an iCalendar document.
type ICSOptions struct {
	// Zone is used for floating times and all-day (VALUE=DATE) events when
	// the calendar has no X-WR-TIMEZONE; nil means UTC.
	Zone *time.Location
	// DeployersProperty names an X- property whose comma-separated values
	// are the deployers' nicks. Events without it (or when empty) take the
	// CN parameter of each ATTENDEE.
	DeployersProperty string
	// UnreadableLength is how long an event whose end cannot be read lasts
	// (0: DefaultUnreadableWindowLength); see ExpandICS.
	UnreadableLength time.Duration
}

// ExpandICS parses an iCalendar document and returns the instances of its
// events that overlap [from, to):
//
//   - RRULE (DAILY, WEEKLY, MONTHLY, YEARLY; sub-daily frequencies are an
//     error) and RDATE add instances, EXDATE removes them; COUNT counts
//     before EXDATE removes, as RFC 5545 says.
//   - An event with RECURRENCE-ID replaces the instance of the same UID that
//     starts at that time; if its STATUS is CANCELLED the instance is removed.
//     RANGE=THISANDFUTURE is an error.
//   - An event whose STATUS is CANCELLED is dropped, with all its instances.
//   - TZID must name an IANA zone (time.LoadLocation); anything else,
//     including Windows zone names, is an error: the wall clock of such an
//     event cannot be placed in UTC. VTIMEZONE definitions are not read.
//   - DATE values (all-day events) are days in the calendar's X-WR-TIMEZONE,
//     or opt.Zone; DTEND defaults to DTSTART + 1 day for them.
//   - A timed event without DTEND or DURATION (RFC 5545 makes it end when it
//     starts), or whose DTEND or DURATION cannot be read or ends before
//     DTSTART, lasts opt.UnreadableLength and its windows carry
//     Window.Unreadable: a deployment calendar entry without an end is not
//     an instant, and the gate stays closed around what can be read, as for
//     a Deployments card. An event without a readable DTSTART is an error
//     wrapping ErrUnreadableCard.
//
// Window fields: Name = SUMMARY, ID = "<UID>/<start as 20060102T150405Z>"
// (the RECURRENCE-ID's time for an override, so a moved instance keeps its
// ID), URL = URL, Deployers as described in ICSOptions, no Owners.
// Any event that cannot be understood makes the whole document an error.
func ExpandICS(data []byte, from, to time.Time, opt ICSOptions) ([]Window, error) {
	cal, err := decodeICS(data)
	if err != nil {
		return nil, fmt.Errorf("parse iCalendar: %w", err)
	}
	zone := opt.Zone
	if zone == nil {
		zone = time.UTC
	}
	if p := cal.Props.Get("X-WR-TIMEZONE"); p != nil {
		if zone, err = loadZone(strings.TrimSpace(p.Value)); err != nil {
			return nil, fmt.Errorf("X-WR-TIMEZONE: %w", err)
		}
	}
	x := expander{zone: zone, from: from, to: to, deployersProp: strings.ToUpper(opt.DeployersProperty),
		unreadableLength: opt.UnreadableLength}
	if x.unreadableLength <= 0 {
		x.unreadableLength = DefaultUnreadableWindowLength
	}

	type override struct {
		ev    ical.Event
		recur instantKey
	}
	var masters []ical.Event
	var overrides []override
	replaced := map[string]*instantSet{} // UID → instances replaced by overrides
	masterByUID := map[string]ical.Event{}
	for _, ev := range cal.Events() {
		uid := eventUID(ev)
		rid := ev.Props.Get(ical.PropRecurrenceID)
		if rid == nil {
			masters = append(masters, ev)
			if _, dup := masterByUID[uid]; !dup {
				masterByUID[uid] = ev
			}
			continue
		}
		if strings.EqualFold(rid.Params.Get("RANGE"), "THISANDFUTURE") {
			return nil, fmt.Errorf("event %q: RECURRENCE-ID;RANGE=THISANDFUTURE is not supported", uid)
		}
		t, isDate, err := x.propTime(rid, rid.Value)
		if err != nil {
			return nil, fmt.Errorf("event %q: RECURRENCE-ID: %w", uid, err)
		}
		k := instantKey{t: t, isDate: isDate}
		if replaced[uid] == nil {
			replaced[uid] = &instantSet{}
		}
		replaced[uid].add(k)
		overrides = append(overrides, override{ev: ev, recur: k})
	}

	var out []Window
	for _, ev := range masters {
		uid := eventUID(ev)
		ws, err := x.expandMaster(ev, uid, replaced[uid])
		if err != nil {
			return nil, fmt.Errorf("event %q: %w", uid, err)
		}
		out = append(out, ws...)
	}
	for _, o := range overrides {
		uid := eventUID(o.ev)
		if cancelled(o.ev) {
			continue
		}
		var master *ical.Event
		if m, ok := masterByUID[uid]; ok {
			master = &m
		}
		w, ok, err := x.override(o.ev, uid, o.recur, master)
		if err != nil {
			return nil, fmt.Errorf("event %q (RECURRENCE-ID %s): %w", uid, o.recur.t.UTC().Format(time.RFC3339), err)
		}
		if ok {
			out = append(out, w)
		}
	}
	return out, nil
}

// Limits checked before go-ical's decoder sees a document. Its parameter
// parser builds values one byte at a time (quadratic in their length), and
// it recurses once per nested BEGIN; real calendars stay far below both.
const (
	maxICSParamBytes = 1024
	maxICSNesting    = 16
)

// decodeICS decodes data with go-ical after checking the limits above, and
// turns a panic in the decoder (it panics on some malformed parameter
// lists, e.g. "X;A=B" without a colon) into an error.
func decodeICS(data []byte) (cal *ical.Calendar, err error) {
	if err := precheckICS(data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			cal, err = nil, fmt.Errorf("malformed content line (decoder: %v)", r)
		}
	}()
	return ical.NewDecoder(bytes.NewReader(data)).Decode()
}

// precheckICS unfolds content lines as go-ical does (a line starting with a
// space or tab continues the previous one) and checks each line's name and
// parameters (everything before the first colon outside double quotes) and
// the BEGIN/END nesting depth.
func precheckICS(data []byte) error {
	depth, lineNo, logicalNo := 0, 0, 0
	check := func(line []byte, lineNo int) error {
		inQuote := false
		for i, c := range line {
			if i > maxICSParamBytes {
				return fmt.Errorf("line %d: property name and parameters longer than %d bytes", lineNo, maxICSParamBytes)
			}
			if c == '"' {
				inQuote = !inQuote
			} else if c == ':' && !inQuote {
				name := strings.ToUpper(string(line[:i]))
				switch name {
				case "BEGIN":
					depth++
					if depth > maxICSNesting {
						return fmt.Errorf("line %d: components nested deeper than %d", lineNo, maxICSNesting)
					}
				case "END":
					depth--
				}
				return nil
			}
		}
		return nil
	}
	var logical []byte
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if len(logical) <= maxICSParamBytes+1 {
				logical = append(logical, line[1:]...)
			}
			continue
		}
		if err := check(logical, logicalNo); err != nil {
			return err
		}
		logical, logicalNo = append(logical[:0], line...), lineNo
	}
	return check(logical, logicalNo)
}

type expander struct {
	zone             *time.Location
	from, to         time.Time
	deployersProp    string
	unreadableLength time.Duration
}

// instantKey is an instance's start; a DATE value matches any instance
// starting on that day (some producers write EXDATE;VALUE=DATE for timed
// events).
type instantKey struct {
	t      time.Time
	isDate bool
}

type instantSet struct {
	instants map[int64]bool  // Unix nanoseconds
	dates    map[string]bool // YYYYMMDD
}

// add records k. A DATE is kept as the calendar day it names; has compares
// it with the instance's day in the instance's own zone.
func (s *instantSet) add(k instantKey) {
	if k.isDate {
		if s.dates == nil {
			s.dates = map[string]bool{}
		}
		s.dates[k.t.Format("20060102")] = true
		return
	}
	if s.instants == nil {
		s.instants = map[int64]bool{}
	}
	s.instants[k.t.UnixNano()] = true
}

// has reports whether the instance starting at t (in the event's zone) is in
// the set.
func (s *instantSet) has(t time.Time) bool {
	if s == nil {
		return false
	}
	return s.instants[t.UnixNano()] || s.dates[t.Format("20060102")]
}

func eventUID(ev ical.Event) string {
	if p := ev.Props.Get(ical.PropUID); p != nil {
		if uid := cleanText(p.Value); uid != "" {
			return uid
		}
	}
	return "no-uid"
}

func cancelled(ev ical.Event) bool {
	p := ev.Props.Get(ical.PropStatus)
	return p != nil && strings.EqualFold(strings.TrimSpace(p.Value), string(ical.EventCancelled))
}

// eventTiming is an event's DTSTART and how to compute an instance's end.
type eventTiming struct {
	start  time.Time
	isDate bool
	// exact is added to a start when the length came from DTEND (RFC 5545:
	// the same exact duration for every instance); otherwise the length is
	// nominal: days added on the calendar (so an all-day event stays a whole
	// local day across DST) plus the rest.
	exact        time.Duration
	nominalDays  int
	nominalExtra time.Duration
	nominal      bool
	// unreadable says why the end could not be read (Window.Unreadable);
	// exact is then the configured length.
	unreadable string
}

func (t eventTiming) end(start time.Time) time.Time {
	if t.nominal {
		return start.AddDate(0, 0, t.nominalDays).Add(t.nominalExtra)
	}
	return start.Add(t.exact)
}

func (x *expander) timing(ev ical.Event) (eventTiming, error) {
	var tm eventTiming
	sp := ev.Props.Get(ical.PropDateTimeStart)
	if sp == nil {
		return tm, fmt.Errorf("%w: no DTSTART", ErrUnreadableCard)
	}
	var err error
	if tm.start, tm.isDate, err = x.propTime(sp, sp.Value); err != nil {
		return tm, fmt.Errorf("%w: DTSTART: %w", ErrUnreadableCard, err)
	}
	unreadable := func(why string) (eventTiming, error) {
		tm.nominal, tm.exact, tm.unreadable = false, x.unreadableLength, why
		return tm, nil
	}
	if ep := ev.Props.Get(ical.PropDateTimeEnd); ep != nil {
		end, _, err := x.propTime(ep, ep.Value)
		if err != nil {
			return unreadable(fmt.Sprintf("unreadable end time %q", attrSnippet([]byte(ep.Value))))
		}
		if end.Before(tm.start) {
			return unreadable("end " + end.UTC().Format("2006-01-02 15:04") + " UTC before start")
		}
		if tm.isDate {
			// Whole days on the calendar, not 24-hour periods.
			tm.nominal = true
			for d := tm.start; d.Before(end) && tm.nominalDays < 366*100; d = d.AddDate(0, 0, 1) {
				tm.nominalDays++
			}
			return tm, nil
		}
		tm.exact = end.Sub(tm.start)
		return tm, nil
	}
	if dp := ev.Props.Get(ical.PropDuration); dp != nil {
		d, err := dp.Duration()
		if err != nil {
			return unreadable(fmt.Sprintf("unreadable duration %q", attrSnippet([]byte(dp.Value))))
		}
		if d < 0 {
			return unreadable(fmt.Sprintf("negative duration %q", attrSnippet([]byte(dp.Value))))
		}
		tm.nominal = true
		tm.nominalDays, tm.nominalExtra = int(d/(24*time.Hour)), d%(24*time.Hour)
		return tm, nil
	}
	if tm.isDate {
		tm.nominal, tm.nominalDays = true, 1
		return tm, nil
	}
	return unreadable("no end time")
}

func (x *expander) expandMaster(ev ical.Event, uid string, replaced *instantSet) ([]Window, error) {
	if cancelled(ev) {
		return nil, nil
	}
	tm, err := x.timing(ev)
	if err != nil {
		return nil, err
	}
	loc := tm.start.Location()

	excluded := &instantSet{}
	for _, p := range ev.Props.Values(ical.PropExceptionDates) {
		for _, v := range strings.Split(p.Value, ",") {
			t, isDate, err := x.propTime(&p, v)
			if err != nil {
				return nil, fmt.Errorf("EXDATE: %w", err)
			}
			excluded.add(instantKey{t: t, isDate: isDate})
		}
	}

	starts := map[int64]time.Time{}
	addStart := func(t time.Time) {
		t = t.In(loc)
		if excluded.has(t) || replaced.has(t) {
			return
		}
		starts[t.UnixNano()] = t
	}

	rules := ev.Props.Values(ical.PropRecurrenceRule)
	rdates := ev.Props.Values(ical.PropRecurrenceDates)
	// DTSTART is always the first instance, also when an RRULE would not
	// generate it (RFC 5545 leaves that case undefined; counting it errs on
	// the side of more windows).
	if tm.end(tm.start).After(x.from) || !tm.start.Before(x.from) {
		addStart(tm.start)
	}
	for _, p := range rules {
		opt, err := rrule.StrToROptionInLocation(p.Value, loc)
		if err != nil {
			return nil, fmt.Errorf("RRULE %q: %w", cleanText(p.Value), err)
		}
		if opt.Freq > rrule.DAILY {
			return nil, fmt.Errorf("RRULE %q: frequency %s is not supported for deployment windows", cleanText(p.Value), opt.Freq)
		}
		if opt.Interval > 1000 {
			return nil, fmt.Errorf("RRULE %q: INTERVAL too large", cleanText(p.Value))
		}
		opt.Dtstart = tm.start
		rule, err := rrule.NewRRule(*opt)
		if err != nil {
			return nil, fmt.Errorf("RRULE %q: %w", cleanText(p.Value), err)
		}
		next := rule.Iterator()
		for n := 0; ; n++ {
			t, ok := next()
			if !ok || !t.Before(x.to) {
				break
			}
			if n >= maxInstancesPerEvent {
				return nil, fmt.Errorf("RRULE %q: more than %d instances before the horizon ends (DTSTART %s)",
					cleanText(p.Value), maxInstancesPerEvent, tm.start.Format(time.RFC3339))
			}
			if tm.end(t).After(x.from) || !t.Before(x.from) {
				addStart(t)
			}
		}
	}
	for _, p := range rdates {
		if strings.EqualFold(p.Params.Get(ical.ParamValue), "PERIOD") {
			return nil, errors.New("RDATE;VALUE=PERIOD is not supported")
		}
		for _, v := range strings.Split(p.Value, ",") {
			t, _, err := x.propTime(&p, v)
			if err != nil {
				return nil, fmt.Errorf("RDATE: %w", err)
			}
			addStart(t)
		}
	}

	var out []Window
	base := x.window(ev, nil)
	for _, start := range starts {
		end := tm.end(start)
		if !x.overlapsHorizon(start, end) {
			continue
		}
		w := base
		w.ID = uid + "/" + start.UTC().Format("20060102T150405Z")
		w.Start, w.End = start.UTC(), end.UTC()
		w.Unreadable = tm.unreadable
		out = append(out, w)
	}
	return out, nil
}

func (x *expander) override(ev ical.Event, uid string, recur instantKey, master *ical.Event) (Window, bool, error) {
	tm, err := x.timing(ev)
	if err != nil {
		return Window{}, false, err
	}
	start, end := tm.start, tm.end(tm.start)
	if !x.overlapsHorizon(start, end) {
		return Window{}, false, nil
	}
	w := x.window(ev, master)
	w.ID = uid + "/" + recur.t.UTC().Format("20060102T150405Z")
	w.Start, w.End = start.UTC(), end.UTC()
	w.Unreadable = tm.unreadable
	return w, true, nil
}

// overlapsHorizon: [start, end) meets [from, to); a zero-length instance
// counts when its instant is inside.
func (x *expander) overlapsHorizon(start, end time.Time) bool {
	return Window{Start: start, End: end}.overlaps(x.from, x.to)
}

// window fills Name, URL and Deployers from ev, falling back to master for
// properties an override does not repeat.
func (x *expander) window(ev ical.Event, master *ical.Event) Window {
	get := func(name string) *ical.Prop {
		if p := ev.Props.Get(name); p != nil {
			return p
		}
		if master != nil {
			return master.Props.Get(name)
		}
		return nil
	}
	var w Window
	if p := get(ical.PropSummary); p != nil {
		s, err := p.Text()
		if err != nil {
			s = p.Value
		}
		w.Name = cleanText(s)
	}
	if p := get(ical.PropURL); p != nil {
		w.URL = cleanText(p.Value)
	}
	w.Deployers = x.deployers(ev)
	if len(w.Deployers) == 0 && master != nil {
		w.Deployers = x.deployers(*master)
	}
	return w
}

func (x *expander) deployers(ev ical.Event) []string {
	var out []string
	if x.deployersProp != "" {
		for _, p := range ev.Props.Values(x.deployersProp) {
			list, err := p.TextList()
			if err != nil {
				list = strings.Split(p.Value, ",")
			}
			for _, nick := range list {
				out = appendUnique(out, cleanText(nick))
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	for _, p := range ev.Props.Values(ical.PropAttendee) {
		out = appendUnique(out, cleanText(strings.Trim(p.Params.Get(ical.ParamCommonName), `"`)))
	}
	return out
}

// propTime parses one value v of a DATE or DATE-TIME property p: a DATE is
// midnight in the calendar's zone; a DATE-TIME ending in Z is UTC, one with
// TZID is in that IANA zone (unknown: error), a floating one is in the
// calendar's zone.
func (x *expander) propTime(p *ical.Prop, v string) (t time.Time, isDate bool, err error) {
	v = strings.TrimSpace(v)
	valueType := strings.ToUpper(p.Params.Get(ical.ParamValue))
	if valueType == "DATE" || (valueType == "" && len(v) == len("20060102")) {
		t, err = time.ParseInLocation("20060102", v, x.zone)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bad DATE %q", cleanText(v))
		}
		return t, true, checkYear(t)
	}
	if valueType != "" && valueType != "DATE-TIME" {
		return time.Time{}, false, fmt.Errorf("value type %q is not DATE or DATE-TIME", cleanText(valueType))
	}
	if strings.HasSuffix(v, "Z") {
		t, err = time.Parse("20060102T150405Z", v)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("bad DATE-TIME %q", cleanText(v))
		}
		return t, false, checkYear(t)
	}
	loc := x.zone
	if tzid := strings.Trim(p.Params.Get(ical.PropTimezoneID), `"`); tzid != "" {
		if loc, err = loadZone(tzid); err != nil {
			return time.Time{}, false, fmt.Errorf("TZID: %w (only IANA zone names are understood)", err)
		}
	}
	t, err = time.ParseInLocation("20060102T150405", v, loc)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("bad DATE-TIME %q", cleanText(v))
	}
	return t, false, checkYear(t)
}

// checkYear rejects years that only garbage produces, and keeps time
// arithmetic far from overflow.
func checkYear(t time.Time) error {
	if y := t.Year(); y < 1900 || y > 2200 {
		return fmt.Errorf("year %d out of range", y)
	}
	return nil
}
