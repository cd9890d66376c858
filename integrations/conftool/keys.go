package conftool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Raw key access to the same etcd, for the other tools' data that lives next
// to conftool's: spicerack's locks (/spicerack/locks/...) and poolbot's own
// leader lock. Keys are absolute (the conftool prefix is not applied); the
// requests go through the same endpoints, failover, auth and TLS as the
// conftool backend.

// etcd v2 error codes for raw key users (etcd's v2 error package).
const (
	EtcdCodeKeyNotFound   = etcdErrKeyNotFound   // 100
	EtcdCodeCompareFailed = etcdErrCompareFailed // 101
	EtcdCodeNodeExist     = 105
)

// IsEtcdCode reports whether err is an etcd v2 error answer with code.
func IsEtcdCode(err error, code int) bool { return isEtcdCode(err, code) }

// KeyNode is one etcd v2 node as read or written.
type KeyNode struct {
	Key           string
	Value         string
	Dir           bool
	Nodes         []KeyNode
	ModifiedIndex uint64
	CreatedIndex  uint64
	// Expiration is when a key written with a ttl expires (zero: never).
	Expiration time.Time
}

func keyNode(n *v2Node) KeyNode {
	if n == nil {
		return KeyNode{}
	}
	k := KeyNode{Key: n.Key, Value: n.Value, Dir: n.Dir, ModifiedIndex: n.ModifiedIndex, CreatedIndex: n.CreatedIndex}
	if n.Expiration != nil {
		k.Expiration = n.Expiration.UTC()
	}
	for i := range n.Nodes {
		k.Nodes = append(k.Nodes, keyNode(&n.Nodes[i]))
	}
	return k
}

// WriteCond conditions a SetKey; the zero value writes unconditionally, as
// python-etcd's client.set does.
type WriteCond struct {
	// PrevIndex makes the write a compare-and-swap on the key's
	// modifiedIndex (etcd error 101 when it changed).
	PrevIndex uint64
	// MustNotExist creates the key only if it is absent (error 105).
	MustNotExist bool
	// TTL makes the key expire (whole seconds; etcd's minimum is 1 s).
	TTL time.Duration
}

func checkRawKey(key string) error {
	if !strings.HasPrefix(key, "/") || strings.Contains(key, "//") || strings.ContainsAny(key, "?#\x00\r\n") {
		return fmt.Errorf("%q is not an absolute etcd key", key)
	}
	for _, seg := range strings.Split(key[1:], "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q must not contain . or .. segments", key)
		}
	}
	return nil
}

func ttlSeconds(ttl time.Duration) (string, error) {
	if ttl < 0 || (ttl > 0 && ttl < time.Second) || ttl%time.Second != 0 {
		return "", fmt.Errorf("ttl %s must be whole seconds, at least 1s", ttl)
	}
	return strconv.FormatInt(int64(ttl/time.Second), 10), nil
}

// GetKey reads key with a quorum read. recursive lists a directory's
// children, sorted by key. A missing key is an *EtcdError with code 100.
func (e *Etcd) GetKey(ctx context.Context, key string, recursive bool) (KeyNode, error) {
	if err := checkRawKey(key); err != nil {
		return KeyNode{}, fmt.Errorf("etcd get: %w", err)
	}
	q := url.Values{"quorum": {"true"}}
	if recursive {
		q.Set("recursive", "true")
		q.Set("sorted", "true")
	}
	resp, _, err := e.do(ctx, http.MethodGet, key, q, nil)
	if err != nil {
		return KeyNode{}, fmt.Errorf("etcd get %s: %w", key, err)
	}
	if resp.Node == nil {
		return KeyNode{}, fmt.Errorf("etcd get %s: answer without a node", key)
	}
	return keyNode(resp.Node), nil
}

// SetKey writes value at key under cond and returns the written node.
func (e *Etcd) SetKey(ctx context.Context, key, value string, cond WriteCond) (KeyNode, error) {
	if err := checkRawKey(key); err != nil {
		return KeyNode{}, fmt.Errorf("etcd set: %w", err)
	}
	q := url.Values{}
	if cond.PrevIndex != 0 && cond.MustNotExist {
		return KeyNode{}, errors.New("etcd set: PrevIndex and MustNotExist exclude each other")
	}
	if cond.PrevIndex != 0 {
		q.Set("prevIndex", strconv.FormatUint(cond.PrevIndex, 10))
	}
	if cond.MustNotExist {
		q.Set("prevExist", "false")
	}
	form := url.Values{"value": {value}}
	if cond.TTL != 0 {
		s, err := ttlSeconds(cond.TTL)
		if err != nil {
			return KeyNode{}, fmt.Errorf("etcd set %s: %w", key, err)
		}
		form.Set("ttl", s)
	}
	resp, _, err := e.do(ctx, http.MethodPut, key, q, form)
	if err != nil {
		return KeyNode{}, fmt.Errorf("etcd set %s: %w", key, err)
	}
	return keyNode(resp.Node), nil
}

// CreateInOrderKey appends value under dir as a new in-order key
// (POST /v2/keys/<dir>: etcd names it with its index, zero-padded to 20
// digits, so keys sort in creation order), like python-etcd's
// write(dir, value, append=True).
func (e *Etcd) CreateInOrderKey(ctx context.Context, dir, value string, ttl time.Duration) (KeyNode, error) {
	if err := checkRawKey(dir); err != nil {
		return KeyNode{}, fmt.Errorf("etcd append: %w", err)
	}
	form := url.Values{"value": {value}}
	if ttl != 0 {
		s, err := ttlSeconds(ttl)
		if err != nil {
			return KeyNode{}, fmt.Errorf("etcd append %s: %w", dir, err)
		}
		form.Set("ttl", s)
	}
	resp, _, err := e.do(ctx, http.MethodPost, dir, nil, form)
	if err != nil {
		return KeyNode{}, fmt.Errorf("etcd append %s: %w", dir, err)
	}
	return keyNode(resp.Node), nil
}

// DeleteKey removes key; with prevIndex != 0 only if it was not changed
// since (error 101 otherwise). A missing key is an *EtcdError with code 100.
func (e *Etcd) DeleteKey(ctx context.Context, key string, prevIndex uint64) error {
	if err := checkRawKey(key); err != nil {
		return fmt.Errorf("etcd delete: %w", err)
	}
	q := url.Values{}
	if prevIndex != 0 {
		q.Set("prevIndex", strconv.FormatUint(prevIndex, 10))
	}
	if _, _, err := e.do(ctx, http.MethodDelete, key, q, nil); err != nil {
		return fmt.Errorf("etcd delete %s: %w", key, err)
	}
	return nil
}
