package haproxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv/etcd"
	"poolbot/internal/testenv/haproxy"
)

// backends are small HTTP servers that count the requests reaching them:
// what the test checks is where the balancer sends requests, not what
// answers them (testenv/apus puts real registries behind it).
type backends struct {
	mu     sync.Mutex
	counts map[string]int
	srv    map[string]*httptest.Server
}

func startBackends(t *testing.T, names ...string) (*backends, []haproxy.Server) {
	b := &backends{counts: map[string]int{}, srv: map[string]*httptest.Server{}}
	var servers []haproxy.Server
	for _, n := range names {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.mu.Lock()
			b.counts[n]++
			b.mu.Unlock()
			fmt.Fprint(w, n)
		}))
		t.Cleanup(s.Close)
		b.srv[n] = s
		servers = append(servers, haproxy.Server{Name: n, Addr: strings.TrimPrefix(s.URL, "http://")})
	}
	return b, servers
}

// take returns the counts since the last call.
func (b *backends) take() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.counts
	b.counts = map[string]int{}
	return c
}

// send makes n requests through the balancer on one keep-alive client
// connection (as docker does), returning who answered each.
func send(t *testing.T, lb *haproxy.Balancer, n int) []string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	var who []string
	for range n {
		resp, err := c.Get(lb.URL() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET through haproxy: %d %s", resp.StatusCode, b)
		}
		who = append(who, string(b))
	}
	return who
}

func TestRoundRobinAndMaint(t *testing.T) {
	be, servers := startBackends(t, "registry2004.codfw.wmnet", "registry2005.codfw.wmnet", "registry1003.eqiad.wmnet")
	lb := haproxy.Start(t, haproxy.Options{Servers: servers})
	ctx := context.Background()

	// Round robin per request, also on one keep-alive connection: 30
	// requests, 10 each.
	who := send(t, lb, 30)
	if got := be.take(); len(got) != 3 || got["registry2004.codfw.wmnet"] != 10 || got["registry2005.codfw.wmnet"] != 10 || got["registry1003.eqiad.wmnet"] != 10 {
		t.Fatalf("30 requests spread as %v (%v), want 10 each", got, who)
	}
	if who[0] == who[1] {
		t.Fatalf("two consecutive requests on one connection reached the same host: %v", who[:2])
	}

	// Out of rotation: not one request reaches it.
	if err := lb.SetState(ctx, "registry1003.eqiad.wmnet", haproxy.Maint); err != nil {
		t.Fatal(err)
	}
	send(t, lb, 30)
	if got := be.take(); got["registry1003.eqiad.wmnet"] != 0 || got["registry2004.codfw.wmnet"]+got["registry2005.codfw.wmnet"] != 30 {
		t.Fatalf("with registry1003 in maint: %v", got)
	}
	st, err := lb.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := st["registry1003.eqiad.wmnet"]; s.Status != "MAINT" || s.Requests != 10 {
		t.Fatalf("show stat for registry1003: %+v", s)
	}

	// Weight 0 does the same; back in rotation it gets its share again.
	if err := lb.SetState(ctx, "registry1003.eqiad.wmnet", haproxy.Ready); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetWeight(ctx, "registry2005.codfw.wmnet", 0); err != nil {
		t.Fatal(err)
	}
	send(t, lb, 20)
	if got := be.take(); got["registry2005.codfw.wmnet"] != 0 || got["registry2004.codfw.wmnet"] != 10 || got["registry1003.eqiad.wmnet"] != 10 {
		t.Fatalf("with registry2005 at weight 0: %v", got)
	}

	// Bad input: a clear error, nothing changed.
	if err := lb.SetState(ctx, "nope", haproxy.Maint); err == nil || !strings.Contains(err.Error(), "No such server") {
		t.Fatalf("unknown server: %v", err)
	}
	if err := lb.SetState(ctx, "registry2004.codfw.wmnet; shutdown", haproxy.Maint); err == nil {
		t.Fatal("a server name with a command separator was sent")
	}
	if _, err := lb.Command(ctx, "show info\nshutdown frontend registry"); err == nil {
		t.Fatal("a command with a line break was sent")
	}
}

func TestPybalFollowsConftoolNodes(t *testing.T) {
	be, servers := startBackends(t, "registry2004.codfw.wmnet", "registry2005.codfw.wmnet")
	lb := haproxy.Start(t, haproxy.Options{Servers: servers})
	e := etcd.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	key := func(host string) string {
		return etcd.DefaultPrefix + "/pools/codfw/docker-registry/docker-registry/" + host
	}
	e.Put(t, key("registry2004.codfw.wmnet"), `{"pooled": "yes", "weight": 10}`)
	idx := e.Put(t, key("registry2005.codfw.wmnet"), `{"pooled": "no", "weight": 10}`)

	var mu sync.Mutex
	var applied []string
	p := &haproxy.Pybal{EtcdURL: e.ClientURL, DC: "codfw", Cluster: "docker-registry", Service: "docker-registry", Balancer: lb,
		OnApply: func(node, pooled string, weight int, err error) {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, fmt.Sprintf("%s=%s/%d err=%v", node, pooled, weight, err))
		}}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	wait := func(idx uint64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := p.WaitApplied(wctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	wait(idx)
	send(t, lb, 10)
	if got := be.take(); got["registry2005.codfw.wmnet"] != 0 || got["registry2004.codfw.wmnet"] != 10 {
		t.Fatalf("registry2005 depooled in conftool, yet: %v", got)
	}

	// The operator pools 2005 and depools 2004 (as confctl does).
	wait(e.Put(t, key("registry2005.codfw.wmnet"), `{"pooled": "yes", "weight": 10}`))
	wait(e.Put(t, key("registry2004.codfw.wmnet"), `{"pooled": "inactive", "weight": 10}`))
	send(t, lb, 10)
	if got := be.take(); got["registry2004.codfw.wmnet"] != 0 || got["registry2005.codfw.wmnet"] != 10 {
		t.Fatalf("after pool 2005 / inactive 2004: %v", got)
	}
	// Weight 0 and a deleted key: no traffic either; a key for a host the
	// balancer does not know is reported, not fatal.
	wait(e.Put(t, key("registry2004.codfw.wmnet"), `{"pooled": "yes", "weight": 0}`))
	send(t, lb, 4)
	if got := be.take(); got["registry2004.codfw.wmnet"] != 0 {
		t.Fatalf("weight 0: %v", got)
	}
	wait(e.Put(t, key("registry2099.codfw.wmnet"), `{"pooled": "yes", "weight": 1}`))
	wait(e.Put(t, key("registry2004.codfw.wmnet"), `{"pooled": "yes", "weight": 1}`))
	e.Delete(t, key("registry2005.codfw.wmnet"))
	n, _ := e.Get(t, key("registry2004.codfw.wmnet"))
	wait(n.ModifiedIndex + 1)
	send(t, lb, 4)
	if got := be.take(); got["registry2005.codfw.wmnet"] != 0 || got["registry2004.codfw.wmnet"] != 4 {
		t.Fatalf("after deleting 2005's key: %v", got)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	joined := strings.Join(applied, "\n")
	if !strings.Contains(joined, "registry2099.codfw.wmnet=yes/1 err=haproxy: set server registry2099.codfw.wmnet weight 1: No such server") {
		t.Errorf("unknown host not reported:\n%s", joined)
	}
}
