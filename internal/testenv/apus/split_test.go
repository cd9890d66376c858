package apus_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"poolbot/internal/testenv/registry"
)

// TestSplitNeedsACrossHostRead: two hosts on different sites each pass
// the write-then-read probe as integrations/registry runs it today (write
// and read on the same instance: each is consistent with its own site).
// What shows the split is reading on one host what was written through
// the other: the blob is unknown there. Issue 14's probe must do that.
func TestSplitNeedsACrossHostRead(t *testing.T) {
	a := sites(t)
	ctx := context.Background()
	onEqiad := startHost(t, a, "registry1005", "eqiad", registry.Options{})
	onCodfw := startHost(t, a, "registry2005", "codfw", registry.Options{})
	c := probeClient(t, 30*time.Second)
	for _, h := range []*host{onEqiad, onCodfw} {
		if res := c.Probe(ctx, target(h), "lab/split-probe"); !res.OK {
			t.Fatalf("same-instance probe on %s: %v", h.name, res)
		}
	}

	layer := randomLayer(t)
	var p registry.Pusher
	if err := p.PushBlob(ctx, onEqiad.reg.URL(), "lab/split-probe", layer); err != nil {
		t.Fatal(err)
	}
	head := func(h *host) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, h.reg.URL()+"/v2/lab/split-probe/blobs/"+registry.Digest(layer), nil)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := head(onEqiad); got != http.StatusOK {
		t.Fatalf("HEAD on the writing host: %d", got)
	}
	if got := head(onCodfw); got != http.StatusNotFound {
		t.Fatalf("HEAD on the host of the other site: %d, want 404 (blob unknown)", got)
	}
}
