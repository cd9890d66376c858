// Package calendar reads the deployment calendar and answers the one question
// the apus procedure asks it: is there a stretch of time, long enough for the
// operation plus safety margins, in which no deployment window is scheduled?
//
// # Sources
//
// Wikimedia publishes its deployment windows on the wikitech page
// "Deployments". Like jouncebot (the bot that announces windows in
// #wikimedia-operations), the Wikitech source does not read wikitext: it asks
// the MediaWiki Action API for the rendered page
// (POST api.php action=parse&page=Deployments&format=json&formatversion=1,
// reading parse.text["*"]) and for the page URL
// (action=query&prop=info&inprop=url, reading query.pages.<id>.fullurl).
// The same info request returns the page's lastrevid and touched time, so an
// unchanged page is not fetched and parsed again. The rendered page carries
// semantic markup produced by the "Deployment calendar event card" template:
//
//   - every window is an element with class "deploycal-item", an id such as
//     "deploycal-item-20230116T0800", and its UTC bounds in the attributes
//     data-utcstart and data-utcend;
//   - the window's name is the text of ".deploycal-item-window", from which
//     the "(Max N patches)" note and the backport disclaimer "Your patch may or
//     may not be deployed at the sole discretion of the deployer" are removed;
//   - the deployers are the ".ircnick" elements inside ".deploycal-item-deployer";
//   - the patch owners are the ".ircnick" elements inside ".deploycal-item-changes",
//     minus the template's placeholder nick "irc-nickname".
//
// Only these classes and attributes are relied on, never tag names or
// nesting: the template documents them as its semantic HTML, while the layout
// around them has changed before (the calendar was once a table). Nicks that
// are not valid IRC nicks are dropped. The windows are pinned
// to San Francisco time, so their UTC times move by an hour when US daylight
// saving time starts or ends; the UTC attributes already account for that.
//
// The ICal source reads an iCalendar (RFC 5545) feed from a URL or a file and
// expands recurring events (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides,
// TZID, all-day VALUE=DATE events) inside a bounded horizon.
//
// # Failing closed
//
// The procedure treats a calendar it cannot read as a closed gate. This
// package never turns "could not understand" into "no windows": a page without
// any deploycal-item, a page whose items all have unreadable times, an
// unknown time zone, a MediaWiki API error, an oversized or malformed reply,
// and a schedule older than the configured max age are all errors. A card
// (or iCalendar event) that cannot be read completely is never skipped: one
// without a readable end still blocks from its start for
// calendar.unreadable_window_length (default 1h) and carries
// Window.Unreadable, so notices name it ("unreadable calendar card at 10:00
// UTC (no end time): treated as 10:00–11:00 UTC"); one without a readable
// start makes the calendar unreadable (ErrUnreadableCard), and Cached then
// closes the gate at once rather than serving the last good schedule. A schedule also knows how far it reaches
// (Schedule.Until): time past the end of the published calendar is treated as
// busy by FirstGap and reported by Blocking, because a week the page does not
// list yet is unknown, not free.
//
// # Time intervals
//
// A window occupies the half-open interval [Start, End): it is active from its
// start up to, not including, its end. jouncebot tests start <= now <= end, but
// it only uses that to time an announcement; for the gate the margins
// (lead_margin, tail_margin) provide the slack. A zero-length window occupies
// the single instant Start, so it is never silently ignored.
//
// # Using it
//
//	src, err := calendar.NewSource(cfg, calendar.Options{Logger: log})
//	cached, err := calendar.NewCached(src, cfg.RefreshInterval, cfg.MaxAge, calendar.Options{Logger: log})
//	go cached.Run(ctx) // refreshes every refresh_interval and just after each window starts
//	sched, fetchedAt, err := cached.Schedule() // err != nil: the gate is closed
//	start, ok := sched.FirstGap(now, estimate, cfg.LeadMargin, cfg.TailMargin)
//	blockers := sched.Blocking(now, estimate, cfg.LeadMargin, cfg.TailMargin)
package calendar
