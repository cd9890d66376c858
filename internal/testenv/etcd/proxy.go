package etcd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Proxy forwards etcd v2 requests to a Server. With LoseWriteAnswers, it
// forwards a PUT, lets etcd apply it, and then closes the connection
// instead of answering: the write happened but its answer is lost, as when
// a network path breaks, or etcd dies, at the wrong moment. AfterWrite, if
// set, runs after such a write reached etcd and before the answer is
// dropped (a test stops etcd there).
type Proxy struct {
	// URL is the proxy's client URL.
	URL string

	target     string
	lose       atomic.Bool
	afterWrite atomic.Pointer[func()]
	puts       atomic.Int32
	lost       atomic.Int32
	lostIndex  atomic.Uint64
}

// StartProxy starts a proxy in front of srv; it stops when the test ends.
func StartProxy(t testing.TB, srv *Server) *Proxy {
	t.Helper()
	p := &Proxy{target: srv.ClientURL}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	p.URL = hs.URL
	return p
}

// LoseWriteAnswers makes the proxy drop the answer of every PUT (true) or
// forward answers again (false).
func (p *Proxy) LoseWriteAnswers(lose bool) { p.lose.Store(lose) }

// AfterLostWrite sets what runs after a PUT whose answer is dropped
// reached etcd.
func (p *Proxy) AfterLostWrite(f func()) { p.afterWrite.Store(&f) }

// Puts is how many PUTs the proxy forwarded; Lost how many answers it
// dropped.
func (p *Proxy) Puts() int { return int(p.puts.Load()) }

// Lost is how many write answers the proxy dropped.
func (p *Proxy) Lost() int { return int(p.lost.Load()) }

// LostIndex is the modifiedIndex etcd gave the last write whose answer the
// proxy dropped (0 if none, or if that answer held no node).
func (p *Proxy) LostIndex() uint64 { return p.lostIndex.Load() }

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	if r.Method == http.MethodPut {
		p.puts.Add(1)
		if p.lose.Load() {
			p.lost.Add(1)
			var v2 struct {
				Node *struct {
					ModifiedIndex uint64 `json:"modifiedIndex"`
				} `json:"node"`
			}
			if json.Unmarshal(answer, &v2) == nil && v2.Node != nil {
				p.lostIndex.Store(v2.Node.ModifiedIndex)
			}
			if f := p.afterWrite.Load(); f != nil && *f != nil {
				(*f)()
			}
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}
