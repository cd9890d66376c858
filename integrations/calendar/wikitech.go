package calendar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// APIError is an error reported by the MediaWiki Action API in its JSON
// envelope: {"error":{"code":"missingtitle","info":"The page you specified doesn't exist."}}.
type APIError struct {
	Code string `json:"code"`
	Info string `json:"info"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("MediaWiki API error %q: %s", cleanText(e.Code), cleanText(e.Info))
}

// Wikitech reads the deployment calendar from a MediaWiki wiki's rendered
// page (see the package doc for the wire format).
//
// Each Fetch first asks action=query&prop=info for the page's fullurl,
// lastrevid and touched timestamp (one small request). Only when the revision
// or the touched timestamp changed since the last successful parse does it
// ask action=parse for the rendered HTML and parse it again; otherwise the
// previous result is returned with a new FetchedAt. "touched" also moves when
// a template the page uses changes, which changes the rendered page without a
// new revision of the page itself.
type Wikitech struct {
	cfg WikitechConfig
	opt Options

	mu   sync.Mutex
	last *wikitechParse // last successful parse, nil until one succeeds
}

type wikitechParse struct {
	revid   int64
	touched string
	pageURL string
	sched   Schedule
}

// NewWikitech returns a source reading cfg.Page through cfg.APIURL.
func NewWikitech(cfg WikitechConfig, opt Options) (*Wikitech, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate("calendar.wikitech"); err != nil {
		return nil, err
	}
	return &Wikitech{cfg: cfg, opt: opt.withDefaults()}, nil
}

// Fetch implements Source.
func (w *Wikitech) Fetch(ctx context.Context) (Schedule, error) {
	ctx, cancel := withFetchTimeout(ctx, w.cfg.Timeout)
	defer cancel()

	info, err := w.pageInfo(ctx)
	if err != nil {
		return Schedule{}, fmt.Errorf("calendar: wikitech: page info for %q: %w", w.cfg.Page, explainTimeout(ctx, err))
	}
	now := w.opt.Clock.Now()

	w.mu.Lock()
	last := w.last
	w.mu.Unlock()
	if last != nil && last.revid == info.LastRevID && last.touched == info.Touched && last.pageURL == info.FullURL {
		s := last.sched
		s.FetchedAt = now
		w.opt.Logger.Debug("calendar: wikitech page unchanged", "page", w.cfg.Page, "revid", info.LastRevID)
		return s, nil
	}

	text, revid, err := w.parse(ctx)
	if err != nil {
		return Schedule{}, fmt.Errorf("calendar: wikitech: parse page %q: %w", w.cfg.Page, explainTimeout(ctx, err))
	}
	page, err := ParseDeploymentsHTML(text, info.FullURL, w.cfg.UnreadableWindowLength)
	if err != nil {
		return Schedule{}, fmt.Errorf("calendar: wikitech: page %q revision %d: %w", w.cfg.Page, revid, err)
	}
	unreadable := 0
	for _, win := range page.Windows {
		if win.Unreadable != "" {
			unreadable++
			w.opt.Logger.Warn("calendar: deployment window card not fully readable: blocking from its start",
				"page", w.cfg.Page, "revid", revid, "id", win.ID, "start", win.Start, "problem", win.Unreadable, "until", win.End)
		}
	}
	sched := NewSchedule(now, coveredUntil(page.Windows), page.Windows)
	sched.Revision = strconv.FormatInt(revid, 10)
	w.opt.Logger.Info("calendar: parsed wikitech page", "page", w.cfg.Page, "revid", revid,
		"windows", len(sched.Windows), "unreadable", unreadable, "until", sched.Until)

	w.mu.Lock()
	w.last = &wikitechParse{revid: revid, touched: info.Touched, pageURL: info.FullURL, sched: sched}
	w.mu.Unlock()
	return sched, nil
}

// coveredUntil is how far the page is known to list windows: the end (next
// Monday 00:00 UTC) of the last week in the unbroken run of weeks, starting
// with the first window's week, that each contain at least one window. The
// page lists whole weeks (the generator rewrites it weekly), so a later week
// without any window means the page has not been extended that far, and a
// lone window further out (a planned switchover, say) does not vouch for the
// weeks before it.
func coveredUntil(windows []Window) time.Time {
	if len(windows) == 0 {
		return time.Time{}
	}
	weeks := make([]time.Time, len(windows))
	for i, w := range windows {
		weeks[i] = weekStart(w.Start)
	}
	slices.SortFunc(weeks, time.Time.Compare)
	covered := weeks[0]
	for _, wk := range weeks[1:] {
		if wk.After(covered.AddDate(0, 0, 7)) {
			break
		}
		covered = wk
	}
	return covered.AddDate(0, 0, 7)
}

// weekStart returns Monday 00:00 UTC of t's week.
func weekStart(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	back := (int(day.Weekday()) + 6) % 7 // Monday 0 ... Sunday 6
	return day.AddDate(0, 0, -back)
}

type pageInfo struct {
	PageID    int64           `json:"pageid"`
	Title     string          `json:"title"`
	Missing   json.RawMessage `json:"missing"`
	Invalid   json.RawMessage `json:"invalid"`
	Touched   string          `json:"touched"`
	LastRevID int64           `json:"lastrevid"`
	FullURL   string          `json:"fullurl"`
}

// apiEnvelope holds the parts of every Action API reply that are not the
// module's own result.
type apiEnvelope struct {
	Error    *APIError                  `json:"error"`
	Warnings map[string]json.RawMessage `json:"warnings"`
}

func (w *Wikitech) pageInfo(ctx context.Context) (pageInfo, error) {
	var reply struct {
		apiEnvelope
		Query *struct {
			Pages map[string]pageInfo `json:"pages"`
		} `json:"query"`
	}
	form := url.Values{
		"action": {"query"}, "titles": {w.cfg.Page}, "prop": {"info"}, "inprop": {"url"},
		"redirects": {"1"}, "format": {"json"}, "formatversion": {"1"},
	}
	if err := w.call(ctx, form, &reply.apiEnvelope, &reply); err != nil {
		return pageInfo{}, err
	}
	if reply.Query == nil || len(reply.Query.Pages) != 1 {
		return pageInfo{}, errors.New("reply has no query.pages entry for the page")
	}
	var p pageInfo
	for _, p = range reply.Query.Pages { // the only entry
	}
	switch {
	case p.Missing != nil:
		return pageInfo{}, fmt.Errorf("page %q does not exist", cleanText(p.Title))
	case p.Invalid != nil:
		return pageInfo{}, fmt.Errorf("page title %q is invalid", cleanText(p.Title))
	case p.FullURL == "":
		return pageInfo{}, errors.New("reply has no fullurl for the page")
	case p.LastRevID <= 0:
		return pageInfo{}, errors.New("reply has no lastrevid for the page")
	}
	return p, nil
}

func (w *Wikitech) parse(ctx context.Context) (text string, revid int64, err error) {
	var reply struct {
		apiEnvelope
		Parse *struct {
			Title  string            `json:"title"`
			PageID int64             `json:"pageid"`
			RevID  int64             `json:"revid"`
			Text   map[string]string `json:"text"`
		} `json:"parse"`
	}
	form := url.Values{
		"action": {"parse"}, "page": {w.cfg.Page}, "prop": {"text|revid"}, "redirects": {"1"},
		"disablelimitreport": {"1"}, "disableeditsection": {"1"},
		"format": {"json"}, "formatversion": {"1"},
	}
	if err := w.call(ctx, form, &reply.apiEnvelope, &reply); err != nil {
		return "", 0, err
	}
	if reply.Parse == nil {
		return "", 0, errors.New("reply has no parse object")
	}
	text, ok := reply.Parse.Text["*"]
	if !ok {
		return "", 0, errors.New(`reply has no parse.text["*"]`)
	}
	return text, reply.Parse.RevID, nil
}

// call POSTs form to the API and decodes the JSON reply into out, whose
// embedded envelope is env. An API error in the envelope is returned as
// *APIError.
func (w *Wikitech) call(ctx context.Context, form url.Values, env *apiEnvelope, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.APIURL, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", w.cfg.UserAgent)
	resp, err := w.opt.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := readBody(resp.Body, w.cfg.MaxBodyBytes)
	if err != nil {
		return fmt.Errorf("read reply (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s: %s", resp.Status, snippet(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("malformed JSON reply (Content-Type %q, body starts %q): %w",
			resp.Header.Get("Content-Type"), snippet(body), err)
	}
	if env.Error != nil {
		return env.Error
	}
	for module, warning := range env.Warnings {
		w.opt.Logger.Warn("calendar: MediaWiki API warning", "action", form.Get("action"),
			"module", module, "warning", snippet(warning))
	}
	return nil
}
