package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// A registry whose storage write fails during a PATCH still answers 202:
// distribution ignores the blob writer's Close error and reports the size
// the driver stored, Range "0-0" for none (seen with an S3 UploadPart
// answered 404 NoSuchUpload by the other apus site). The probe fails and
// says what that Range means. A stand-in server, since a real registry
// does this only when its S3 connections lead to two sites (e2e/incident).
func TestProbeChunkNotStored(t *testing.T) {
	for _, tc := range []struct {
		rng    string
		detail []string
	}{
		{"0-0", []string{`Range "0-0" after a 256-byte chunk, want "0-255"`, "accepted the chunk but stored none of its 256 bytes", "a write to its storage failed", "NoSuchUpload"}},
		{"0-99", []string{`Range "0-99"`, "stored 100 of its 256 bytes"}},
		{"bytes=0-255", []string{`Range "bytes=0-255" after a 256-byte chunk, want "0-255"`}},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			mux := http.NewServeMux()
			upload := "/v2/poolbot/probe/blobs/uploads/3f0c"
			mux.HandleFunc("POST /v2/poolbot/probe/blobs/uploads/", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", upload+"?_state=a")
				w.Header().Set("Range", "0-0")
				w.WriteHeader(http.StatusAccepted)
			})
			mux.HandleFunc("PATCH "+upload, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", upload+"?_state=b")
				w.Header().Set("Range", tc.rng)
				w.WriteHeader(http.StatusAccepted)
			})
			mux.HandleFunc("DELETE "+upload, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
			srv := httptest.NewServer(mux)
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			p, _ := strconv.Atoi(u.Port())
			cfg := DefaultConfig()
			cfg.Probe.BlobSize = 256
			c, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			res := c.Probe(context.Background(), Instance{Name: "restricted", Host: u.Hostname(), Port: p, DebugPort: p}, "poolbot/probe")
			var pe *ProbeError
			if res.OK || !errors.As(res.Err, &pe) || pe.Step != StepUploadChunk || pe.Code != CodeBadResponse || pe.Status != http.StatusAccepted {
				t.Fatalf("probe = %+v", res)
			}
			for _, want := range tc.detail {
				if !strings.Contains(pe.Detail, want) {
					t.Errorf("detail lacks %q: %s", want, pe.Detail)
				}
			}
		})
	}
}
