package mediawiki_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/calendar"
	"poolbot/internal/testenv/mediawiki"
)

// The stand-in is read by the real Wikitech source: windows round-trip,
// an edit is a new revision, and both ways of failing reach the caller.
func TestDeploymentsReadByWikitech(t *testing.T) {
	page := mediawiki.NewDeployments()
	mux := http.NewServeMux()
	mux.Handle("/w/api.php", page)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	now := time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)
	src, err := calendar.NewWikitech(calendar.WikitechConfig{APIURL: srv.URL + "/w/api.php",
		UserAgent: "poolbot-test/1.0 (https://example.org; sre@example.org)"},
		calendar.Options{Clock: clockwork.NewFakeClockAt(now)})
	if err != nil {
		t.Fatal(err)
	}
	page.SetWindows([]mediawiki.Window{
		{Name: "UTC morning backport window", Start: now.Add(-6 * time.Hour), End: now.Add(-5 * time.Hour), Deployers: []string{"Lucas_WMDE", "TheresNoTime"}},
		{Name: "MediaWiki train & co", Start: now.Add(50 * time.Minute), End: now.Add(170 * time.Minute), Deployers: []string{"brennen"}},
	})
	s, err := src.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Windows) != 2 || s.Revision != "1001" || !s.Until.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("schedule %+v", s)
	}
	w := s.Windows[1]
	if w.Name != "MediaWiki train & co" || !w.Start.Equal(now.Add(50*time.Minute)) || !w.End.Equal(now.Add(170*time.Minute)) ||
		strings.Join(w.Deployers, ",") != "brennen" || w.ID != "deploycal-item-20261123T150000" ||
		w.URL != srv.URL+"/wiki/Deployments#deploycal-item-20261123T150000" {
		t.Fatalf("window %+v", w)
	}
	if d := s.Windows[0].Deployers; strings.Join(d, ",") != "Lucas_WMDE,TheresNoTime" {
		t.Fatalf("deployers %q", d)
	}

	page.FailHTTP(http.StatusServiceUnavailable)
	if _, err := src.Fetch(t.Context()); err == nil || !strings.Contains(err.Error(), "HTTP 503 Service Unavailable") {
		t.Fatalf("down: err = %v", err)
	}
	page.FailAPI("maxlag", "Waiting for 10.64.48.23: 7 seconds lagged.")
	var apiErr *calendar.APIError
	if _, err := src.Fetch(t.Context()); !errors.As(err, &apiErr) || apiErr.Code != "maxlag" {
		t.Fatalf("API error: err = %v", err)
	}
	page.Recover()
	page.Edit(func(ws []mediawiki.Window) ([]mediawiki.Window, bool) {
		ws[1].Name = "MediaWiki train"
		return ws, true
	})
	if s, err = src.Fetch(t.Context()); err != nil || s.Revision != "1002" || s.Windows[1].Name != "MediaWiki train" {
		t.Fatalf("after edit: %+v, %v", s, err)
	}
}
