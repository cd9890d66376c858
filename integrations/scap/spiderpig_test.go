package scap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

const (
	testCookie = "spiderpig_session=s3cr3t-cookie-value; cas_ticket=ST-1"
	testToken  = "t0ps3cr3t-bearer-token"
)

// fakeSpiderPig stands in for SpiderPig, which cannot run here (FastAPI
// behind CAS SSO + TOTP). It serves the recorded-shape fixtures in
// testdata/spiderpig/<scenario>/ and enforces auth like SpiderPig: no valid
// session → 401 {"detail": ...}; a valid session outside
// spiderpig_user_groups → 403 {"code","message"}.
type fakeSpiderPig struct {
	*httptest.Server
	mu       sync.Mutex
	scenario string
	forbid   bool
	redirect bool
	html     bool
	requests []*http.Request
}

func newFakeSpiderPig(t *testing.T, scenario string) *fakeSpiderPig {
	f := &fakeSpiderPig{scenario: scenario}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSpiderPig) set(scenario string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scenario = scenario
}

// mode sets how the server misbehaves.
func (f *fakeSpiderPig) mode(forbid, redirect, html bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forbid, f.redirect, f.html = forbid, redirect, html
}

func (f *fakeSpiderPig) request(i int) *http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[i]
}

func (f *fakeSpiderPig) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Clone(context.Background()))
	scenario, forbid, redirect, html := f.scenario, f.forbid, f.redirect, f.html
	f.mu.Unlock()

	fixture := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "spiderpig", name))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return nil
		}
		return b
	}
	reply := func(code int, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		w.Write(body)
	}
	switch {
	case redirect:
		http.Redirect(w, r, "https://idp.wikimedia.org/login?service=https%3A%2F%2Fspiderpig&ticket=secret", http.StatusFound)
		return
	case html:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<html><body>Log in</body></html>"))
		return
	}
	authed := r.Header.Get("Cookie") == testCookie || r.Header.Get("Authorization") == "Bearer "+testToken
	if !authed {
		reply(http.StatusUnauthorized, fixture("401.json"))
		return
	}
	if forbid {
		reply(http.StatusForbidden, fixture("403.json"))
		return
	}
	switch r.URL.Path {
	case "/api/jobrunner/status":
		reply(200, fixture(scenario+"/status.json"))
	case "/api/jobs":
		if r.URL.Query().Get("skip") != "0" || r.URL.Query().Get("limit") == "" {
			reply(422, []byte(`{"detail":"bad query"}`))
			return
		}
		reply(200, fixture(scenario+"/jobs.json"))
	default:
		reply(404, []byte(`{"detail":"Not Found"}`))
	}
}

