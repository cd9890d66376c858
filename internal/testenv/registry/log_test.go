package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogErrors(t *testing.T) {
	log := `time="2026-12-07T03:59:43.300000000Z" level=info msg="response completed" http.response.status=202
time="2026-12-07T03:59:43.358500012Z" level=error msg="unknown error completing upload: InternalError: This multipart completion is already in progress\n\tstatus code: 500"
time="2026-12-07T03:59:46.586066502Z" level=error msg="storage driver health check: s3aws: RequestError: send request failed"
time="2026-12-07T03:59:47.000000000Z" level=warning msg="error authorizing context"
`
	i := &Instance{LogPath: filepath.Join(t.TempDir(), "registry.log")}
	if err := os.WriteFile(i.LogPath, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := i.LogErrors(time.Date(2026, 12, 7, 3, 59, 43, 0, time.UTC), 10)
	if len(got) != 3 || !strings.Contains(got[0], "already in progress") || !strings.Contains(got[2], "level=warning") {
		t.Fatalf("LogErrors =\n%s", strings.Join(got, "\n"))
	}
	if got := i.LogErrors(time.Date(2026, 12, 7, 3, 59, 45, 0, time.UTC), 1); len(got) != 1 || !strings.Contains(got[0], "authorizing") {
		t.Fatalf("since 03:59:45, max 1: %q", got)
	}
}
