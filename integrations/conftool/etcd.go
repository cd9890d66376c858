package conftool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// etcd v2 error codes poolbot acts on (etcd's v2 error package).
const (
	etcdErrKeyNotFound    = 100
	etcdErrCompareFailed  = 101
	etcdErrNotFile        = 102
	etcdErrRaftInternal   = 300
	etcdErrLeaderElect    = 301
	etcdErrEventIndexGone = 401
)

const (
	// maxCASAttempts bounds the read-merge-CAS loop of SetPooled.
	maxCASAttempts = 5
	// maxResponseBytes bounds what is read from one etcd response.
	maxResponseBytes = 4 << 20
	// Watch pacing defaults.
	defaultWatchPollTimeout = 60 * time.Second
	defaultBackoffMin       = 500 * time.Millisecond
	defaultBackoffMax       = 30 * time.Second
)

// EtcdError is an error answer of etcd's v2 API, e.g.
// {"errorCode":100,"message":"Key not found","cause":"/conftool/v1/discovery/apus/x","index":42}.
type EtcdError struct {
	Code    int    `json:"errorCode"`
	Message string `json:"message"`
	Cause   string `json:"cause"`
	Index   uint64 `json:"index"`
	// Status is the HTTP status it came with.
	Status int `json:"-"`
}

func (e *EtcdError) Error() string {
	return fmt.Sprintf("etcd error %d: %s (%s) [HTTP %d, index %d]", e.Code, e.Message, e.Cause, e.Status, e.Index)
}

// Is makes errors.Is(err, ErrNotFound) true for "Key not found".
func (e *EtcdError) Is(target error) bool {
	return target == ErrNotFound && e.Code == etcdErrKeyNotFound
}

func isEtcdCode(err error, code int) bool {
	var ee *EtcdError
	return errors.As(err, &ee) && ee.Code == code
}

// v2Node and v2Response are etcd v2's JSON shapes.
type v2Node struct {
	Key           string   `json:"key"`
	Value         string   `json:"value"`
	Dir           bool     `json:"dir"`
	Nodes         []v2Node `json:"nodes"`
	ModifiedIndex uint64   `json:"modifiedIndex"`
	CreatedIndex  uint64   `json:"createdIndex"`
	// Expiration and TTL are set on keys written with a ttl.
	Expiration *time.Time `json:"expiration,omitempty"`
	TTL        int64      `json:"ttl,omitempty"`
}

type v2Response struct {
	Action   string  `json:"action"`
	Node     *v2Node `json:"node"`
	PrevNode *v2Node `json:"prevNode"`
}

// Etcd is the backend that talks to etcd's v2 keys API directly, writing the
// way conftool does. It is safe for concurrent use.
type Etcd struct {
	endpoints []*url.URL
	prefix    string
	username  string
	password  string // never logged
	timeout   time.Duration
	http      *http.Client
	logger    *slog.Logger
	clock     clockwork.Clock

	// preferred is the index of the endpoint that answered last; requests
	// start there and fail over to the next ones.
	preferred atomic.Int64

	watchPollTimeout time.Duration
	backoffMin       time.Duration
	backoffMax       time.Duration

	// Test hooks (set only by this package's tests).
	beforeWrite func(attempt int)
	afterWrite  func()
	beforePoll  func(waitIndex uint64)
	afterSync   func(source ChangeSource) // each full read of a watch
}

