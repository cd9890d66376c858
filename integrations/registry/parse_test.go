package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestParseErrors(t *testing.T) {
	// Bodies as distribution v3.1.2 sends them.
	errs, err := ParseErrors([]byte(`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":{"Path":"/docker/registry/v2/repositories/poolbot/probe/_uploads/0b1c/startedat","DriverName":"filesystem"}}]}` + "\n"))
	if err != nil || len(errs) != 1 || errs[0].Code != CodeBlobUploadUnknown {
		t.Fatalf("ParseErrors = %v, %v", errs, err)
	}
	if s := errs[0].String(); !strings.HasPrefix(s, "BLOB_UPLOAD_UNKNOWN: blob upload unknown to registry ({") {
		t.Errorf("String() = %q", s)
	}
	errs, err = ParseErrors([]byte(`{"errors":[{"code":"UNAVAILABLE","message":"service unavailable","detail":"health check failed: please see /debug/health"}]}`))
	if err != nil || errs[0].String() != "UNAVAILABLE: service unavailable (health check failed: please see /debug/health)" {
		t.Fatalf("ParseErrors = %v, %v", errs, err)
	}
	for _, bad := range []string{"", "  ", "<html>502 Bad Gateway</html>", `{"errors":[]}`, `{"errors":[{"message":"x"}]}`, `{"errors":{}}`, `[]`} {
		if _, err := ParseErrors([]byte(bad)); err == nil {
			t.Errorf("ParseErrors(%q) accepted", bad)
		}
	}
}

func TestClassifyStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		codes  []string
		want   string
	}{
		{404, []string{"BLOB_UPLOAD_UNKNOWN"}, CodeBlobUploadUnknown},
		{500, []string{"UNKNOWN"}, CodeHTTP5xx},
		{500, []string{"UNKNOWN", "DIGEST_INVALID"}, CodeDigestInvalid},
		{502, nil, CodeHTTP5xx},
		{401, nil, CodeUnauthorized},
		{403, nil, CodeDenied},
		{429, nil, CodeTooManyRequests},
		{404, []string{"SOMETHING_NEW"}, CodeHTTP4xx},
		{200, nil, CodeUnexpectedStatus},
		{307, nil, CodeUnexpectedStatus},
	} {
		var errs []RegistryError
		for _, c := range tc.codes {
			errs = append(errs, RegistryError{Code: c})
		}
		if got := classifyStatus(tc.status, errs); got != tc.want {
			t.Errorf("classifyStatus(%d, %v) = %q, want %q", tc.status, tc.codes, got, tc.want)
		}
	}
}

func TestWithDigestKeepsState(t *testing.T) {
	// An absolute Location as distribution builds it: _state is base64url
	// with '=' padding, query-escaped.
	req, _ := url.Parse("http://127.0.0.1:5002/v2/poolbot/probe/blobs/uploads/")
	loc, perr := uploadLocation(StepStartUpload, "POST", req, &response{
		status: 202, url: req,
		header: http.Header{"Location": {"/v2/poolbot/probe/blobs/uploads/0b1c?_state=ab-c_d%3D%3D"}},
	})
	if perr != nil {
		t.Fatal(perr)
	}
	if loc.Host != "127.0.0.1:5002" || loc.Scheme != "http" {
		t.Errorf("relative Location resolved to %s", loc)
	}
	put := withDigest(loc, "sha256:abc")
	q := put.Query()
	if q.Get("_state") != "ab-c_d==" || q.Get("digest") != "sha256:abc" || len(q) != 2 {
		t.Errorf("PUT URL %s query %v", put, q)
	}
	if loc.Query().Has("digest") {
		t.Error("withDigest changed its argument")
	}
	for _, bad := range []string{"", "::", "ftp://x/v2/a/blobs/uploads/1", "/v2/a/manifests/x"} {
		_, perr := uploadLocation(StepStartUpload, "POST", req, &response{status: 202, url: req, header: http.Header{"Location": {bad}}})
		if perr == nil || perr.Code != CodeBadResponse {
			t.Errorf("Location %q: %v", bad, perr)
		}
	}
}

