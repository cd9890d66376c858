package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t testing.TB, cfg Config, clock clockwork.Clock) *Client {
	t.Helper()
	c, err := New(cfg, Options{Clock: clock})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

var testReason = Reason{Text: "restart docker-registry", RequestID: 42, Operator: "alice", Task: "T12345"}

// deadURL is a loopback URL nothing listens on.
func deadURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestSilenceHostOnRealAlertmanager(t *testing.T) {
	srv := server(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	clock := clockwork.NewFakeClockAt(now)
	c := newClient(t, Config{URLs: []string{srv.URL}, Margin: 5 * time.Minute}, clock)
	ctx := testCtx(t)

	created, err := c.SilenceHost(ctx, "docker-registry2001.codfw.wmnet", 15*time.Minute, testReason)
	if err != nil {
		t.Fatalf("SilenceHost: %v", err)
	}
	if want := now.Add(20 * time.Minute); !created.EndsAt.Equal(want) || created.Host != "docker-registry2001.codfw.wmnet" {
		t.Fatalf("created %+v, want EndsAt %s", created, want)
	}
	s, err := c.Get(ctx, created.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if s.State() != StateActive {
		t.Errorf("state %q, want active", s.State())
	}
	if s.CreatedBy != "poolbot" || s.Comment != "restart docker-registry - alice via poolbot #42 - T12345" {
		t.Errorf("createdBy %q comment %q", s.CreatedBy, s.Comment)
	}
	if !s.EndsAt.Equal(now.Add(20 * time.Minute)) {
		t.Errorf("endsAt %s, want %s", s.EndsAt, now.Add(20*time.Minute))
	}
	if len(s.Matchers) != 1 || s.Matchers[0].Name != "instance" || !s.Matchers[0].IsRegex ||
		s.Matchers[0].Value != `^(docker\-registry2001)(:[0-9]+)?$` {
		t.Errorf("matchers %+v", s.Matchers)
	}

	// The silence really mutes the host's alerts (any exporter port), and
	// only that host's.
	postAlerts(t, srv.URL, "docker-registry2001:9100", "docker-registry2001", "docker-registry2002:9100")
	waitAlertState(t, srv.URL, "docker-registry2001:9100", "suppressed", created.ID)
	waitAlertState(t, srv.URL, "docker-registry2001", "suppressed", created.ID)
	waitAlertState(t, srv.URL, "docker-registry2002:9100", "active", "")

	if err := c.Delete(ctx, created.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	s, err = c.Get(ctx, created.ID)
	if err != nil || s.State() != StateExpired {
		t.Fatalf("after Delete: %+v, %v; want expired", s.Status, err)
	}
	waitAlertState(t, srv.URL, "docker-registry2001:9100", "active", "")
	// Deleting again (a retry after a lost answer, a cleanup after a crash)
	// is done, not an error.
	if err := c.Delete(ctx, created.ID); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestUnknownSilence(t *testing.T) {
	srv := server(t)
	c := newClient(t, Config{URLs: []string{srv.URL}}, nil)
	const id = "0f0f0f0f-0000-4000-8000-000000000000"
	if _, err := c.Get(testCtx(t), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v, want ErrNotFound", err)
	}
	err := c.Delete(testCtx(t), id)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete unknown: %v, want ErrNotFound", err)
	}
	if err := c.Delete(testCtx(t), "../../silences"); err == nil || !strings.Contains(err.Error(), "not a silence id") {
		t.Fatalf("Delete with a path in the id: %v", err)
	}
}

func TestAlertmanagerRefusesBadSilence(t *testing.T) {
	srv := server(t)
	c := newClient(t, Config{URLs: []string{srv.URL}}, nil)
	now := time.Now()
	// Alertmanager itself refuses an invalid regex; the error carries its
	// message.
	_, err := c.Create(testCtx(t), []Matcher{{Name: "instance", Value: "(", IsRegex: true}}, now, now.Add(time.Minute), "x")
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || errors.Is(err, ErrUnavailable) {
		t.Fatalf("invalid regex: %v", err)
	}
}

func TestAlertmanagerDown(t *testing.T) {
	dead := deadURL(t)
	c := newClient(t, Config{URLs: []string{dead}}, nil)
	_, err := c.SilenceHost(testCtx(t), "docker-registry2001", time.Minute, testReason)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SilenceHost with Alertmanager down: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), strings.TrimPrefix(dead, "http://")) || !strings.Contains(err.Error(), "docker-registry2001") {
		t.Errorf("error does not name the Alertmanager and the host: %v", err)
	}
	if err := c.Delete(testCtx(t), "0f0f0f0f-0000-4000-8000-000000000000"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Delete with Alertmanager down: %v", err)
	}
}

func TestAlertmanagerHangsTimesOut(t *testing.T) {
	// A listener that accepts and never answers: the per-request timeout
	// bounds the wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c := newClient(t, Config{URLs: []string{"http://" + l.Addr().String()}, Timeout: 200 * time.Millisecond}, nil)
	if _, err := c.SilenceHost(testCtx(t), "docker-registry2001", time.Minute, testReason); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("hanging Alertmanager: %v, want ErrUnavailable", err)
	}
}

func TestFailoverToSecondAlertmanager(t *testing.T) {
	srv := server(t)
	c := newClient(t, Config{URLs: []string{deadURL(t), srv.URL}}, nil)
	created, err := c.SilenceHost(testCtx(t), "docker-registry1001.eqiad.wmnet", time.Minute, testReason)
	if err != nil {
		t.Fatalf("SilenceHost with the first Alertmanager down: %v", err)
	}
	if err := c.Delete(testCtx(t), created.ID); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedAnswers(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"not json", 200, "<html>proxy</html>", "malformed answer"},
		{"no id", 200, `{}`, "carries no silence id"},
		{"id not a uuid", 200, `{"silenceID":"x; rm -rf"}`, "carries no silence id"},
		{"error message", 400, `{"code":612,"message":"matchers in body should have at least 1 items"}`, "HTTP 400: matchers in body"},
		{"bare string error", 500, `"failed to create silence"`, "HTTP 500: failed to create silence"},
		{"proxy error", 502, `Bad Gateway`, `HTTP 502: "Bad Gateway"`},
		{"huge", 200, strings.Repeat("x", maxAnswerBytes+10), "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer ts.Close()
			c := newClient(t, Config{URLs: []string{ts.URL}}, nil)
			_, err := c.SilenceHost(testCtx(t), "docker-registry2001", time.Minute, testReason)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want it to contain %q", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestGetMalformed(t *testing.T) {
	const id = "0f0f0f0f-0000-4000-8000-000000000000"
	for name, body := range map[string]string{
		"other id":      `{"id":"1f0f0f0f-0000-4000-8000-000000000000","status":{"state":"active"}}`,
		"unknown state": `{"id":"` + id + `","status":{"state":"dormant"}}`,
		"garbage":       `[`,
	} {
		t.Run(name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
			defer ts.Close()
			c := newClient(t, Config{URLs: []string{ts.URL}}, nil)
			if _, err := c.Get(testCtx(t), id); err == nil {
				t.Fatal("malformed silence accepted")
			}
		})
	}
}

func TestSilenceHostRefusesBadInput(t *testing.T) {
	requests := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests++ }))
	defer ts.Close()
	c := newClient(t, Config{URLs: []string{ts.URL}}, nil)
	for name, call := range map[string]func() error{
		"bad host": func() error { _, err := c.SilenceHost(testCtx(t), "host|.*", time.Minute, testReason); return err },
		"quote": func() error {
			r := testReason
			r.Text = `say "hi"`
			_, err := c.SilenceHost(testCtx(t), "h1", time.Minute, r)
			return err
		},
		"newline": func() error {
			r := testReason
			r.Operator = "a\nb"
			_, err := c.SilenceHost(testCtx(t), "h1", time.Minute, r)
			return err
		},
		"task": func() error {
			r := testReason
			r.Task = "12345"
			_, err := c.SilenceHost(testCtx(t), "h1", time.Minute, r)
			return err
		},
		"zero timeout": func() error { _, err := c.SilenceHost(testCtx(t), "h1", 0, testReason); return err },
		"too long":     func() error { _, err := c.SilenceHost(testCtx(t), "h1", 48*time.Hour, testReason); return err },
		"no request id": func() error {
			r := testReason
			r.RequestID = 0
			_, err := c.SilenceHost(testCtx(t), "h1", time.Minute, r)
			return err
		},
	} {
		if err := call(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if requests != 0 {
		t.Errorf("bad input reached Alertmanager %d times", requests)
	}
}

func TestHostMatchersLikeSpicerack(t *testing.T) {
	m, err := HostMatchers("docker-registry2001.codfw.wmnet", "registry1003")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(m)
	// spicerack: {"name": "instance", "value": "^(" + "|".join(re.escape(h)) + ")(:[0-9]+)?$", "isRegex": True}
	want := `[{"name":"instance","value":"^(docker\\-registry2001|registry1003)(:[0-9]+)?$","isRegex":true}]`
	if string(got) != want {
		t.Fatalf("matchers\n got %s\nwant %s", got, want)
	}
}

// postAlerts fires one test alert per instance label.
func postAlerts(t *testing.T, base string, instances ...string) {
	t.Helper()
	var alerts []map[string]any
	for _, inst := range instances {
		alerts = append(alerts, map[string]any{
			"labels":   map[string]string{"alertname": "PoolbotTest", "instance": inst},
			"startsAt": time.Now().UTC().Format(time.RFC3339),
			"endsAt":   time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}
	body, _ := json.Marshal(alerts)
	resp, err := http.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("post alerts: %d %s", resp.StatusCode, b)
	}
}

// waitAlertState waits until Alertmanager reports the alert for instance in
// state, silenced by silenceID when given.
func waitAlertState(t *testing.T, base, instance, state, silenceID string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/api/v2/alerts?filter=" + fmt.Sprintf("instance=%q", instance))
		if err != nil {
			t.Fatal(err)
		}
		var alerts []struct {
			Labels map[string]string `json:"labels"`
			Status struct {
				State      string   `json:"state"`
				SilencedBy []string `json:"silencedBy"`
			} `json:"status"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		if json.Unmarshal(b, &alerts) != nil {
			continue
		}
		for _, a := range alerts {
			if a.Labels["instance"] != instance || a.Status.State != state {
				continue
			}
			if silenceID == "" || (len(a.Status.SilencedBy) == 1 && a.Status.SilencedBy[0] == silenceID) {
				return
			}
		}
	}
	t.Fatalf("alert instance=%s never reached state %s (silence %q); last answer %s", instance, state, silenceID, last)
}

// BenchmarkSilenceAndDelete measures one host's silence round trip (create
// plus delete) against the real Alertmanager on loopback.
func BenchmarkSilenceAndDelete(b *testing.B) {
	srv := server(b)
	c := newClient(b, Config{URLs: []string{srv.URL}}, nil)
	ctx := context.Background()
	for b.Loop() {
		created, err := c.SilenceHost(ctx, "docker-registry2001", time.Minute, testReason)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(ctx, created.ID); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRemoveAllAfterCrash(t *testing.T) {
	srv := server(t)
	c := newClient(t, Config{URLs: []string{srv.URL}}, nil)
	ctx := testCtx(t)
	var stored []Created
	for _, h := range []string{"docker-registry2001", "docker-registry2002"} {
		s, err := c.SilenceHost(ctx, h, time.Minute, testReason)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, s)
	}
	// One was already removed before the crash.
	if err := c.Delete(ctx, stored[0].ID); err != nil {
		t.Fatal(err)
	}
	stored = append(stored, Created{ID: "0f0f0f0f-0000-4000-8000-000000000000", Host: "gone"})
	left, err := c.RemoveAll(ctx, stored)
	if err != nil || len(left) != 0 {
		t.Fatalf("RemoveAll: %v %v", left, err)
	}
	if s, err := c.Get(ctx, stored[1].ID); err != nil || s.State() != StateExpired {
		t.Fatalf("second silence after RemoveAll: %+v %v", s.Status, err)
	}
	// Alertmanager down: everything is left, with host and expiry named.
	down := newClient(t, Config{URLs: []string{deadURL(t)}}, nil)
	left, err = down.RemoveAll(ctx, stored[:2])
	if len(left) != 2 || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "docker-registry2002") || !strings.Contains(err.Error(), "expires") {
		t.Fatalf("RemoveAll with Alertmanager down: %v %v", left, err)
	}
}