// NewEtcd builds the etcd backend. It reads the password and TLS files now,
// so a bad path fails at startup rather than at the first depool.
func NewEtcd(cfg EtcdConfig, opts Options) (*Etcd, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Etcd{
		prefix:           cfg.Prefix,
		username:         cfg.Username,
		timeout:          cfg.Timeout,
		logger:           opts.logger().With("component", "conftool", "backend", "etcd"),
		clock:            opts.clock(),
		watchPollTimeout: defaultWatchPollTimeout,
		backoffMin:       defaultBackoffMin,
		backoffMax:       defaultBackoffMax,
	}
	if e.prefix == "" {
		e.prefix = DefaultPrefix
	}
	if e.timeout == 0 {
		e.timeout = DefaultEtcdTimeout
	}
	for _, ep := range cfg.Endpoints {
		u, _ := url.Parse(ep) // validated
		u.Path = ""
		e.endpoints = append(e.endpoints, u)
	}
	if cfg.Password.IsSet() {
		pw, err := cfg.Password.Read()
		if err != nil {
			return nil, fmt.Errorf("conftool.etcd.password (%s): %w", cfg.Password, err)
		}
		e.password = pw
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("conftool.etcd.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("conftool.etcd.ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("conftool.etcd.cert_file/key_file: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// etcd is inside the network: never go through an http_proxy from the
	// environment (WMF hosts set one for outbound traffic).
	transport.Proxy = nil
	transport.TLSClientConfig = tlsConfig
	// No client-wide timeout: each request carries its own context deadline,
	// and watch long polls are longer than ordinary requests.
	e.http = &http.Client{Transport: transport}
	return e, nil
}

// Close releases idle connections.
func (e *Etcd) Close() { e.http.CloseIdleConnections() }

func (e *Etcd) serviceDir(service string) string {
	return e.prefix + "/discovery/" + service
}

func (e *Etcd) objectKey(service, datacenter string) string {
	return e.serviceDir(service) + "/" + datacenter
}

// Get implements Client.
func (e *Etcd) Get(ctx context.Context, service, datacenter string) (State, error) {
	if err := validateNames(service, datacenter); err != nil {
		return State{}, fmt.Errorf("conftool: get: %w", err)
	}
	key := e.objectKey(service, datacenter)
	resp, _, err := e.do(ctx, http.MethodGet, key, url.Values{"quorum": {"true"}}, nil)
	if err != nil {
		return State{}, fmt.Errorf("conftool: get %s/%s: %w", service, datacenter, err)
	}
	if resp.Node == nil || resp.Node.Dir {
		return State{}, fmt.Errorf("conftool: get %s/%s: %s is a directory, not a discovery object", service, datacenter, key)
	}
	st, err := decodeValue([]byte(resp.Node.Value))
	if err != nil {
		return State{}, fmt.Errorf("conftool: get %s/%s: %s: %w", service, datacenter, key, err)
	}
	st.ModifiedIndex = resp.Node.ModifiedIndex
	return st, nil
}

// rawObject is one discovery key as stored.
type rawObject struct {
	value []byte
	index uint64
}

// listObjects reads every object of service with one recursive quorum read.
// It returns the raw values, keyed by datacenter, and etcd's index at the
// time of the read.
func (e *Etcd) listObjects(ctx context.Context, service string) (map[string]rawObject, uint64, error) {
	dir := e.serviceDir(service)
	resp, index, err := e.do(ctx, http.MethodGet, dir, url.Values{"recursive": {"true"}, "quorum": {"true"}}, nil)
	if err != nil {
		return nil, index, err
	}
	if resp.Node == nil || !resp.Node.Dir {
		return nil, index, fmt.Errorf("%s is not a directory", dir)
	}
	objects := make(map[string]rawObject, len(resp.Node.Nodes))
	for _, n := range resp.Node.Nodes {
		dc := strings.TrimPrefix(n.Key, dir+"/")
		if n.Dir || ValidateName("datacenter", dc) != nil {
			e.logger.Warn("ignoring unexpected key under discovery service", "key", n.Key, "dir", n.Dir)
			continue
		}
		objects[dc] = rawObject{value: []byte(n.Value), index: n.ModifiedIndex}
	}
	return objects, index, nil
}

// decodeObjects decodes raw objects; errs holds the ones that do not decode.
func decodeObjects(objects map[string]rawObject) (states map[string]State, errs map[string]error) {
	states = make(map[string]State, len(objects))
	for dc, o := range objects {
		st, err := decodeValue(o.value)
		if err != nil {
			if errs == nil {
				errs = make(map[string]error)
			}
			errs[dc] = err
			continue
		}
		st.ModifiedIndex = o.index
		states[dc] = st
	}
	return states, errs
}

// List implements Client.
func (e *Etcd) List(ctx context.Context, service string) (map[string]State, error) {
	if err := ValidateName("service", service); err != nil {
		return nil, fmt.Errorf("conftool: list: %w", err)
	}
	objects, _, err := e.listObjects(ctx, service)
	if err != nil {
		return nil, fmt.Errorf("conftool: list %s: %w", service, err)
	}
	if len(objects) == 0 {
		return nil, fmt.Errorf("conftool: list %s: %w: no datacenters under %s", service, ErrNotFound, e.serviceDir(service))
	}
	states, errs := decodeObjects(objects)
	if len(errs) > 0 {
		return nil, fmt.Errorf("conftool: list %s: %w", service, joinObjectErrors(service, errs))
	}
	return states, nil
}

func joinObjectErrors(service string, errs map[string]error) error {
	dcs := make([]string, 0, len(errs))
	for dc := range errs {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	var all []error
	for _, dc := range dcs {
		all = append(all, fmt.Errorf("%s/%s: %w", service, dc, errs[dc]))
	}
	return errors.Join(all...)
}

// SetPooled implements Client: read all datacenters with quorum, check the
// last-pooled guard, merge pooled into the stored JSON, compare-and-swap on
// the key's modifiedIndex (retrying from a fresh read when someone else
// wrote in between), then read back.
func (e *Etcd) SetPooled(ctx context.Context, service, datacenter string, pooled bool) (State, error) {
	if err := validateNames(service, datacenter); err != nil {
		return State{}, fmt.Errorf("conftool: set %s/%s pooled=%t: %w", service, datacenter, pooled, err)
	}
	wrap := func(err error) error {
		return fmt.Errorf("conftool: set %s/%s pooled=%t: %w", service, datacenter, pooled, err)
	}
	key := e.objectKey(service, datacenter)
	var written uint64
	lostRace := false // the last compare-and-swap failed (etcd error 101)
	for attempt := 1; ; attempt++ {
		objects, _, err := e.listObjects(ctx, service)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return State{}, wrap(fmt.Errorf("%w: no objects under %s", ErrNotFound, e.serviceDir(service)))
			}
			return State{}, wrap(err)
		}
		target, ok := objects[datacenter]
		if !ok {
			return State{}, wrap(fmt.Errorf("%w: %s does not exist (poolbot never creates discovery objects)", ErrNotFound, key))
		}
		states, errs := decodeObjects(objects)
		if err := errs[datacenter]; err != nil {
			return State{}, wrap(fmt.Errorf("%s: %w", key, err))
		}
		if lostRace && states[datacenter].Pooled == pooled {
			// The object already says what we want after a lost race: most
			// likely our own write landed and only its answer was lost (do
			// retried it on another endpoint, which answered 101), or someone
			// set the same. Writing it again would be a second change and a
			// second watch event for one operation; the stored index is the
			// write to go by, and the read-back below checks it as usual.
			written = target.index
			e.logger.Info("discovery object already holds the value after a lost compare-and-swap; not writing it again",
				"key", key, "pooled", pooled, "index", written)
			break
		}
		if !pooled {
			// The guard must see every datacenter: an unreadable one might be
			// the only other pooled one, or not.
			if len(errs) > 0 {
				return states[datacenter], wrap(fmt.Errorf("cannot check that another datacenter stays pooled: %w", joinObjectErrors(service, errs)))
			}
			if err := CheckDepool(service, datacenter, states); err != nil {
				return states[datacenter], wrap(err)
			}
		}
		value, err := mergePooled(target.value, pooled)
		if err != nil {
			return State{}, wrap(err)
		}
		if e.beforeWrite != nil {
			e.beforeWrite(attempt)
		}
		resp, _, err := e.do(ctx, http.MethodPut, key,
			url.Values{"prevIndex": {strconv.FormatUint(target.index, 10)}},
			url.Values{"value": {string(value)}})
		if isEtcdCode(err, etcdErrCompareFailed) {
			if attempt >= maxCASAttempts {
				return State{}, wrap(fmt.Errorf("%w: %s changed under us %d times in a row: %v", ErrConflict, key, attempt, err))
			}
			e.logger.Info("compare-and-swap lost a race, re-reading", "key", key, "attempt", attempt, "err", err)
			lostRace = true
			continue
		}
		if err != nil {
			return State{}, wrap(err)
		}
		if resp.Node != nil {
			written = resp.Node.ModifiedIndex
		}
		e.logger.Debug("wrote discovery object", "key", key, "pooled", pooled, "prev_index", target.index, "index", written)
		break
	}

	if e.afterWrite != nil {
		e.afterWrite()
	}
	// Read back every datacenter: the object must show the new value, and a
	// depool must not have raced with another depool into "pooled nowhere".
	objects, _, err := e.listObjects(ctx, service)
	if err != nil {
		return State{}, wrap(fmt.Errorf("read-back: %w", err))
	}
	after, errs := decodeObjects(objects)
	if err := errs[datacenter]; err != nil {
		return State{}, wrap(fmt.Errorf("%w: read-back of %s: %v", ErrVerify, key, err))
	}
	st, err := checkAfterWrite(service, datacenter, pooled, after)
	if err != nil {
		return st, wrap(err)
	}
	if st.ModifiedIndex != written {
		e.logger.Warn("discovery object written again by someone else right after poolbot's write",
			"key", key, "poolbot_index", written, "index", st.ModifiedIndex)
	}
	if !pooled && len(errs) == 0 && len(PooledDatacenters(after)) == 0 {
		return st, wrap(e.revertDepool(ctx, service, datacenter, objects[datacenter], written))
	}
	return st, nil
}

// revertDepool undoes poolbot's own depool after the read-back found the
// service pooled nowhere (another datacenter was depooled concurrently). The
// compare-and-swap on the index poolbot wrote means a later change by
// someone else is never overwritten.
func (e *Etcd) revertDepool(ctx context.Context, service, datacenter string, obj rawObject, written uint64) error {
	key := e.objectKey(service, datacenter)
	race := &LastPooledError{Service: service, Datacenter: datacenter, Depool: written}
	if obj.index != written {
		return fmt.Errorf("%w: after the write no datacenter is pooled (concurrent depool elsewhere); %s was changed again since (index %d), not reverting: CHECK NOW", race, key, obj.index)
	}
	value, err := mergePooled(obj.value, true)
	if err == nil {
		var resp *v2Response
		resp, _, err = e.do(ctx, http.MethodPut, key,
			url.Values{"prevIndex": {strconv.FormatUint(written, 10)}},
			url.Values{"value": {string(value)}})
		if err == nil && resp.Node != nil {
			race.Repool = resp.Node.ModifiedIndex
		}
	}
	if err != nil {
		return fmt.Errorf("%w: after the write no datacenter is pooled (concurrent depool elsewhere) and re-pooling %s failed: %v: CHECK NOW", race, key, err)
	}
	e.logger.Warn("reverted depool: a concurrent depool left no datacenter pooled", "key", key)
	return fmt.Errorf("%w: after the write no datacenter was pooled (concurrent depool elsewhere); %s re-pooled", race, key)
}

// do sends one v2 request for key, failing over between endpoints on
// network errors and server-side (5xx) errors. It returns the decoded
// answer and etcd's X-Etcd-Index. etcd error answers become *EtcdError.
func (e *Etcd) do(ctx context.Context, method, key string, query, form url.Values) (*v2Response, uint64, error) {
	n := int64(len(e.endpoints))
	start := e.preferred.Load()
	var errs []error
	for i := int64(0); i < n; i++ {
		idx := (start + i) % n
		resp, index, retryable, err := e.doOne(ctx, e.endpoints[idx], method, key, query, form, e.timeout)
		if err == nil || !retryable {
			if err == nil || isEtcdErrorAnswer(err) {
				e.preferred.Store(idx)
			}
			return resp, index, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", e.endpoints[idx].Host, err))
		if ctx.Err() != nil {
			break
		}
		e.logger.Warn("etcd endpoint failed, trying the next one", "endpoint", e.endpoints[idx].Host, "err", err)
	}
	return nil, 0, fmt.Errorf("all etcd endpoints failed: %w", errors.Join(errs...))
}

func isEtcdErrorAnswer(err error) bool {
	var ee *EtcdError
	return errors.As(err, &ee)
}

// doOne sends one request to one endpoint. retryable says whether another
// endpoint might do better (network trouble, 5xx).
func (e *Etcd) doOne(ctx context.Context, ep *url.URL, method, key string, query, form url.Values, timeout time.Duration) (resp *v2Response, index uint64, retryable bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := e.newRequest(ctx, ep, method, key, query, form)
	if err != nil {
		return nil, 0, false, err
	}
	hresp, err := e.http.Do(req)
	if err != nil {
		return nil, 0, true, err
	}
	defer hresp.Body.Close()
	index = parseEtcdIndex(hresp.Header)
	body, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, index, true, fmt.Errorf("reading answer: %w", err)
	}
	if len(body) > maxResponseBytes {
		return nil, index, false, fmt.Errorf("answer larger than %d bytes", maxResponseBytes)
	}
	resp, err = decodeV2(hresp.StatusCode, body)
	if err != nil {
		var ee *EtcdError
		if errors.As(err, &ee) {
			if ee.Index > index {
				index = ee.Index
			}
			retryable = ee.Code == etcdErrRaftInternal || ee.Code == etcdErrLeaderElect
			return nil, index, retryable, err
		}
		return nil, index, hresp.StatusCode >= 500, err
	}
	return resp, index, false, nil
}

func (e *Etcd) newRequest(ctx context.Context, ep *url.URL, method, key string, query, form url.Values) (*http.Request, error) {
	u := *ep
	u.Path = "/v2/keys" + key
	u.RawQuery = query.Encode()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if e.username != "" {
		req.SetBasicAuth(e.username, e.password)
	}
	return req, nil
}

func parseEtcdIndex(h http.Header) uint64 {
	n, _ := strconv.ParseUint(h.Get("X-Etcd-Index"), 10, 64)
	return n
}

// decodeV2 turns an etcd v2 answer into a response or an error.
func decodeV2(status int, body []byte) (*v2Response, error) {
	if status >= 200 && status < 300 {
		var resp v2Response
		if err := json.Unmarshal(body, &resp); err != nil {
			return nil, fmt.Errorf("decoding etcd answer (HTTP %d): %w: %s", status, err, truncate(string(body), 200))
		}
		return &resp, nil
	}
	var ee EtcdError
	if json.Unmarshal(body, &ee) == nil && ee.Code != 0 {
		ee.Status = status
		return nil, &ee
	}
	// Not an etcd error body: auth failures ({"message":"Insufficient
	// credentials"}), proxies, wrong ports.
	return nil, fmt.Errorf("etcd answered HTTP %d: %s", status, truncate(strings.TrimSpace(string(body)), 200))
}
