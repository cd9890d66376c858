package scap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxSpiderPigBody bounds a SpiderPig response.
const maxSpiderPigBody = 4 << 20

// Credentials authenticate poolbot to SpiderPig: the Cookie header value of
// an SSO+2FA session, or a bearer token. They are never logged or printed
// (String and LogValue redact them).
type Credentials struct {
	Cookie string
	Token  string
}

func (c Credentials) String() string {
	switch {
	case c.Cookie != "":
		return "Credentials{Cookie: <redacted>}"
	case c.Token != "":
		return "Credentials{Token: <redacted>}"
	}
	return "Credentials{}"
}

// LogValue keeps credentials out of structured logs.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ErrSpiderPigAuth is matched by errors.Is when SpiderPig refused the
// credentials (401, 403, or a redirect to the SSO login).
var ErrSpiderPigAuth = errors.New("SpiderPig refused the credentials")

// SpiderPig is a client for SpiderPig's job API.
type SpiderPig struct {
	base      *url.URL
	http      *http.Client
	creds     Credentials
	timeout   time.Duration
	jobsLimit int
	log       *slog.Logger
}

// NewSpiderPig returns a client for cfg.URL. httpClient may be nil; it is
// copied and told not to follow redirects (an unauthenticated request is
// redirected to the SSO login page, which must read as refused, not as a
// broken JSON answer).
func NewSpiderPig(cfg SpiderPigConfig, creds Credentials, httpClient *http.Client, log *slog.Logger) (*SpiderPig, error) {
	if err := checkSpiderPigURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("scap: spiderpig.url: %w", err)
	}
	u, _ := url.Parse(cfg.URL)
	if httpClient == nil {
		httpClient = &http.Client{}
	}
	hc := *httpClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSpiderPigWait
	}
	if cfg.JobsLimit <= 0 {
		cfg.JobsLimit = DefaultSpiderPigLimit
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SpiderPig{base: u, http: &hc, creds: creds, timeout: cfg.Timeout, jobsLimit: cfg.JobsLimit, log: log}, nil
}

// JobrunnerStatus is GET /api/jobrunner/status.
type JobrunnerStatus struct {
	// Status is "idle", "Running job <id>" (optionally with
	// ", awaiting user interaction"), "Terminated" or "Jobrunner not running".
	Status string `json:"status"`
	// Job is the job being run, or nil.
	Job *Job `json:"job"`
	// PendingInteraction is the prompt waiting for an answer, or null.
	PendingInteraction json.RawMessage `json:"pending_interaction"`
}

// AwaitingInteraction reports whether the job runner waits for a human.
func (s JobrunnerStatus) AwaitingInteraction() bool {
	p := bytes.TrimSpace(s.PendingInteraction)
	return len(p) > 0 && !bytes.Equal(p, []byte("null")) ||
		strings.Contains(strings.ToLower(s.Status), "awaiting user interaction")
}

// Job is one SpiderPig job. Key case is tolerated both ways (started_at and
// startedAt), unknown fields are ignored.
type Job struct {
	ID      int64
	Type    string // backport | train
	User    string
	Command string // JSON-encoded argv
	// QueuedAt, StartedAt and FinishedAt come from epoch floats; nil when null.
	QueuedAt, StartedAt, FinishedAt *time.Time
	ExitStatus                      *int
	Status                          JobStatus
	// ServerRunning is SpiderPig's own computed "running" field, when sent.
	ServerRunning *bool
	// Data is the job's free-form data (e.g. change_infos), unparsed.
	Data json.RawMessage
}

// JobStatus is a job's {"status": str|null, "progress": ...}.
type JobStatus struct {
	Status   *string
	Progress json.RawMessage
}

// Text is the status string, or "".
func (s JobStatus) Text() string {
	if s.Status == nil {
		return ""
	}
	return *s.Status
}

// Orphaned is SpiderPig's orphaned status: the job runner died under the job.
func (j Job) Orphaned() bool { return j.Status.Text() == "orphaned" }

// Running is computed exactly as SpiderPig does: started_at set,
// finished_at not set, and status.status not "orphaned".
func (j Job) Running() bool { return j.StartedAt != nil && j.FinishedAt == nil && !j.Orphaned() }

// Queued reports a job waiting for the job runner (never started, not
// finished, not orphaned): a deployment about to start.
func (j Job) Queued() bool { return j.StartedAt == nil && j.FinishedAt == nil && !j.Orphaned() }

// Busy is Running, or SpiderPig's own "running" field when it says so:
// the two disagreeing is read the cautious way.
func (j Job) Busy() bool { return j.Running() || j.ServerRunning != nil && *j.ServerRunning }

// Argv decodes Command, which SpiderPig stores as a JSON-encoded argv.
func (j Job) Argv() ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(j.Command), &argv); err != nil {
		return nil, fmt.Errorf("spiderpig: job %d command %q: %w", j.ID, j.Command, err)
	}
	return argv, nil
}

// Summary is a short human description of the job's command.
func (j Job) Summary() string {
	if argv, err := j.Argv(); err == nil && len(argv) > 0 {
		return sanitizeText(strings.Join(argv, " "), 160)
	}
	return sanitizeText(j.Command, 160)
}