// Wire-format corner cases a healthy distribution never produces, so they
// need a stand-in server: a 200 that is not `{}`, a 503 that is not JSON, and
// a /v2/ 200 from something that is not a registry.
func TestHealthWireCornerCases(t *testing.T) {
	mux := http.NewServeMux()
	var mu sync.Mutex
	var debugStatus int
	var debugBody string
	set := func(status int, body string) {
		mu.Lock()
		defer mu.Unlock()
		debugStatus, debugBody = status, body
	}
	mux.HandleFunc("/debug/health", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(debugStatus)
		_, _ = w.Write([]byte(debugBody))
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("{}")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	p, _ := strconv.Atoi(u.Port())
	inst := Instance{Name: "restricted", Host: u.Hostname(), Port: p, DebugPort: p}
	c, err := New(DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status   int
		body     string
		endpoint string
		code     string
	}{
		{200, `{"ok":true}`, EndpointDebugHealth, HealthBadBody},
		{200, ``, EndpointDebugHealth, HealthBadBody},
		{503, `<html>down</html>`, EndpointDebugHealth, HealthUnhealthy},
		{503, `{"redis:6379":{"err":"dial"}}`, EndpointDebugHealth, HealthUnhealthy},
		{200, " {}\n", EndpointV2, HealthNotRegistry},
	} {
		set(tc.status, tc.body)
		err := c.Health(context.Background(), inst)
		var herr *HealthError
		if !errors.As(err, &herr) || herr.Endpoint != tc.endpoint || herr.Code != tc.code {
			t.Errorf("%d %q: %v, want %s %s", tc.status, tc.body, err, tc.endpoint, tc.code)
		}
	}
	set(503, `{"redis:6379":{"err":"dial"}}`)
	var herr *HealthError
	if err := c.Health(context.Background(), inst); !errors.As(err, &herr) || herr.Checks["redis:6379"] != `{"err":"dial"}` {
		t.Errorf("non-string check value: %v", err)
	}
}

// FuzzParseErrors: never panics; whatever it accepts has codes, survives a
// round trip, and classifies into a bounded set of codes.
func FuzzParseErrors(f *testing.F) {
	for _, seed := range []string{
		`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":{"Path":"/x"}}]}`,
		`{"errors":[{"code":"UNAVAILABLE","message":"service unavailable","detail":"health check failed"}]}`,
		`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"poolbot/probe","Action":"push"}]}]}`,
		`{"errors":[{"code":"X"},{"code":"DIGEST_INVALID"}]}`,
		`{"errors":null}`, `{"errors":[{"code":""}]}`, `<html>`, ``, `{"errors":[{"code":"\u00e9\ud800"}]}`,
	} {
		f.Add([]byte(seed), 404)
	}
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		errs, err := ParseErrors(body)
		code := classifyStatus(status, errs)
		if !isRegistryCode(code) && !ourCode(code) {
			t.Fatalf("classifyStatus gave unbounded code %q", code)
		}
		if err != nil {
			if errs != nil {
				t.Fatal("errors returned alongside a parse error")
			}
			return
		}
		if len(errs) == 0 {
			t.Fatal("accepted a body without errors")
		}
		for _, e := range errs {
			if e.Code == "" {
				t.Fatal("accepted an error without code")
			}
			_ = e.String()
		}
		again, err := json.Marshal(errorBody{Errors: errs})
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		errs2, err := ParseErrors(again)
		if err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		for i := range errs {
			if errs[i].Code != errs2[i].Code || errs[i].Message != errs2[i].Message {
				t.Fatalf("round trip changed %+v to %+v", errs[i], errs2[i])
			}
		}
		_ = summarizeErrors(errs)
	})
}

func ourCode(code string) bool {
	switch code {
	case CodeHTTP4xx, CodeHTTP5xx, CodeUnexpectedStatus:
		return true
	}
	return false
}

// referenceName is distribution/reference's path grammar, written as the
// regular expression it publishes, to cross-check the hand-written parser.
var referenceName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)

func FuzzValidateRepository(f *testing.F) {
	for _, s := range []string{"poolbot/probe", "a__b", "a___b", "a--b", "a.-b", "A", "a/", "x/y/z", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := ValidateRepository(name) == nil
		want := referenceName.MatchString(name) && len(name) <= maxRepositoryLength
		if got != want {
			t.Fatalf("ValidateRepository(%q) ok=%v, grammar says %v", name, got, want)
		}
	})
}

func TestRegistryErrorJSONShape(t *testing.T) {
	// Detail is kept raw so nothing in it is lost or reinterpreted.
	errs, err := ParseErrors([]byte(`{"errors":[{"code":"DENIED","detail":[1,2]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual([]byte(errs[0].Detail), []byte(`[1,2]`)) || errs[0].String() != "DENIED ([1,2])" {
		t.Errorf("%+v %q", errs[0], errs[0].String())
	}
}

// A storage error's cause is at its end: cut texts keep it.
func TestQuoteBodyKeepsTheCause(t *testing.T) {
	cause := `dial tcp 127.9.9.2:7480: connect: connection refused`
	long := `{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":"s3aws: RequestError: send request failed\ncaused by: Post \"http://apus.discovery.wmnet:7480/registry-restricted/` +
		strings.Repeat("x", 2000) + `\": ` + cause + `"}]}` + "\r\n"
	q := quoteBody([]byte(long))
	if !strings.HasSuffix(q, cause+`"}]}`) || !strings.HasPrefix(q, `{"errors":[{"code":"UNKNOWN"`) {
		t.Errorf("quoted body lost its start or its cause: %q", q)
	}
	if len(q) > maxQuotedBody+len("…") || !strings.Contains(q, "…") {
		t.Errorf("quoted body is %d bytes, want at most %d with a cut mark", len(q), maxQuotedBody)
	}
	if strings.ContainsAny(quoteBody([]byte("a\rb\nc\x00d")), "\r\n\x00") {
		t.Error("control characters reach the quote")
	}
	if got := truncateMiddle("héllo wörld", 6); !utf8.ValidString(got) {
		t.Errorf("cut inside a rune: %q", got)
	}
	if got := quoteBody([]byte("ok")); got != "ok" {
		t.Errorf("short body changed: %q", got)
	}
}
