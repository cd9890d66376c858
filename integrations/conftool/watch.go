package conftool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// watchBuffer is the channel capacity of a watch. A consumer slower than
// that blocks the watcher; if etcd's history moves on meanwhile, the watcher
// resyncs, so nothing is silently lost.
const watchBuffer = 64

// Watch implements Watcher with etcd v2 long polls on
// <prefix>/discovery/<service>?wait=true&recursive=true&waitIndex=N.
//
// It starts with one recursive quorum read (reported as SourceInitial) and
// waits from the index that read returned. After each event it waits from the
// event's modifiedIndex+1. A poll that sees nothing for a while is re-issued
// from the X-Etcd-Index etcd sent with the poll's headers (etcd registered the
// watcher at that index having found nothing earlier), so an idle watch never
// falls behind etcd's 1000-event history. When it does fall behind (errorCode
// 401 "The event in requested index is outdated and cleared", e.g. after a
// slow consumer), or the connection is lost, it reads the whole service again
// and reports what differs from what it knew (SourceResync).
func (e *Etcd) Watch(ctx context.Context, service string) (<-chan Change, error) {
	if err := ValidateName("service", service); err != nil {
		return nil, fmt.Errorf("conftool: watch: %w", err)
	}
	ch := make(chan Change, watchBuffer)
	w := &etcdWatch{e: e, service: service, dir: e.serviceDir(service), out: ch}
	go w.run(ctx)
	return ch, nil
}

type etcdWatch struct {
	e       *Etcd
	service string
	dir     string
	out     chan<- Change

	known     map[string]State // nil until the first successful read
	waitIndex uint64
	failing   bool // a SourceError was sent and no long poll has worked since
}

func (w *etcdWatch) run(ctx context.Context) {
	defer close(w.out)
	log := w.e.logger.With("service", w.service)
	backoff := w.e.backoffMin
	needSync := true
	for ctx.Err() == nil {
		if needSync {
			if err := w.sync(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn("watch: reading discovery objects failed; retrying", "err", err, "retry_in", backoff)
				if !w.fail(ctx, err) || !w.sleep(ctx, &backoff) {
					return
				}
				continue
			}
			needSync = false
		}

		if w.e.beforePoll != nil {
			w.e.beforePoll(w.waitIndex)
		}
		resp, headerIndex, idle, err := w.poll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case idle:
			if headerIndex+1 > w.waitIndex {
				w.waitIndex = headerIndex + 1
			}
			w.healthy(&backoff)
		case isEtcdCode(err, etcdErrEventIndexGone):
			log.Info("watch: etcd history no longer holds our index; resyncing", "wait_index", w.waitIndex, "err", err)
			needSync = true
		case err != nil:
			log.Warn("watch: long poll failed; resyncing after backoff", "err", err, "retry_in", backoff)
			if !w.fail(ctx, err) || !w.sleep(ctx, &backoff) {
				return
			}
			needSync = true
		default:
			w.healthy(&backoff)
			if !w.event(ctx, resp) {
				return
			}
		}
	}
}

// sync reads every object and reports differences from what is known.
func (w *etcdWatch) sync(ctx context.Context) error {
	objects, index, err := w.e.listObjects(ctx, w.service)
	if errors.Is(err, ErrNotFound) {
		// The service directory does not exist (yet, or any more): nothing
		// to report but deletions; keep waiting from the current index.
		objects, err = map[string]rawObject{}, nil
	}
	if err != nil {
		return err
	}
	if index == 0 {
		return errors.New("etcd sent no X-Etcd-Index")
	}
	source := SourceResync
	if w.known == nil {
		source = SourceInitial
		w.known = map[string]State{}
	}
	if w.e.afterSync != nil {
		w.e.afterSync(source)
	}
	states, errs := decodeObjects(objects)
	changes := diffStates(w.service, w.known, states, source, index)
	for dc, derr := range errs {
		changes = append(changes, Change{Service: w.service, Datacenter: dc, Source: source,
			Old: knownPtr(w.known, dc), Err: derr, ModifiedIndex: objects[dc].index})
		delete(w.known, dc)
	}
	for dc, st := range states {
		w.known[dc] = st
	}
	for dc := range w.known {
		if _, ok := states[dc]; !ok {
			delete(w.known, dc)
		}
	}
	w.waitIndex = index + 1
	for _, c := range changes {
		if !send(ctx, w.out, c) {
			return ctx.Err()
		}
	}
	return nil
}

// poll is one long poll. idle is true when it ended because the poll timeout
// passed without an event; headerIndex is etcd's X-Etcd-Index at the time
// the watcher was registered.
func (w *etcdWatch) poll(ctx context.Context) (resp *v2Response, headerIndex uint64, idle bool, err error) {
	e := w.e
	n := int64(len(e.endpoints))
	idx := e.preferred.Load() % n
	ep := e.endpoints[idx]
	pollCtx, cancel := context.WithTimeout(ctx, e.watchPollTimeout)
	defer cancel()
	query := url.Values{"wait": {"true"}, "recursive": {"true"}, "waitIndex": {strconv.FormatUint(w.waitIndex, 10)}}
	req, err := e.newRequest(pollCtx, ep, http.MethodGet, w.dir, query, nil)
	if err != nil {
		return nil, 0, false, err
	}
	hresp, err := e.http.Do(req)
	if err != nil {
		if ctx.Err() == nil && pollCtx.Err() == nil {
			// Connection trouble: try the next endpoint next time.
			e.preferred.CompareAndSwap(idx, (idx+1)%n)
		}
		return nil, 0, w.pollTimedOut(ctx, pollCtx), fmt.Errorf("%s: %w", ep.Host, err)
	}
	defer hresp.Body.Close()
	headerIndex = parseEtcdIndex(hresp.Header)
	body, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes+1))
	if err != nil {
		if w.pollTimedOut(ctx, pollCtx) {
			return nil, headerIndex, true, nil
		}
		return nil, headerIndex, false, fmt.Errorf("%s: reading watch answer: %w", ep.Host, err)
	}
	if len(body) > maxResponseBytes {
		return nil, headerIndex, false, fmt.Errorf("%s: watch answer larger than %d bytes", ep.Host, maxResponseBytes)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		// etcd closed the poll without an event (e.g. shutting down).
		return nil, headerIndex, false, fmt.Errorf("%s: watch ended without an event", ep.Host)
	}
	resp, err = decodeV2(hresp.StatusCode, body)
	if err == nil && resp.Node == nil {
		err = fmt.Errorf("%s: watch answer without a node", ep.Host)
	}
	return resp, headerIndex, false, err
}

