package calendar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"poolbot/internal/testenv/mediawiki"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

const testUserAgent = "poolbot-test/1.0 (https://example.org/poolbot; sre@example.org)"

// fakeWiki answers the two MediaWiki Action API requests the Wikitech source
// makes, in the API's formatversion=1 JSON shapes. wikitech itself cannot
// run here.
type fakeWiki struct {
	t *testing.T

	mu         sync.Mutex
	html       string
	revid      int64
	touched    string
	infoCalls  int
	parseCalls int
	// override, when set, may answer a request itself (returning true).
	override func(w http.ResponseWriter, r *http.Request, action string) bool
}

func newFakeWiki(t *testing.T, html string) (*fakeWiki, *httptest.Server) {
	f := &fakeWiki{t: t, html: html, revid: 2187654, touched: "2026-10-26T00:03:12Z"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeWiki) set(fn func(f *fakeWiki)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeWiki) calls() (info, parse int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.infoCalls, f.parseCalls
}

func apiError(code, info string) map[string]any {
	return map[string]any{
		"error": map[string]any{
			"code": code, "info": info,
			"*": "See https://wikitech.wikimedia.org/w/api.php for API usage. Subscribe to the mediawiki-api-announce mailing list at &lt;https://lists.wikimedia.org/postorius/lists/mediawiki-api-announce.lists.wikimedia.org/&gt; for notice of API deprecations and breaking changes.",
		},
		"servedby": "mw-api-int.eqiad.main-6d4c9b7f5-abcde",
	}
}

func (f *fakeWiki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		f.t.Errorf("%s request, want POST", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		f.t.Errorf("Content-Type %q", ct)
	}
	if ua := r.Header.Get("User-Agent"); ua != testUserAgent {
		f.t.Errorf("User-Agent %q, want %q", ua, testUserAgent)
	}
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("form: %v", err)
	}
	form := r.PostForm
	if form.Get("format") != "json" || form.Get("formatversion") != "1" {
		f.t.Errorf("format=%q formatversion=%q", form.Get("format"), form.Get("formatversion"))
	}
	action := form.Get("action")
	f.mu.Lock()
	override, html, revid, touched := f.override, f.html, f.revid, f.touched
	switch action {
	case "query":
		f.infoCalls++
	case "parse":
		f.parseCalls++
	}
	f.mu.Unlock()
	if override != nil && override(w, r, action) {
		return
	}

	switch action {
	case "query":
		if form.Get("prop") != "info" || form.Get("inprop") != "url" {
			f.t.Errorf("query prop=%q inprop=%q", form.Get("prop"), form.Get("inprop"))
		}
		title := form.Get("titles")
		if title != "Deployments" {
			mediawiki.WriteAPI(w, map[string]any{"batchcomplete": "", "query": map[string]any{
				"pages": map[string]any{"-1": map[string]any{"ns": 0, "title": title, "missing": ""}},
			}})
			return
		}
		mediawiki.WriteAPI(w, map[string]any{"batchcomplete": "", "query": map[string]any{
			"pages": map[string]any{"4242": map[string]any{
				"pageid": 4242, "ns": 0, "title": "Deployments", "contentmodel": "wikitext",
				"pagelanguage": "en", "pagelanguagehtmlcode": "en", "pagelanguagedir": "ltr",
				"touched": touched, "lastrevid": revid, "length": 51234,
				"fullurl":      "https://wikitech.wikimedia.org/wiki/Deployments",
				"editurl":      "https://wikitech.wikimedia.org/w/index.php?title=Deployments&action=edit",
				"canonicalurl": "https://wikitech.wikimedia.org/wiki/Deployments",
			}},
		}})
	case "parse":
		if form.Get("page") != "Deployments" {
			mediawiki.WriteAPI(w, apiError("missingtitle", "The page you specified doesn't exist."))
			return
		}
		if !strings.Contains(form.Get("prop"), "text") {
			f.t.Errorf("parse prop=%q", form.Get("prop"))
		}
		mediawiki.WriteAPI(w, map[string]any{"parse": map[string]any{
			"title": "Deployments", "pageid": 4242, "revid": revid,
			"text": map[string]any{"*": html},
		}})
	default:
		mediawiki.WriteAPI(w, apiError("badvalue", fmt.Sprintf("Unrecognized value for parameter \"action\": %s.", action)))
	}
}

