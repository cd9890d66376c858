package dns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Renderer does confd's job on an authoritative server: it watches the
// service's discovery objects in etcd (v2 API) and, on every change,
// rewrites gdnsd's state files with puppet's discovery-statefile.tpl.erb
// template:
//
//	<dc service ip> => {{ if $data.pooled }}UP{{ else }}DOWN{{ end }}/{{ $data.ttl }}
//
// one line per datacenter, datacenters sorted by name. confd itself is
// not used: no Go module the proxy serves here builds it (it is not in
// go-partial.tsv), so this watcher renders the same template. Like confd
// it renders nothing while a key is missing or unreadable (the old file
// stays), and replaces the file by rename, which gdnsd's inotify watch on
// a direct-mode extfile picks up.
type Renderer struct {
	etcdURL string
	prefix  string
	service string
	ips     map[string]netip.Addr // dc -> service address
	files   []string
	http    *http.Client

	mu       sync.Mutex
	renders  int
	last     string
	lastAt   time.Time
	lastErr  error
	rendered chan struct{} // closed and replaced on each render
}

// RenderStateFile renders the template for the given objects (dc -> the
// discovery object's JSON).
func RenderStateFile(ips map[string]netip.Addr, objects map[string]string) (string, error) {
	dcs := make([]string, 0, len(ips))
	for dc := range ips {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	var b strings.Builder
	for _, dc := range dcs {
		raw, ok := objects[dc]
		if !ok {
			return "", fmt.Errorf("discovery object for %s is missing", dc)
		}
		var data struct {
			Pooled bool            `json:"pooled"`
			TTL    json.RawMessage `json:"ttl"`
		}
		if err := json.Unmarshal([]byte(raw), &data); err != nil {
			return "", fmt.Errorf("discovery object for %s: %w", dc, err)
		}
		ttl, err := strconv.ParseUint(string(data.TTL), 10, 32)
		if err != nil {
			// confd would print "<no value>", which gdnsd rejects.
			return "", fmt.Errorf("discovery object for %s: ttl %s is not a number", dc, data.TTL)
		}
		state := "DOWN"
		if data.Pooled {
			state = "UP"
		}
		fmt.Fprintf(&b, "%s => %s/%d\n", ips[dc], state, ttl)
	}
	return b.String(), nil
}

func newRenderer(client *http.Client, etcdURL, prefix, service string, ips map[string]netip.Addr, files []string) *Renderer {
	return &Renderer{
		etcdURL: strings.TrimRight(etcdURL, "/"), prefix: prefix, service: service,
		ips: ips, files: files, http: client, rendered: make(chan struct{}),
	}
}

// etcdNode is the part of an etcd v2 answer the renderer reads.
type etcdNode struct {
	Key           string     `json:"key"`
	Value         string     `json:"value"`
	Dir           bool       `json:"dir"`
	Nodes         []etcdNode `json:"nodes"`
	ModifiedIndex uint64     `json:"modifiedIndex"`
}

type etcdAnswer struct {
	Action    string   `json:"action"`
	Node      etcdNode `json:"node"`
	ErrorCode int      `json:"errorCode"`
	Message   string   `json:"message"`
}

func (r *Renderer) dirURL() string {
	return r.etcdURL + "/v2/keys" + r.prefix + "/discovery/" + r.service
}

// sync reads every object, renders and writes; it returns the etcd index
// to watch from.
func (r *Renderer) sync(ctx context.Context) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.dirURL()+"?recursive=true&quorum=true", nil)
	if err != nil {
		return 0, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ans etcdAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return 0, fmt.Errorf("etcd: %s: %w", resp.Status, err)
	}
	index, _ := strconv.ParseUint(resp.Header.Get("X-Etcd-Index"), 10, 64)
	if ans.ErrorCode != 0 {
		return index, fmt.Errorf("etcd: %s", ans.Message)
	}
	objects := map[string]string{}
	for _, n := range ans.Node.Nodes {
		if !n.Dir {
			objects[filepath.Base(n.Key)] = n.Value
		}
	}
	content, err := RenderStateFile(r.ips, objects)
	if err != nil {
		return index, err
	}
	return index, r.write(content)
}

func (r *Renderer) write(content string) error {
	for _, f := range r.files {
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, f); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.renders++
	r.last, r.lastAt, r.lastErr = content, time.Now(), nil
	close(r.rendered)
	r.rendered = make(chan struct{})
	r.mu.Unlock()
	return nil
}

// run syncs, then waits for changes under the service's directory and
// syncs again after each, until ctx ends. etcd being away or an event
// index already compacted make it sync again after a short pause.
func (r *Renderer) run(ctx context.Context) {
	var index uint64
	synced := false
	for ctx.Err() == nil {
		if !synced {
			i, err := r.sync(ctx)
			if err != nil {
				r.mu.Lock()
				r.lastErr = err
				r.mu.Unlock()
				if !sleepCtx(ctx, 200*time.Millisecond) {
					return
				}
				// A missing key: watch for its creation from this index.
				if i == 0 {
					continue
				}
			}
			index, synced = i, true
		}
		next, err := r.watch(ctx, index+1)
		if err != nil {
			synced = false
			if !sleepCtx(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		index = next
		synced = false // re-read every object, like confd does
	}
}

// watch waits for the next change at or after waitIndex and returns its
// index.
func (r *Renderer) watch(ctx context.Context, waitIndex uint64) (uint64, error) {
	u := fmt.Sprintf("%s?wait=true&recursive=true&waitIndex=%d", r.dirURL(), waitIndex)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	// The shared client has a timeout; a watch waits as long as it must.
	client := *r.http
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var ans etcdAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return 0, fmt.Errorf("etcd watch: %s: %w", resp.Status, err)
	}
	if ans.ErrorCode != 0 {
		return 0, fmt.Errorf("etcd watch: %s", ans.Message)
	}
	if ans.Node.ModifiedIndex == 0 {
		return 0, errors.New("etcd watch: event without index")
	}
	return ans.Node.ModifiedIndex, nil
}

// Renders counts the state files written so far.
func (r *Renderer) Renders() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renders
}

// Last is the content last written and when.
func (r *Renderer) Last() (string, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.lastAt
}

// WaitContent waits until the state file holds want (e.g. after an etcd
// write) and returns when it was written.
func (r *Renderer) WaitContent(ctx context.Context, want string) (time.Time, error) {
	for {
		r.mu.Lock()
		last, at, ch, lastErr := r.last, r.lastAt, r.rendered, r.lastErr
		r.mu.Unlock()
		if last == want {
			return at, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("state file is %q, want %q (last error: %v): %w", last, want, lastErr, ctx.Err())
		case <-ch:
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
