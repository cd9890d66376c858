package ceph

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Lines as radosgw 16.2 (Debian bookworm) writes them, from the gateway
// that answered the UploadPart of an upload opened on the other site.
const sampleLog = `2026-12-07T04:58:06.870+0000 7f72297b26c0  1 ====== starting new request req=0x7f72a86f76e0 =====
2026-12-07T04:58:06.874+0000 7f71e37266c0  1 beast: 0x7f72a86f76e0: 127.0.0.1 - registry [07/Dec/2026:04:58:06.870 +0000] "PUT /registry-restricted/docker/registry/v2/repositories/poolbot/probe/_uploads/01a2/hashstates/sha256/256 HTTP/1.1" 200 108 - "aws-sdk-go/1.55.5 (go1.26.8; linux; amd64)" - latency=0.004000000s
2026-12-07T04:58:06.878+0000 7f71fef5d6c0  0 req 10404177276297239485 0.000000000s s3:put_obj ERROR: get_multipart_info returned -2009: (2009) Unknown error 2009
2026-12-07T04:58:06.878+0000 7f71fef5d6c0  1 ====== req done req=0x7f72a86f76e0 op status=-2009 http_status=404 latency=0.000000000s ======
2026-12-07T04:58:06.878+0000 7f71fef5d6c0  1 beast: 0x7f72a86f76e0: 127.0.0.1 - registry [07/Dec/2026:04:58:06.878 +0000] "PUT /registry-restricted/docker/registry/v2/repositories/poolbot/probe/_uploads/01a2/data?partNumber=1&uploadId=2~Oh66 HTTP/1.1" 404 248 - "aws-sdk-go/1.55.5 (go1.26.8; linux; amd64)" - latency=0.000000000s
2026-12-07T04:58:06.900+0000 7f71fef5d6c0  1 req 3072074973040601952 0.000000000s op->ERRORHANDLER: err_no=-2 new_err_no=-2
2026-12-07T04:58:06.900+0000 7f71fef5d6c0  1 beast: 0x7f72a86f76e0: 127.0.0.1 - registry [07/Dec/2026:04:58:06.900 +0000] "HEAD /registry-restricted/docker/registry/v2/blobs/sha256/aa/aaaa/data HTTP/1.1" 404 0 - "aws-sdk-go/1.55.5 (go1.26.8; linux; amd64)" - latency=0.000000000s
2026-12-07T04:58:07.000+0000 7f71fef5d6c0  1 beast: 0x7f72a86f76e0: 127.0.0.1 - registry [07/Dec/2026:04:58:07.000 +0000] "GET /registry-restricted?list-type=2&max-keys=1&prefix= HTTP/1.1" 503 0 - "aws-sdk-go/1.55.5 (go1.26.8; linux; amd64)" - latency=0.000000000s
`

func TestGatewayErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "log", logName("rgw")), []byte(sampleLog), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Site{Dir: dir}
	got := s.GatewayErrors(time.Date(2026, 12, 7, 4, 58, 0, 0, time.UTC), 10)
	if len(got) != 3 || !strings.Contains(got[0], "get_multipart_info returned -2009") ||
		!strings.Contains(got[1], `partNumber=1&uploadId=2~Oh66 HTTP/1.1" 404`) || !strings.Contains(got[2], `" 503 `) {
		t.Fatalf("GatewayErrors =\n%s", strings.Join(got, "\n"))
	}
	if got := s.GatewayErrors(time.Date(2026, 12, 7, 4, 58, 6, 950e6, time.UTC), 10); len(got) != 1 {
		t.Fatalf("since 04:58:06.950: %q", got)
	}
	if got := s.GatewayErrors(time.Time{}, 1); len(got) != 1 || !strings.Contains(got[0], `" 503 `) {
		t.Fatalf("max 1: %q", got)
	}
}