func newTestWikitech(t *testing.T, apiURL string, clock clockwork.Clock, mod func(*WikitechConfig)) *Wikitech {
	t.Helper()
	cfg := WikitechConfig{APIURL: apiURL, UserAgent: testUserAgent}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWikitech(cfg, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWikitechFetchAndConditionalRefresh(t *testing.T) {
	fake, srv := newFakeWiki(t, readFixture(t, "deployments-2026-10-26.html"))
	clock := clockwork.NewFakeClockAt(utc("2026-10-28T12:00:00Z"))
	src := newTestWikitech(t, srv.URL, clock, nil)
	ctx := t.Context()

	s, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Windows) != 36 || s.Revision != "2187654" {
		t.Fatalf("windows %d, revision %q", len(s.Windows), s.Revision)
	}
	if !s.FetchedAt.Equal(clock.Now()) || !s.Until.Equal(utc("2026-11-09T00:00:00Z")) {
		t.Errorf("fetchedAt %s until %s", s.FetchedAt, s.Until)
	}
	// Wednesday 12:00 UTC: the afternoon backport window is next, at 13:00
	// (PDT); the train then runs 15:00-17:00.
	next, ok := s.Next(clock.Now())
	if !ok || next.ID != "deploycal-item-20261028T1300" || next.URL != "https://wikitech.wikimedia.org/wiki/Deployments#deploycal-item-20261028T1300" {
		t.Errorf("next = %+v", next)
	}
	// A 90-minute operation with 10m lead and 15m tail cannot fit before
	// the afternoon window (13:00), between it and the train (15:00), between
	// the train (until 17:00) and the s7 switchover (18:00), nor before the
	// late window (20:00): the first gap starts at 21:00+10m.
	if gap, ok := s.FirstGap(clock.Now(), 90*time.Minute, 10*time.Minute, 15*time.Minute); !ok || !gap.Equal(utc("2026-10-28T21:10:00Z")) {
		t.Errorf("FirstGap = %s, %v; want 21:10", gap, ok)
	}
	if b := s.Blocking(clock.Now(), 90*time.Minute, 10*time.Minute, 15*time.Minute); len(b) != 1 || b[0].Name != "UTC afternoon backport window" {
		t.Errorf("Blocking now = %+v", b)
	}
	if info, parse := fake.calls(); info != 1 || parse != 1 {
		t.Fatalf("calls: info %d parse %d", info, parse)
	}

	// Unchanged page: only the info request, same windows, new FetchedAt.
	clock.Advance(15 * time.Minute)
	s2, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info, parse := fake.calls(); info != 2 || parse != 1 {
		t.Errorf("unchanged page re-parsed: info %d parse %d", info, parse)
	}
	if !s2.FetchedAt.Equal(clock.Now()) || len(s2.Windows) != 36 {
		t.Errorf("unchanged fetch: fetchedAt %s windows %d", s2.FetchedAt, len(s2.Windows))
	}

	// A template edit touches the page without a new revision.
	fake.set(func(f *fakeWiki) { f.touched = "2026-10-28T12:10:00Z" })
	if _, err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if _, parse := fake.calls(); parse != 2 {
		t.Errorf("touched page not re-parsed: parse %d", parse)
	}

	// A last-minute edit adds a window.
	fake.set(func(f *fakeWiki) {
		f.revid++
		f.html = strings.Replace(f.html, `</div>
<!--`, `<div class="deploycal-item" id="deploycal-item-20261028T1230" data-utcstart="2026-10-28T12:30:00+00:00" data-utcend="2026-10-28T12:45:00+00:00"><div class="deploycal-item-window">Emergency config change</div><div class="deploycal-item-deployer"><span class="ircnick">Krinkle</span></div></div></div>
<!--`, 1)
	})
	s3, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, parse := fake.calls(); parse != 3 {
		t.Errorf("new revision not parsed: parse %d", parse)
	}
	if s3.Revision != "2187655" || len(s3.Windows) != 37 {
		t.Fatalf("after edit: revision %q windows %d", s3.Revision, len(s3.Windows))
	}
	if n, _ := s3.Next(clock.Now()); n.Name != "Emergency config change" {
		t.Errorf("next after edit = %q", n.Name)
	}
}

func TestWikitechErrors(t *testing.T) {
	fixture := readFixture(t, "deployments-2026-10-26.html")
	for _, tc := range []struct {
		name     string
		page     string
		maxBody  int64
		override func(w http.ResponseWriter, r *http.Request, action string) bool
		check    func(t *testing.T, err error)
	}{
		{
			name: "API error on parse",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				if action != "parse" {
					return false
				}
				mediawiki.WriteAPI(w, apiError("internal_api_error_DBQueryError", "[abc123] Exception caught: A database query error has occurred."))
				return true
			},
			check: func(t *testing.T, err error) {
				var apiErr *APIError
				if !errors.As(err, &apiErr) || apiErr.Code != "internal_api_error_DBQueryError" {
					t.Errorf("err = %v, want *APIError", err)
				}
			},
		},
		{
			name: "missing page",
			page: "Deployments/Nope",
			check: func(t *testing.T, err error) {
				wantErrContains(t, err, `page "Deployments/Nope" does not exist`)
			},
		},
		{
			name: "HTTP 500",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, "<!DOCTYPE html>\n<html><head><title>Wikimedia Error</title></head><body><p>Our servers are currently under maintenance or experiencing a technical issue.</p></body></html>")
				return true
			},
			check: func(t *testing.T, err error) {
				wantErrContains(t, err, "HTTP 500 Internal Server Error: <!DOCTYPE html> <html><head><title>Wikimedia Error")
			},
		},
		{
			name: "HTML with status 200",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				w.Header().Set("Content-Type", "text/html; charset=UTF-8")
				fmt.Fprint(w, "<html><body>Login required</body></html>")
				return true
			},
			check: func(t *testing.T, err error) {
				wantErrContains(t, err, `malformed JSON reply (Content-Type "text/html; charset=UTF-8", body starts "<html><body>Login required`)
			},
		},
		{
			name: "truncated JSON",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				if action != "parse" {
					return false
				}
				fmt.Fprint(w, `{"parse":{"title":"Deployments","pageid":4242,"revid":1,"text":{"*":"<div class=`)
				return true
			},
			check: func(t *testing.T, err error) { wantErrContains(t, err, "malformed JSON reply") },
		},
		{
			name: "parse without text",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				if action != "parse" {
					return false
				}
				mediawiki.WriteAPI(w, map[string]any{"parse": map[string]any{"title": "Deployments", "pageid": 4242, "revid": 1}})
				return true
			},
			check: func(t *testing.T, err error) { wantErrContains(t, err, `no parse.text["*"]`) },
		},
		{
			name: "query without pages",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				if action != "query" {
					return false
				}
				mediawiki.WriteAPI(w, map[string]any{"batchcomplete": ""})
				return true
			},
			check: func(t *testing.T, err error) { wantErrContains(t, err, "no query.pages entry") },
		},
		{
			name: "page without calendar",
			override: func(w http.ResponseWriter, r *http.Request, action string) bool {
				if action != "parse" {
					return false
				}
				mediawiki.WriteAPI(w, map[string]any{"parse": map[string]any{"title": "Deployments", "pageid": 4242, "revid": 1,
					"text": map[string]any{"*": `<div class="mw-parser-output"><p>This page has moved to <a href="/wiki/Deployments/New">Deployments/New</a>.</p></div>`}}})
				return true
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrNoWindows) {
					t.Errorf("err = %v, want ErrNoWindows", err)
				}
			},
		},
		{
			name:    "body too large",
			maxBody: 16 << 10,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, errBodyTooLarge) {
					t.Errorf("err = %v, want body too large", err)
				}
				wantErrContains(t, err, "more than 16384 bytes")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, srv := newFakeWiki(t, fixture)
			fake.set(func(f *fakeWiki) { f.override = tc.override })
			src := newTestWikitech(t, srv.URL, clockwork.NewFakeClock(), func(c *WikitechConfig) {
				if tc.page != "" {
					c.Page = tc.page
				}
				if tc.maxBody != 0 {
					c.MaxBodyBytes = tc.maxBody
				}
			})
			s, err := src.Fetch(t.Context())
			if err == nil {
				t.Fatalf("no error; got %d windows", len(s.Windows))
			}
			if !strings.HasPrefix(err.Error(), "calendar: wikitech: ") {
				t.Errorf("error not wrapped with context: %v", err)
			}
			tc.check(t, err)
		})
	}
}

