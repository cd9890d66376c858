package mediawiki

import (
	"fmt"
	"html"
	"net/http"
	"strings"
	"sync"
	"time"
)

// PageTitle is the title of the page Deployments serves.
const PageTitle = "Deployments"

// Window is one deployment window on the page.
type Window struct {
	Name       string
	Start, End time.Time
	Deployers  []string
}

// Deployments stands in for wikitech: a MediaWiki Action API endpoint
// (mount it at /w/api.php) answering the two requests poolbot's calendar
// makes — action=query&prop=info for the Deployments page's revision, and
// action=parse for its rendered HTML — in the API's formatversion=1 JSON,
// with the page rendered as wikitech's {{deployment calendar}} templates
// render it (see RenderCalendar). Every change of the windows is a new
// revision of the page.
//
// It can also be made to fail, as wikitech does when it is down (an HTTP
// error from the edge) or when the API refuses (an error envelope).
type Deployments struct {
	// ServedBy is the "servedby" of error answers; set it before serving.
	ServedBy string

	mu      sync.Mutex
	windows []Window
	revid   int64
	touched time.Time
	fail    func(http.ResponseWriter) // nil while healthy
}

// NewDeployments returns a page without windows at revision 1000.
func NewDeployments() *Deployments {
	return &Deployments{ServedBy: "mw-api-int.eqiad.main-testenv", revid: 1000}
}

// SetWindows replaces the calendar: a new revision of the page.
func (d *Deployments) SetWindows(ws []Window) {
	d.Edit(func(cur []Window) ([]Window, bool) { return append([]Window(nil), ws...), true })
}

// Edit changes the windows under the page's lock: fn gets the current
// windows (its own copy to change) and returns the new ones and whether
// they changed, which makes a new revision of the page.
func (d *Deployments) Edit(fn func(ws []Window) ([]Window, bool)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ws, changed := fn(append([]Window(nil), d.windows...))
	if changed {
		d.windows = ws
		d.revid++
		d.touched = time.Now().UTC()
	}
}

// Windows returns the windows the page lists now.
func (d *Deployments) Windows() []Window {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Window(nil), d.windows...)
}

// Revision returns the page's current revision id.
func (d *Deployments) Revision() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.revid
}

// FailHTTP makes every request fail with HTTP status and the HTML error
// page Wikimedia's edge serves when the application servers do not answer,
// until Recover.
func (d *Deployments) FailHTTP(status int) {
	d.setFail(func(rw http.ResponseWriter) {
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		rw.Header().Set("Retry-After", "60")
		rw.WriteHeader(status)
		fmt.Fprintf(rw, `<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Wikimedia Error</title>`+
			`<div class="content" role="main"><h1>Error</h1><p>Our servers are currently under maintenance or experiencing a technical issue. Please try again in a few minutes.</p></div>`+
			`<div class="footer"><p>If you report this error to the Wikimedia System Administrators, please include the details below.</p>`+
			`<p class="text-muted"><code>Request served via cp1081 cp1081, Varnish XID 123456789<br>Upstream caches: cp1081 int<br>Error: %d, %s at %s</code></p></div></html>`,
			status, http.StatusText(status), time.Now().UTC().Format(time.RFC1123))
	})
}

// FailAPI makes every request answer the API error code with info (HTTP
// 200 and the MediaWiki-API-Error header, as MediaWiki does), until
// Recover.
func (d *Deployments) FailAPI(code, info string) {
	d.setFail(func(rw http.ResponseWriter) { WriteAPI(rw, d.apiError(code, info)) })
}

// Recover ends FailHTTP or FailAPI: the page is served again.
func (d *Deployments) Recover() { d.setFail(nil) }

func (d *Deployments) setFail(f func(http.ResponseWriter)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = f
}

func (d *Deployments) apiError(code, info string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "info": info}, "servedby": d.ServedBy}
}

// ServeHTTP answers one Action API request (GET or POST form).
func (d *Deployments) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	fail, revid, touched, windows := d.fail, d.revid, d.touched, append([]Window(nil), d.windows...)
	d.mu.Unlock()
	if fail != nil {
		fail(rw)
		return
	}
	if err := r.ParseForm(); err != nil {
		WriteAPI(rw, d.apiError("badrequest", err.Error()))
		return
	}
	page := r.Form.Get("titles")
	if r.Form.Get("action") == "parse" {
		page = r.Form.Get("page")
	}
	switch r.Form.Get("action") {
	case "query":
		if page != PageTitle {
			WriteAPI(rw, map[string]any{"batchcomplete": "", "query": map[string]any{
				"pages": map[string]any{"-1": map[string]any{"ns": 0, "title": page, "missing": ""}}}})
			return
		}
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		WriteAPI(rw, map[string]any{"batchcomplete": "", "query": map[string]any{
			"pages": map[string]any{"4242": map[string]any{
				"pageid": 4242, "ns": 0, "title": PageTitle, "contentmodel": "wikitext",
				"touched": touched.Format(time.RFC3339), "lastrevid": revid, "length": 4096,
				"fullurl": scheme + "://" + r.Host + "/wiki/" + PageTitle,
			}}}})
	case "parse":
		if page != PageTitle {
			WriteAPI(rw, d.apiError("missingtitle", "The page you specified doesn't exist."))
			return
		}
		WriteAPI(rw, map[string]any{"parse": map[string]any{
			"title": PageTitle, "pageid": 4242, "revid": revid,
			"text": map[string]any{"*": RenderCalendar(windows)},
		}})
	default:
		WriteAPI(rw, d.apiError("badvalue", fmt.Sprintf("Unrecognized value for parameter \"action\": %s.", r.Form.Get("action"))))
	}
}

// RenderCalendar renders windows as wikitech's Deployments page does: a
// day heading per day, and per window a .deploycal-item with
// data-utcstart/data-utcend, the window's name and the deployers' IRC
// nicks.
func RenderCalendar(ws []Window) string {
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
