package main

import (
	"fmt"
	"net"
	"net/http"
	"poolbot/internal/testenv/mediawiki"
	"sync"
	"time"
)

// wiki stands in for wikitech: the MediaWiki Action API endpoint
// (/w/api.php) of mediawiki.Deployments, which answers the two requests
// poolbot's calendar makes in the API's wire format and renders the page
// the way wikitech's {{deployment calendar}} templates render it. On top
// of it the lab can make its first window float (see floatFirst).
// wikitech itself cannot run here; the integration's own tests check the
// parser against a recorded page.
type wiki struct {
	srv  *http.Server
	addr string
	page *mediawiki.Deployments

	mu sync.Mutex
	// float, when set, keeps the first window ahead of every reader until
	// pin places it for good (see floatFirst).
	float *floating
}

// floating is the first window while it waits to be pinned: it starts
// lead after each page-info request and lasts length.
type floating struct{ lead, length time.Duration }

// labWindow is one deployment window on the lab's calendar.
type labWindow = mediawiki.Window

func startWiki() (*wiki, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("wiki: %w", err)
	}
	w := &wiki{addr: ln.Addr().String(), page: mediawiki.NewDeployments()}
	w.page.ServedBy = "poolbot-lab"
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
func (w *wiki) setWindows(ws []labWindow) { w.page.SetWindows(ws) }

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
	if w.float == nil {
		return
	}
	// Whole seconds, as the page renders them; rounded up so the window
	// starts at least lead from now.
	start := now.UTC().Add(w.float.lead + time.Second - 1).Truncate(time.Second)
	length := w.float.length
	w.page.Edit(func(ws []labWindow) ([]labWindow, bool) {
		if len(ws) == 0 || ws[0].Start.Equal(start) {
			return ws, false
		}
		ws[0].Start, ws[0].End = start, start.Add(length)
		return ws, true
	})
}

// pin ends floating: the first window starts in after at (rounded up to
// a whole second) and lasts length, for good. It returns the window as
// pinned.
func (w *wiki) pin(at time.Time, in, length time.Duration) labWindow {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.float = nil
	start := at.UTC().Add(in + time.Second - 1).Truncate(time.Second)
	var win labWindow
	w.page.Edit(func(ws []labWindow) ([]labWindow, bool) {
		ws[0].Start, ws[0].End = start, start.Add(length)
		win = ws[0]
		return ws, true
	})
	return win
}

// api moves a floating first window on each page-info request, then
// answers as wikitech does.
func (w *wiki) api(rw http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err == nil && r.Form.Get("action") == "query" {
		w.mu.Lock()
		w.floatLocked(time.Now())
		w.mu.Unlock()
	}
	w.page.ServeHTTP(rw, r)
}
