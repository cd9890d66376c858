package alertmanager

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestStartServesSilencesAPI(t *testing.T) {
	s := Start(t)
	resp, err := http.Get(s.URL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("GET /api/v2/silences on a fresh server: %d %s", resp.StatusCode, body)
	}
	s.Stop()
	if _, err := http.Get(s.URL + "/api/v2/silences"); err == nil {
		t.Fatal("stopped server still answers")
	}
}
