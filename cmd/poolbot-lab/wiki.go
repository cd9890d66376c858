package main

import (
	"fmt"
	"html"
	"net"
	"net/http"
	"poolbot/internal/testenv/mediawiki"
	"strings"
	"sync"
	"time"
)

// wiki stands in for wikitech: a MediaWiki Action API endpoint
// (/w/api.php) that answers the two requests poolbot's calendar makes —
// action=query&prop=info for the Deployments page's revision, and
// action=parse for its rendered HTML — in the API's formatversion=1 JSON,
// with the page rendered the way wikitech's {{deployment calendar}}
// templates render it (.deploycal-item with data-utcstart/data-utcend,
// the window's name, the deployers' IRC nicks). wikitech itself cannot run
// here; the integration's own tests check the parser against a recorded
// page.
type wiki struct {
	srv  *http.Server
	addr string

	mu      sync.Mutex
	windows []labWindow
	revid   int64
	touched time.Time
	// float, when set, keeps windows[0] ahead of every reader until pin
	// places it for good (see floatFirst).
	float *floating
}

// floating is the first window while it waits to be pinned: it starts
// lead after each page-info request and lasts length.
type floating struct{ lead, length time.Duration }

// labWindow is one deployment window on the lab's calendar.
type labWindow struct {
	Name       string
	Start, End time.Time
	Deployers  []string
}

func startWiki() (*wiki, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("wiki: %w", err)
	}
	w := &wiki{addr: ln.Addr().String(), revid: 1000}
	mux := http.NewServeMux()
	mux.HandleFunc("/w/api.php", w.api)
	w.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = w.srv.Serve(ln) }()
	return w, nil
}

// APIURL is the api.php URL for calendar.wikitech.api_url.
func (w *wiki) APIURL() string { return "http://" + w.addr + "/w/api.php" }

func (w *wiki) close() { _ = w.srv.Close() }

// setWindows replaces the calendar: a new revision of the page.
func (w *wiki) setWindows(ws []labWindow) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.windows = append([]labWindow(nil), ws...)
	w.revid++
	w.touched = time.Now().UTC()
}

// floatFirst makes the first window float: until pin, every page-info
// request (the first half of each calendar fetch) moves it to start lead
// later and last length, as a new revision of the page. So whenever
// poolbot last read the calendar, the window it knows is still to come or
// running, and poolbot re-reads it 5 s after that window starts (its
// calendar refresh's rule): the scenario can then pin the window to when a
// story starts, however long start-up took, and poolbot sees the pinned
// window within seconds.
func (w *wiki) floatFirst(lead, length time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.float = &floating{lead: lead, length: length}
	w.floatLocked(time.Now())
}

// floatLocked moves a floating first window to start lead after now.
func (w *wiki) floatLocked(now time.Time) {
	if w.float == nil || len(w.windows) == 0 {
		return
	}
	// Whole seconds, as the page renders them; rounded up so the window
	// starts at least lead from now.
	start := now.UTC().Add(w.float.lead + time.Second - 1).Truncate(time.Second)
	if win := &w.windows[0]; !win.Start.Equal(start) {
		win.Start, win.End = start, start.Add(w.float.length)
		w.revid++
		w.touched = now.UTC()
	}
}

// pin ends floating: the first window starts in after at (rounded up to
// a whole second) and lasts length, for good. It returns the window as
// pinned.
func (w *wiki) pin(at time.Time, in, length time.Duration) labWindow {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.float = nil
	start := at.UTC().Add(in + time.Second - 1).Truncate(time.Second)
	win := &w.windows[0]
	win.Start, win.End = start, start.Add(length)
	w.revid++
	w.touched = time.Now().UTC()
	return *win
}

func (w *wiki) api(rw http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		mediawiki.WriteAPI(rw, apiError("badrequest", err.Error()))
		return
	}
	w.mu.Lock()
	if r.Form.Get("action") == "query" {
		w.floatLocked(time.Now())
	}
	revid, touched, windows := w.revid, w.touched, append([]labWindow(nil), w.windows...)
	w.mu.Unlock()
	page := r.Form.Get("titles")
	if r.Form.Get("action") == "parse" {
		page = r.Form.Get("page")
	}
	switch r.Form.Get("action") {
	case "query":
		if page != "Deployments" {
			mediawiki.WriteAPI(rw, map[string]any{"batchcomplete": "", "query": map[string]any{
				"pages": map[string]any{"-1": map[string]any{"ns": 0, "title": page, "missing": ""}}}})
			return
		}
		mediawiki.WriteAPI(rw, map[string]any{"batchcomplete": "", "query": map[string]any{
			"pages": map[string]any{"4242": map[string]any{
				"pageid": 4242, "ns": 0, "title": "Deployments", "contentmodel": "wikitext",
				"touched": touched.Format(time.RFC3339), "lastrevid": revid, "length": 4096,
				"fullurl": "http://" + w.addr + "/wiki/Deployments",
			}}}})
	case "parse":
		if page != "Deployments" {
			mediawiki.WriteAPI(rw, apiError("missingtitle", "The page you specified doesn't exist."))
			return
		}
		mediawiki.WriteAPI(rw, map[string]any{"parse": map[string]any{
			"title": "Deployments", "pageid": 4242, "revid": revid,
			"text": map[string]any{"*": renderCalendar(windows)},
		}})
	default:
		mediawiki.WriteAPI(rw, apiError("badvalue", fmt.Sprintf("Unrecognized value for parameter \"action\": %s.", r.Form.Get("action"))))
	}
}

// renderCalendar renders windows as wikitech's Deployments page does.
func renderCalendar(ws []labWindow) string {
	var b strings.Builder
	b.WriteString(`<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">` + "\n")
	day := ""
	for _, w := range ws {
		if d := w.Start.UTC().Format("Monday, January 2"); d != day {
			day = d
			fmt.Fprintf(&b, "<h3><span class=\"mw-headline\" id=\"%s\">%s</span></h3>\n", strings.ReplaceAll(d, " ", "_"), d)
		}
		start, end := w.Start.UTC(), w.End.UTC()
		fmt.Fprintf(&b, `<div class="deploycal-item" id="deploycal-item-%s" data-utcstart="%s" data-utcend="%s">`+"\n",
			start.Format("20060102T150405"), start.Format("2006-01-02T15:04:05-07:00"), end.Format("2006-01-02T15:04:05-07:00"))
		fmt.Fprintf(&b, `<div class="deploycal-item-time"><span class="deploycal-time-utc"><time datetime="%s">%s–%s UTC</time></span></div>`+"\n",
			start.Format("2006-01-02T15:04Z"), start.Format("15:04:05"), end.Format("15:04:05"))
		fmt.Fprintf(&b, `<div class="deploycal-item-window"><a href="/wiki/Backport_windows" title="Backport windows">%s</a></div>`+"\n",
			html.EscapeString(w.Name))
		b.WriteString(`<div class="deploycal-item-deployer"><b>Deployer:</b> `)
		for i, d := range w.Deployers {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `<span class="ircnick-container"><span class="ircnick" title="IRC nickname">%s</span></span>`, html.EscapeString(d))
		}
		b.WriteString("</div>\n")
		b.WriteString(`<div class="deploycal-item-changes"><b>Changes:</b><ul><li><i>Gerrit link to backport or config change</i></li></ul></div>` + "\n</div>\n")
	}
	b.WriteString("</div>")
	return b.String()
}

func apiError(code, info string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "info": info}, "servedby": "poolbot-lab"}
}