func (w *etcdWatch) pollTimedOut(ctx, pollCtx context.Context) bool {
	return ctx.Err() == nil && errors.Is(pollCtx.Err(), context.DeadlineExceeded)
}

// event applies one etcd event and reports it.
func (w *etcdWatch) event(ctx context.Context, resp *v2Response) bool {
	node := resp.Node
	w.waitIndex = node.ModifiedIndex + 1
	deleted := false
	switch resp.Action {
	case "delete", "expire", "compareAndDelete":
		deleted = true
	}
	if node.Key == w.dir {
		if !deleted {
			return true
		}
		// The whole service directory went away.
		var changes []Change
		for dc, old := range w.known {
			changes = append(changes, Change{Service: w.service, Datacenter: dc, Source: SourceEvent,
				Old: &old, Deleted: true, ModifiedIndex: node.ModifiedIndex})
		}
		clear(w.known)
		sortChanges(changes)
		for _, c := range changes {
			if !send(ctx, w.out, c) {
				return false
			}
		}
		return true
	}
	dc, ok := strings.CutPrefix(node.Key, w.dir+"/")
	if !ok || node.Dir || ValidateName("datacenter", dc) != nil {
		w.e.logger.Debug("watch: ignoring event for unexpected key", "key", node.Key, "action", resp.Action)
		return true
	}
	c := Change{Service: w.service, Datacenter: dc, Source: SourceEvent, ModifiedIndex: node.ModifiedIndex,
		Old: knownPtr(w.known, dc)}
	if c.Old == nil && resp.PrevNode != nil && !resp.PrevNode.Dir {
		if prev, err := decodeValue([]byte(resp.PrevNode.Value)); err == nil {
			prev.ModifiedIndex = resp.PrevNode.ModifiedIndex
			c.Old = &prev
		}
	}
	if deleted {
		c.Deleted = true
		delete(w.known, dc)
	} else if st, err := decodeValue([]byte(node.Value)); err != nil {
		c.Err = fmt.Errorf("%s: %w", node.Key, err)
		delete(w.known, dc)
	} else {
		st.ModifiedIndex = node.ModifiedIndex
		c.New = &st
		w.known[dc] = st
	}
	return send(ctx, w.out, c)
}

// healthy ends a failure streak: a long poll worked (an event, or a quiet
// timeout), so the next failure is reported again and retried quickly. A
// successful read alone does not count, or a broken long-poll path (say, a
// proxy cutting it) would report an error and retry every backoffMin.
func (w *etcdWatch) healthy(backoff *time.Duration) {
	w.failing = false
	*backoff = w.e.backoffMin
}

// fail reports the first error of a failure streak.
func (w *etcdWatch) fail(ctx context.Context, err error) bool {
	if w.failing {
		return true
	}
	w.failing = true
	return send(ctx, w.out, Change{Service: w.service, Source: SourceError, Err: fmt.Errorf("conftool: watch %s: %w", w.service, err)})
}

// sleep waits for the backoff and doubles it (bounded).
func (w *etcdWatch) sleep(ctx context.Context, backoff *time.Duration) bool {
	ok := sleepCtx(ctx, w.e.clock, *backoff)
	*backoff = min(*backoff*2, w.e.backoffMax)
	return ok
}

func send(ctx context.Context, ch chan<- Change, c Change) bool {
	select {
	case ch <- c:
		return true
	case <-ctx.Done():
		return false
	}
}

func knownPtr(known map[string]State, dc string) *State {
	if st, ok := known[dc]; ok {
		return &st
	}
	return nil
}

// diffStates lists the changes from known to fresh: new datacenters (Old
// nil), changed ones, and deleted ones (reported at index, the read's index).
func diffStates(service string, known, fresh map[string]State, source ChangeSource, index uint64) []Change {
	var changes []Change
	for dc, st := range fresh {
		old, ok := known[dc]
		if ok && old.Equal(st) {
			continue
		}
		c := Change{Service: service, Datacenter: dc, Source: source, New: &st, ModifiedIndex: st.ModifiedIndex}
		if ok {
			c.Old = &old
		}
		changes = append(changes, c)
	}
	for dc, old := range known {
		if _, ok := fresh[dc]; !ok {
			changes = append(changes, Change{Service: service, Datacenter: dc, Source: source, Old: &old, Deleted: true, ModifiedIndex: index})
		}
	}
	sortChanges(changes)
	return changes
}

func sortChanges(changes []Change) {
	sort.Slice(changes, func(i, j int) bool { return changes[i].Datacenter < changes[j].Datacenter })
}