func newTestSpiderPig(t *testing.T, url string, creds Credentials, log *slog.Logger) *SpiderPig {
	t.Helper()
	sp, err := NewSpiderPig(SpiderPigConfig{URL: url, JobsLimit: 10, Timeout: 5 * time.Second}, creds, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func TestSpiderPigIdle(t *testing.T) {
	srv := newFakeSpiderPig(t, "idle")
	sp := newTestSpiderPig(t, srv.URL, Credentials{Cookie: testCookie}, nil)
	st, err := sp.JobrunnerStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "idle" || st.Job != nil || st.AwaitingInteraction() {
		t.Fatalf("%+v", st)
	}
	jobs, err := sp.Jobs(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].ID != 41 || jobs[0].Busy() || jobs[0].Queued() || *jobs[0].ExitStatus != 0 || *jobs[1].ExitStatus != 1 {
		t.Fatalf("jobs %+v", jobs)
	}
	if got := jobs[0].FinishedAt.Sub(*jobs[0].StartedAt); got != 526750*time.Millisecond {
		t.Fatalf("epoch floats: duration %v", got)
	}
	argv, err := jobs[0].Argv()
	if err != nil || strings.Join(argv, " ") != "scap backport --yes 1101577" {
		t.Fatalf("argv %q %v", argv, err)
	}
	if q := srv.request(1).URL.RawQuery; q != "limit=10&skip=0" {
		t.Fatalf("jobs query %q", q)
	}
	if ua := srv.request(0).Header.Get("User-Agent"); !strings.HasPrefix(ua, "poolbot") {
		t.Fatalf("user agent %q", ua)
	}
}

func TestSpiderPigRunningJob(t *testing.T) {
	srv := newFakeSpiderPig(t, "running")
	sp := newTestSpiderPig(t, srv.URL, Credentials{Token: testToken}, nil)
	st, err := sp.JobrunnerStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	j := st.Job
	if j == nil || j.ID != 42 || j.User != "kim" || !j.Running() || j.FinishedAt != nil || j.ExitStatus != nil {
		t.Fatalf("job %+v", j)
	}
	if want := time.Date(2026, 4, 2, 15, 0, 1, 750_000_000, time.UTC); !j.StartedAt.Equal(want) {
		t.Fatalf("started %v, want %v", j.StartedAt, want)
	}
	if j.Status.Text() != "Syncing to canaries" || !bytes.Contains(j.Status.Progress, []byte(`"done": 12`)) {
		t.Fatalf("status %+v", j.Status)
	}
	if got := srv.request(0).Header.Get("Authorization"); got != "Bearer "+testToken {
		t.Fatalf("authorization header %q", got)
	}
}

func TestSpiderPigRunningIsComputedLikeSpiderPig(t *testing.T) {
	ts := time.Unix(1775142001, 0)
	s := func(v string) *string { return &v }
	cases := []struct {
		name    string
		job     Job
		running bool
		queued  bool
	}{
		{"started, not finished", Job{StartedAt: &ts}, true, false},
		{"finished", Job{StartedAt: &ts, FinishedAt: &ts}, false, false},
		{"orphaned", Job{StartedAt: &ts, Status: JobStatus{Status: s("orphaned")}}, false, false},
		{"queued", Job{}, false, true},
		{"queued but orphaned", Job{Status: JobStatus{Status: s("orphaned")}}, false, false},
		{"awaiting interaction", Job{StartedAt: &ts, Status: JobStatus{Status: s("Awaiting user interaction")}}, true, false},
	}
	for _, c := range cases {
		if c.job.Running() != c.running || c.job.Queued() != c.queued {
			t.Errorf("%s: running %v queued %v, want %v %v", c.name, c.job.Running(), c.job.Queued(), c.running, c.queued)
		}
	}
}

func TestSpiderPigToleratesCamelCaseAndExtraFields(t *testing.T) {
	var j Job
	err := j.UnmarshalJSON([]byte(`{"id": "7", "type": "train", "user": "a", "command": ["scap", "train"],
		"queuedAt": "2026-04-02T15:00:00Z", "startedAt": 1775142001, "finishedAt": null, "exitStatus": null,
		"status": "Running", "somethingNew": {"x": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != 7 || !j.Running() || j.QueuedAt == nil || j.Status.Text() != "Running" || j.Summary() != "scap train" {
		t.Fatalf("%+v", j)
	}
	for _, bad := range []string{`{"id": 1, "started_at": "yesterday"}`, `{"id": 1, "started_at": 1e300}`, `{"id": "x"}`} {
		if err := new(Job).UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestSpiderPigRefusedCredentials(t *testing.T) {
	srv := newFakeSpiderPig(t, "idle")
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	sp := newTestSpiderPig(t, srv.URL, Credentials{Cookie: "spiderpig_session=expired"}, log)
	_, err := sp.JobrunnerStatus(context.Background())
	if !errors.Is(err, ErrSpiderPigAuth) || !strings.Contains(err.Error(), "SpiderPig refused the credentials (HTTP 401: Not authenticated)") {
		t.Fatalf("401: %v", err)
	}

	srv.mode(true, false, false)
	sp = newTestSpiderPig(t, srv.URL, Credentials{Token: testToken}, log)
	_, err = sp.Jobs(context.Background(), 5)
	if !errors.Is(err, ErrSpiderPigAuth) || !strings.Contains(err.Error(), "HTTP 403: unauthorized: You are not authorized to perform this action") {
		t.Fatalf("403: %v", err)
	}

	srv.mode(false, true, false)
	_, err = sp.JobrunnerStatus(context.Background())
	if !errors.Is(err, ErrSpiderPigAuth) || !strings.Contains(err.Error(), "idp.wikimedia.org") || strings.Contains(err.Error(), "ticket") {
		t.Fatalf("redirect: %v", err)
	}

	srv.mode(false, false, true)
	_, err = sp.JobrunnerStatus(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("html: %v", err)
	}

	// Through the Monitor, with logging: the credentials appear nowhere.
	srv.mode(true, false, false)
	m := NewMonitor(MonitorOptions{SpiderPig: sp, Logger: log})
	act, err := m.Check(context.Background())
	if err == nil || act.Clear() || len(act.Failed) != 1 || act.Failed[0].Source != SourceSpiderPig {
		t.Fatalf("an unreadable source must fail closed: %+v, %v", act, err)
	}
	log.Info("credentials", "creds", Credentials{Token: testToken, Cookie: testCookie})
	for _, secret := range []string{testToken, "s3cr3t-cookie-value"} {
		if strings.Contains(logs.String(), secret) || strings.Contains(err.Error(), secret) || strings.Contains(act.Summary(), secret) {
			t.Fatalf("secret %q leaked:\n%s", secret, logs.String())
		}
	}
	if s := (Credentials{Cookie: testCookie}).String(); strings.Contains(s, "s3cr3t") {
		t.Fatalf("String() leaks: %s", s)
	}
}

func TestSpiderPigActivityScenarios(t *testing.T) {
	srv := newFakeSpiderPig(t, "idle")
	sp := newTestSpiderPig(t, srv.URL, Credentials{Cookie: testCookie}, nil)
	m := NewMonitor(MonitorOptions{SpiderPig: sp})

	cases := []struct {
		scenario string
		busy     bool
		jobID    int64
		who      string
		what     []string
		since    time.Time
	}{
		{"idle", false, 0, "", nil, time.Time{}},
		{"running", true, 42, "kim", []string{"backport job 42 running: scap backport --yes 1102000 1102001"}, time.Date(2026, 4, 2, 15, 0, 1, 750_000_000, time.UTC)},
		{"interaction", true, 43, "lee", []string{"backport job 43 running, awaiting user interaction"}, time.Date(2026, 4, 2, 16, 0, 1, 0, time.UTC)},
		{"orphaned", false, 0, "", nil, time.Time{}},
		{"queued", true, 45, "releng-bot", []string{"train job 45 queued", "scap train --yes group2"}, time.Date(2026, 4, 2, 18, 0, 0, 500_000_000, time.UTC)},
	}
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			srv.set(c.scenario)
			act, err := m.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if act.Busy != c.busy {
				t.Fatalf("busy %v, want %v: %+v", act.Busy, c.busy, act)
			}
			if !c.busy {
				return
			}
			if len(act.Reasons) != 1 {
				t.Fatalf("reasons %+v", act.Reasons)
			}
			r := act.Reasons[0]
			if r.Source != SourceSpiderPig || r.JobID != c.jobID || r.Who != c.who || !r.Since.Equal(c.since) {
				t.Fatalf("reason %+v", r)
			}
			for _, w := range c.what {
				if !strings.Contains(r.What, w) {
					t.Errorf("what %q lacks %q", r.What, w)
				}
			}
			if strings.Contains(r.What, "Syncing") {
				t.Errorf("what %q carries a volatile sub-status (a new notice each time it changes)", r.What)
			}
		})
	}
}

func TestSpiderPigTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	sp, err := NewSpiderPig(SpiderPigConfig{URL: srv.URL, Timeout: 200 * time.Millisecond}, Credentials{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = sp.JobrunnerStatus(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
}

func TestMonitorAsksSpiderPigAtMostOncePerInterval(t *testing.T) {
	srv := newFakeSpiderPig(t, "running")
	sp := newTestSpiderPig(t, srv.URL, Credentials{Cookie: testCookie}, nil)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 4, 2, 15, 0, 0, 0, time.UTC))
	m := NewMonitor(MonitorOptions{SpiderPig: sp, SpiderPigMinInterval: 5 * time.Second, Clock: clock})
	requests := func() int {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.requests)
	}
	act, _ := m.Check(context.Background())
	if !act.Busy || requests() != 2 {
		t.Fatalf("first check: busy %v, %d requests", act.Busy, requests())
	}
	srv.set("idle")
	clock.Advance(4 * time.Second)
	if act, _ := m.Check(context.Background()); !act.Busy || requests() != 2 {
		t.Fatalf("within the interval the last answer is reused: busy %v, %d requests", act.Busy, requests())
	}
	clock.Advance(time.Second)
	if act, _ := m.Check(context.Background()); act.Busy || requests() != 4 {
		t.Fatalf("after the interval SpiderPig is asked again: busy %v, %d requests", act.Busy, requests())
	}
}

func FuzzJobUnmarshal(f *testing.F) {
	for _, name := range []string{"idle/jobs.json", "running/jobs.json", "interaction/jobs.json", "orphaned/jobs.json", "queued/jobs.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "spiderpig", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"jobs":[{"id":"1","startedAt":"2026-04-02T15:00:00Z","status":"orphaned","command":["a"]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var out struct {
			Jobs []Job `json:"jobs"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			return
		}
		for _, j := range out.Jobs {
			if j.Running() && j.Queued() {
				t.Fatalf("running and queued: %+v", j)
			}
			if j.Orphaned() && (j.Running() || j.Queued()) {
				t.Fatalf("orphaned job counted: %+v", j)
			}
			for _, ts := range []*time.Time{j.QueuedAt, j.StartedAt, j.FinishedAt} {
				if ts != nil && (ts.Before(time.Unix(0, 0)) || ts.Year() > 5200) {
					t.Fatalf("timestamp out of range: %v", ts)
				}
			}
			if s := j.Summary(); len(s) > 160 || strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("unsafe summary %q", s)
			}
		}
	})
}