func wantErrContains(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}

// hangingWiki answers nothing until the client gives up (or the test ends).
func hangingWiki(t *testing.T) *httptest.Server {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

func TestWikitechTimeout(t *testing.T) {
	srv := hangingWiki(t)
	src := newTestWikitech(t, srv.URL, clockwork.NewFakeClock(), func(c *WikitechConfig) { c.Timeout = 50 * time.Millisecond })
	_, err := src.Fetch(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	wantErrContains(t, err, "no complete answer within 00m 00.05s (timeout)")
}

func TestWikitechCallerDeadline(t *testing.T) {
	srv := hangingWiki(t)
	src := newTestWikitech(t, srv.URL, clockwork.NewFakeClock(), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := src.Fetch(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if strings.Contains(err.Error(), "no complete answer within") {
		t.Errorf("caller's deadline reported as the configured timeout: %v", err)
	}
}

func TestWikitechSlowBody(t *testing.T) {
	// Headers arrive, then the body stalls: the timeout must cover reading it.
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"batchcomplete":"","query":{"pages":{"4242":{`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	src := newTestWikitech(t, srv.URL, clockwork.NewFakeClock(), func(c *WikitechConfig) { c.Timeout = 50 * time.Millisecond })
	_, err := src.Fetch(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestWikitechConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	src := newTestWikitech(t, url, clockwork.NewFakeClock(), nil)
	_, err := src.Fetch(t.Context())
	wantErrContains(t, err, "calendar: wikitech: page info for \"Deployments\": Post")
}

func TestNewWikitechValidates(t *testing.T) {
	_, err := NewWikitech(WikitechConfig{APIURL: "https://wikitech.wikimedia.org/w/api.php"}, Options{})
	wantErrContains(t, err, "calendar.wikitech.user_agent: required")
	_, err = NewWikitech(WikitechConfig{APIURL: "ftp://x", UserAgent: "x\r\nHost: evil"}, Options{})
	wantErrContains(t, err, "calendar.wikitech.api_url")
	wantErrContains(t, err, "calendar.wikitech.user_agent: contains control characters")
}

// TestWikitechUnreadableCards: a card without a readable end is in the
// schedule as an unreadable window from its start; a card without a
// readable start makes the fetch fail with ErrUnreadableCard, which closes a
// Cached gate at once instead of falling back to the last good schedule.
func TestWikitechUnreadableCards(t *testing.T) {
	fake, srv := newFakeWiki(t, `<div class="mw-parser-output">`+item+
		`<div class="deploycal-item" id="deploycal-item-20261102T1400" data-utcstart="2026-11-02T14:00" data-utcend="Nov 2, 15:00"><div class="deploycal-item-window">Hand-edited window</div></div></div>`)
	clock := clockwork.NewFakeClockAt(utc("2026-11-02T06:00:00Z"))
	src := newTestWikitech(t, srv.URL, clock, func(c *WikitechConfig) { c.UnreadableWindowLength = 90 * time.Minute })
	c, err := NewCached(src, 15*time.Minute, time.Hour, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, _, err := c.Schedule()
	if err != nil || len(s.Windows) != 2 {
		t.Fatalf("windows %d, %v", len(s.Windows), err)
	}
	w := s.Windows[1]
	if w.Unreadable != `unreadable end time "Nov 2, 15:00"` || !w.Start.Equal(utc("2026-11-02T14:00:00Z")) || !w.End.Equal(utc("2026-11-02T15:30:00Z")) {
		t.Errorf("window %+v", w)
	}

	fake.set(func(f *fakeWiki) {
		f.revid++
		f.html = `<div class="mw-parser-output">` + item + `<div class="deploycal-item" id="x" data-utcstart="soon"></div></div>`
	})
	clock.Advance(time.Minute)
	err = c.Refresh(t.Context())
	wantErrContains(t, err, `unreadable calendar card x (unreadable start time "soon"): the calendar cannot be read`)
	if _, _, err := c.Schedule(); !errors.Is(err, ErrUnreadableCard) {
		t.Fatalf("gate after an unreadable card: %v, want ErrUnreadableCard at once", err)
	}
	fake.set(func(f *fakeWiki) { f.revid++; f.html = item })
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s, _, err := c.Schedule(); err != nil || len(s.Windows) != 1 {
		t.Fatalf("after the card was fixed: %d windows, %v", len(s.Windows), err)
	}
}
