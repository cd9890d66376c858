package haproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pybal stands in for pybal: it watches conftool's node objects of one LVS
// service in etcd (v2 API, as confctl writes them) and applies each host's
// pooled state to the balancer:
//
//	/conftool/v1/pools/<dc>/<cluster>/<service>/<fqdn>  {"pooled": "yes|no|inactive", "weight": N}
//
// pooled "yes" puts the server in rotation with the node's weight (0 means
// no new traffic, as in LVS); "no", "inactive", a deleted key or a value
// that is not a node object take it out (state maint). Hosts without a
// key keep the state they have. Like pybal, it does not wait for anything:
// a request already sent to a host finishes there.
type Pybal struct {
	// EtcdURL is the etcd client URL, e.g. http://127.0.0.1:2379.
	EtcdURL string
	// HTTP is the client for etcd; nil means one with no overall timeout
	// (watches are long polls).
	HTTP *http.Client
	// Prefix is conftool's key prefix; default /conftool/v1.
	Prefix string
	// DC, Cluster and Service select the pool (for the registries: e.g.
	// codfw, docker-registry, docker-registry).
	DC, Cluster, Service string
	// Servers maps a node's name (fqdn) to its HAProxy server name; a name
	// not in the map is used as is.
	Servers map[string]string
	// Balancer is the HAProxy to drive.
	Balancer *Balancer
	// OnApply, when set, is called after each change is applied (the lab
	// prints it).
	OnApply func(node string, pooled string, weight int, err error)

	mu      sync.Mutex
	applied uint64
	cond    chan struct{} // closed and replaced when applied grows
}

// nodeValue is conftool's node schema (pooled is a string, not a bool).
type nodeValue struct {
	Pooled *string `json:"pooled"`
	Weight *int    `json:"weight"`
}

// PoolDir is the etcd directory of the pool's node objects.
func (p *Pybal) PoolDir() string {
	prefix := p.Prefix
	if prefix == "" {
		prefix = "/conftool/v1"
	}
	return prefix + "/pools/" + p.DC + "/" + p.Cluster + "/" + p.Service
}

// Run applies the current node objects, then every change, until ctx ends.
// After an etcd error it reports it through OnApply (node ""), waits a
// second and lists the pool again; so does it, without waiting, when the
// watch falls behind etcd's 1000-event history.
func (p *Pybal) Run(ctx context.Context) error {
	if p.DC == "" || p.Cluster == "" || p.Service == "" || p.Balancer == nil {
		return errors.New("pybal: DC, Cluster, Service and Balancer are required")
	}
	for {
		err := p.watch(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil { // the watch fell behind etcd's history: list again
			continue
		}
		if p.OnApply != nil {
			p.OnApply("", "", 0, fmt.Errorf("pybal: watch %s: %w", p.PoolDir(), err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// errIndexCleared is etcd's 401: the watch fell behind its 1000-event
// history; list again.
var errIndexCleared = errors.New("etcd event index cleared")

func (p *Pybal) watch(ctx context.Context) error {
	index, err := p.list(ctx)
	if err != nil {
		return err
	}
	for {
		ev, err := p.get(ctx, url.Values{"wait": {"true"}, "recursive": {"true"}, "waitIndex": {strconv.FormatUint(index+1, 10)}})
		if errors.Is(err, errIndexCleared) {
			return nil
		}
		if err != nil {
			return err
		}
		node := nodeName(p.PoolDir(), ev.Node.Key)
		if node != "" {
			value := ev.Node.Value
			if ev.Action == "delete" || ev.Action == "expire" || ev.Action == "compareAndDelete" {
				value = ""
			}
			p.apply(ctx, node, value)
		}
		index = ev.Node.ModifiedIndex
		p.markApplied(index)
	}
}

// list applies every node of the pool and returns etcd's index.
func (p *Pybal) list(ctx context.Context) (uint64, error) {
	ev, err := p.get(ctx, url.Values{"recursive": {"true"}, "quorum": {"true"}})
	if err != nil {
		return 0, err
	}
	for _, n := range ev.Node.Nodes {
		if name := nodeName(p.PoolDir(), n.Key); name != "" && !n.Dir {
			p.apply(ctx, name, n.Value)
		}
	}
	p.markApplied(ev.index)
	return ev.index, nil
}

type etcdNode struct {
	Key           string     `json:"key"`
	Value         string     `json:"value"`
	Dir           bool       `json:"dir"`
	Nodes         []etcdNode `json:"nodes"`
	ModifiedIndex uint64     `json:"modifiedIndex"`
}

type etcdEvent struct {
	Action    string   `json:"action"`
	Node      etcdNode `json:"node"`
	ErrorCode int      `json:"errorCode"`
	Message   string   `json:"message"`
	index     uint64
}

func (p *Pybal) get(ctx context.Context, q url.Values) (*etcdEvent, error) {
	c := p.HTTP
	if c == nil {
		c = &http.Client{}
	}
	u := strings.TrimSuffix(p.EtcdURL, "/") + "/v2/keys" + p.PoolDir() + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	var ev etcdEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, fmt.Errorf("etcd %s: HTTP %d: %q", p.PoolDir(), resp.StatusCode, body)
	}
	switch {
	case ev.ErrorCode == 401:
		return nil, errIndexCleared
	case ev.ErrorCode == 100 && q.Get("wait") == "":
		// The pool directory does not exist yet: nothing to apply.
		ev.index, _ = strconv.ParseUint(resp.Header.Get("X-Etcd-Index"), 10, 64)
		return &ev, nil
	case ev.ErrorCode != 0:
		return nil, fmt.Errorf("etcd %s: error %d: %s", p.PoolDir(), ev.ErrorCode, ev.Message)
	}
	ev.index, _ = strconv.ParseUint(resp.Header.Get("X-Etcd-Index"), 10, 64)
	return &ev, nil
}

// nodeName is the node (fqdn) a key belongs to, "" for other keys.
func nodeName(dir, key string) string {
	rest, ok := strings.CutPrefix(key, dir+"/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return ""
	}
	return rest
}

func (p *Pybal) apply(ctx context.Context, node, value string) {
	server := node
	if s, ok := p.Servers[node]; ok {
		server = s
	}
	pooled, weight := "no", 0
	var v nodeValue
	if value != "" && json.Unmarshal([]byte(value), &v) == nil && v.Pooled != nil {
		pooled = *v.Pooled
		if v.Weight != nil {
			weight = *v.Weight
		}
	}
	var err error
	if pooled == "yes" {
		err = errors.Join(p.Balancer.SetWeight(ctx, server, min(max(weight, 0), 256)), p.Balancer.SetState(ctx, server, Ready))
	} else {
		err = p.Balancer.SetState(ctx, server, Maint)
	}
	if p.OnApply != nil {
		p.OnApply(node, pooled, weight, err)
	}
}

func (p *Pybal) markApplied(index uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if index > p.applied {
		p.applied = index
		if p.cond != nil {
			close(p.cond)
			p.cond = nil
		}
	}
}

// WaitApplied waits until every etcd change up to index (e.g. the
// modifiedIndex of a node write) has been applied to the balancer.
func (p *Pybal) WaitApplied(ctx context.Context, index uint64) error {
	for {
		p.mu.Lock()
		if p.applied >= index {
			p.mu.Unlock()
			return nil
		}
		if p.cond == nil {
			p.cond = make(chan struct{})
		}
		c := p.cond
		p.mu.Unlock()
		select {
		case <-c:
		case <-ctx.Done():
			return fmt.Errorf("pybal: etcd index %d not applied: %w", index, ctx.Err())
		}
	}
}