// UnmarshalJSON accepts snake_case and camelCase keys.
func (j *Job) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	fields := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		fields[strings.ToLower(strings.ReplaceAll(k, "_", ""))] = v
	}
	var out Job
	var err error
	get := func(k string) (json.RawMessage, bool) {
		v, ok := fields[k]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, false
		}
		return v, true
	}
	if v, ok := get("id"); ok {
		if out.ID, err = decodeInt64(v); err != nil {
			return fmt.Errorf("spiderpig job id: %w", err)
		}
	}
	for _, s := range []struct {
		key string
		dst *string
	}{{"type", &out.Type}, {"user", &out.User}, {"command", &out.Command}} {
		if v, ok := get(s.key); ok {
			if err := json.Unmarshal(v, s.dst); err != nil {
				// command may arrive as an already-decoded list.
				if s.key == "command" && bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
					*s.dst = string(bytes.TrimSpace(v))
					continue
				}
				return fmt.Errorf("spiderpig job %s: %w", s.key, err)
			}
		}
	}
	for _, t := range []struct {
		key string
		dst **time.Time
	}{{"queuedat", &out.QueuedAt}, {"startedat", &out.StartedAt}, {"finishedat", &out.FinishedAt}} {
		if v, ok := get(t.key); ok {
			ts, err := decodeEpoch(v)
			if err != nil {
				return fmt.Errorf("spiderpig job %d %s: %w", out.ID, t.key, err)
			}
			*t.dst = &ts
		}
	}
	if v, ok := get("exitstatus"); ok {
		n, err := decodeInt64(v)
		if err != nil {
			return fmt.Errorf("spiderpig job %d exit_status: %w", out.ID, err)
		}
		e := int(n)
		out.ExitStatus = &e
	}
	if v, ok := get("status"); ok {
		if bytes.HasPrefix(bytes.TrimSpace(v), []byte("{")) {
			var st struct {
				Status   *string         `json:"status"`
				Progress json.RawMessage `json:"progress"`
			}
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("spiderpig job %d status: %w", out.ID, err)
			}
			out.Status = JobStatus{Status: st.Status, Progress: st.Progress}
		} else {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("spiderpig job %d status: %w", out.ID, err)
			}
			out.Status = JobStatus{Status: &s}
		}
	}
	if v, ok := get("running"); ok {
		var r bool
		if json.Unmarshal(v, &r) == nil {
			out.ServerRunning = &r
		}
	}
	if v, ok := get("data"); ok {
		out.Data = append(json.RawMessage(nil), v...)
	}
	*j = out
	return nil
}

func decodeInt64(v json.RawMessage) (int64, error) {
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return 0, err
		}
		n = json.Number(s)
	}
	return strconv.ParseInt(n.String(), 10, 64)
}

// decodeEpoch reads SpiderPig's epoch-float timestamps; an RFC 3339 string
// is accepted too, in case a newer SpiderPig serialises datetimes.
func decodeEpoch(v json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
			return time.Time{}, fmt.Errorf("epoch %v out of range", f)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return time.Time{}, fmt.Errorf("neither an epoch number nor a string: %s", truncateBytes(v, 40))
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return decodeEpoch(json.RawMessage(strconv.FormatFloat(f, 'f', -1, 64)))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: %w", truncateBytes([]byte(s), 40), err)
	}
	return t.UTC(), nil
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// JobrunnerStatus calls GET /api/jobrunner/status.
func (s *SpiderPig) JobrunnerStatus(ctx context.Context) (JobrunnerStatus, error) {
	var st JobrunnerStatus
	err := s.getJSON(ctx, "/api/jobrunner/status", nil, &st)
	return st, err
}

// Jobs calls GET /api/jobs?limit=N&skip=0 (newest first). limit <= 0 uses
// the configured jobs_limit.
func (s *SpiderPig) Jobs(ctx context.Context, limit int) ([]Job, error) {
	if limit <= 0 {
		limit = s.jobsLimit
	}
	var out struct {
		Jobs []Job `json:"jobs"`
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}, "skip": {"0"}}
	if err := s.getJSON(ctx, "/api/jobs", q, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

func (s *SpiderPig) getJSON(ctx context.Context, path string, q url.Values, dst any) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	u := s.base.JoinPath(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("spiderpig: GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "poolbot (scap activity check)")
	switch {
	case s.creds.Cookie != "":
		req.Header.Set("Cookie", s.creds.Cookie)
	case s.creds.Token != "":
		req.Header.Set("Authorization", "Bearer "+s.creds.Token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("spiderpig: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSpiderPigBody+1))
	if err != nil {
		return fmt.Errorf("spiderpig: GET %s: read body: %w", path, err)
	}
	if len(body) > maxSpiderPigBody {
		return fmt.Errorf("spiderpig: GET %s: answer larger than %d bytes", path, maxSpiderPigBody)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("spiderpig: GET %s: %w (HTTP %d%s)", path, ErrSpiderPigAuth, resp.StatusCode, errorDetail(body))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		loc := ""
		if l, err := resp.Location(); err == nil {
			loc = " to " + l.Scheme + "://" + l.Host + l.Path // never the query (it may carry tickets)
		}
		return fmt.Errorf("spiderpig: GET %s: %w (HTTP %d redirect%s, the SSO login?)", path, ErrSpiderPigAuth, resp.StatusCode, loc)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("spiderpig: GET %s: HTTP %d%s", path, resp.StatusCode, errorDetail(body))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return fmt.Errorf("spiderpig: GET %s: answer is %q, not JSON (a login page?)", path, mt)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("spiderpig: GET %s: decode: %w", path, err)
	}
	return nil
}

// errorDetail extracts FastAPI's {"detail": ...} or SpiderPig's
// {"code", "message"} from an error body, bounded.
func errorDetail(body []byte) string {
	var e struct {
		Detail  any    `json:"detail"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	var parts []string
	if e.Code != "" {
		parts = append(parts, e.Code)
	}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	if d, ok := e.Detail.(string); ok && d != "" {
		parts = append(parts, d)
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + sanitizeText(strings.Join(parts, ": "), 200)
}
