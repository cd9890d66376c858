package conftool

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	etcdtest "poolbot/internal/testenv/etcd"
)

// etcdProxy forwards requests to etcd. With dropPut it forwards the first
// PUT, then closes the connection instead of answering: the write happened
// but its answer is lost, as when a network path breaks at the wrong time.
type etcdProxy struct {
	t       *testing.T
	target  string
	dropPut bool

	puts    atomic.Int32
	dropped atomic.Uint64 // modifiedIndex of the write whose answer was dropped
}

func (p *etcdProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for k, vs := range r.Header {
		if k != "Content-Length" && k != "Connection" {
			req.Header[k] = vs
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if r.Method == http.MethodPut && p.puts.Add(1) == 1 && p.dropPut {
		var v2 v2Response
		if err := json.Unmarshal(answer, &v2); err != nil || v2.Node == nil {
			p.t.Errorf("proxy: the first PUT's answer %q: %v", answer, err)
		} else {
			p.dropped.Store(v2.Node.ModifiedIndex)
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			p.t.Errorf("proxy: hijack: %v", err)
			return
		}
		conn.Close()
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

func startEtcdProxy(t *testing.T, srv *etcdtest.Server, dropPut bool) (*etcdProxy, string) {
	t.Helper()
	p := &etcdProxy{t: t, target: srv.ClientURL, dropPut: dropPut}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	return p, hs.URL
}

// TestEtcdLostWriteAnswerIsNotWrittenTwice: a compare-and-swap that etcd
// applied but whose answer never came back is retried on the next endpoint,
// which answers 101 (the index moved: by that very write). The re-read
// finds the value already stored, so poolbot does not write it a second
// time: one operation is one change, one watch event, and the index it
// reports is the one etcd holds.
func TestEtcdLostWriteAnswerIsNotWrittenTwice(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	lossy, lossyURL := startEtcdProxy(t, srv, true)
	other, otherURL := startEtcdProxy(t, srv, false)
	c := newEtcdClient(t, EtcdConfig{Endpoints: []string{lossyURL, otherURL}})
	watch := startWatch(t, etcdClientFor(t, srv), "apus")
	initialChanges(t, watch, 2)
	ctx := testCtx(t)
	key := etcdtest.DiscoveryKey("apus", "codfw")

	st, err := c.SetPooled(ctx, "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	written := lossy.dropped.Load()
	if lossy.puts.Load() != 1 || written == 0 {
		t.Fatalf("the lossy endpoint saw %d PUTs (dropped answer at index %d), want 1", lossy.puts.Load(), written)
	}
	if n := other.puts.Load(); n != 1 {
		t.Fatalf("the other endpoint saw %d PUTs, want 1 (the retry, refused with 101)", n)
	}
	fields, idx := storedFields(t, srv, key)
	if fields["pooled"] != false || idx != written {
		t.Fatalf("etcd holds %v at index %d, want pooled=false at %d (the one write)", fields, idx, written)
	}
	if st.Pooled || st.ModifiedIndex != written {
		t.Fatalf("SetPooled returned %+v, want pooled=false at index %d", st, written)
	}

	// The watch sees that one write, and next the marker written after
	// SetPooled returned: no second event for codfw in between.
	if got := nextChange(t, watch); got.Source != SourceEvent || got.Datacenter != "codfw" || got.ModifiedIndex != written {
		t.Fatalf("change %s, want the event of codfw's write at %d", got, written)
	}
	marker := srv.PutDiscovery(t, "apus", "eqiad", true)
	if got := nextChange(t, watch); got.Datacenter != "eqiad" || got.ModifiedIndex != marker {
		t.Fatalf("change %s, want the marker write of eqiad at %d (codfw written twice?)", got, marker)
	}
}
