package leader

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/integrations/conftool"
	"poolbot/integrations/spicerack"
)

// KV is the etcd v2 key access the lock needs; *conftool.Etcd has it.
type KV interface {
	GetKey(ctx context.Context, key string, recursive bool) (conftool.KeyNode, error)
	SetKey(ctx context.Context, key, value string, cond conftool.WriteCond) (conftool.KeyNode, error)
	DeleteKey(ctx context.Context, key string, prevIndex uint64) error
}

// Holder is who holds the lock, as read from etcd.
type Holder struct {
	Owner    string    `json:"owner"`
	Instance string    `json:"instance"`
	Since    time.Time `json:"since"`
	// Expires is etcd's expiration of the key (when a standby may take
	// over unless the holder renews); not stored in the value.
	Expires time.Time `json:"-"`
	// Raw is the value when it is not poolbot's JSON.
	Raw string `json:"-"`
}

func (h Holder) String() string {
	if h.Owner == "" {
		return fmt.Sprintf("unknown holder (value %q), expires %s", h.Raw, h.Expires.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s (active since %s, lock expires %s unless renewed)",
		h.Owner, h.Since.UTC().Format(time.RFC3339), h.Expires.UTC().Format(time.RFC3339))
}

// Options are the lock's collaborators.
type Options struct {
	// Owner names this instance; default spicerack's "user@host [pid]".
	Owner  string
	Clock  clockwork.Clock
	Logger *slog.Logger
}

// Lock is one instance's side of the leader lock.
type Lock struct {
	kv    KV
	cfg   Config
	clock clockwork.Clock
	log   *slog.Logger
	me    Holder
	value string

	mu       sync.Mutex
	holder   Holder // last known holder (me while leading)
	known    bool
	leading  bool
	index    uint64
	lost     chan struct{}
	stopRenw chan struct{}
	renewing sync.WaitGroup
}

// New builds the lock; it does not touch etcd.
func New(kv KV, cfg Config, o Options) (*Lock, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Lock{kv: kv, cfg: cfg.withDefaults(), clock: o.Clock, log: o.Logger, lost: make(chan struct{})}
	if l.clock == nil {
		l.clock = clockwork.NewRealClock()
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("component", "leader", "key", l.cfg.Key)
	owner := o.Owner
	if owner == "" {
		owner = spicerack.DefaultOwner()
	}
	l.me = Holder{Owner: owner, Instance: newInstanceID()}
	return l, nil
}

// Acquire blocks until this instance holds the lock (nil) or ctx ends. While
// it waits, Holder reports the instance that holds it. Once held, the lock
// is renewed in the background until Release; Lost is closed if it is lost.
// Acquire may be called once.
func (l *Lock) Acquire(ctx context.Context) error {
	logged := ""
	for {
		held, err := l.try(ctx)
		if err != nil {
			l.log.Warn("leader lock: etcd unavailable, retrying", "err", err)
		}
		if held {
			stop := make(chan struct{})
			l.mu.Lock()
			l.stopRenw = stop
			l.mu.Unlock()
			l.renewing.Add(1)
			go l.renew(stop)
			return nil
		}
		if h, ok := l.Holder(); ok && h.Instance != logged {
			logged = h.Instance
			l.log.Info("standby: another poolbot is active", "holder", h.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for leader lock %s: %w", l.cfg.Key, ctx.Err())
		case <-l.clock.After(l.cfg.Poll):
		}
	}
}

// try creates the key if absent; otherwise it records who holds it.
func (l *Lock) try(ctx context.Context) (bool, error) {
	now := l.clock.Now().UTC()
	me := l.me
	me.Since = now
	value, err := json.Marshal(me)
	if err != nil {
		return false, err
	}
	node, err := l.kv.SetKey(ctx, l.cfg.Key, string(value), conftool.WriteCond{MustNotExist: true, TTL: l.cfg.TTL})
	if err == nil {
		me.Expires = node.Expiration
		l.mu.Lock()
		l.value, l.index, l.holder, l.known, l.leading = string(value), node.ModifiedIndex, me, true, true
		l.mu.Unlock()
		l.log.Info("leader lock acquired: this poolbot is active", "owner", me.Owner, "instance", me.Instance, "ttl", l.cfg.TTL)
		return true, nil
	}
	if !conftool.IsEtcdCode(err, conftool.EtcdCodeNodeExist) {
		return false, err
	}
	node, err = l.kv.GetKey(ctx, l.cfg.Key, false)
	if conftool.IsEtcdCode(err, conftool.EtcdCodeKeyNotFound) {
		return false, nil // expired in between: the next poll takes it
	}
	if err != nil {
		return false, err
	}
	h := parseHolder(node)
	l.mu.Lock()
	l.holder, l.known = h, true
	l.mu.Unlock()
	return false, nil
}

func parseHolder(node conftool.KeyNode) Holder {
	var h Holder
	if err := json.Unmarshal([]byte(node.Value), &h); err != nil || h.Owner == "" || h.Instance == "" {
		h = Holder{Raw: node.Value}
	}
	h.Expires = node.Expiration
	return h
}

// renew rewrites the key with a fresh ttl every RenewEvery, compare-and-swap
// on the index it wrote last.
func (l *Lock) renew(stop <-chan struct{}) {
	defer l.renewing.Done()
	lastOK := l.clock.Now()
	for {
		select {
		case <-stop:
			return
		case <-l.clock.After(l.cfg.RenewEvery):
		}
		l.mu.Lock()
		value, index := l.value, l.index
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RenewEvery)
		node, err := l.kv.SetKey(ctx, l.cfg.Key, value, conftool.WriteCond{PrevIndex: index, TTL: l.cfg.TTL})
		cancel()
		switch {
		case err == nil:
			lastOK = l.clock.Now()
			l.mu.Lock()
			l.index = node.ModifiedIndex
			l.holder.Expires = node.Expiration
			l.mu.Unlock()
		case conftool.IsEtcdCode(err, conftool.EtcdCodeCompareFailed) || conftool.IsEtcdCode(err, conftool.EtcdCodeKeyNotFound):
			l.markLost("renewal refused: the key expired or another instance holds it", err)
			return
		default:
			if l.clock.Since(lastOK) >= l.cfg.TTL {
				l.markLost(fmt.Sprintf("no renewal for %s (the whole ttl): another instance may have taken over", poolbot.FormatDuration(l.clock.Since(lastOK))), err)
				return
			}
			l.log.Warn("leader lock renewal failed, retrying", "err", err, "since_last_renewal", l.clock.Since(lastOK))
		}
	}
}

func (l *Lock) markLost(why string, err error) {
	l.mu.Lock()
	wasLeading := l.leading
	l.leading = false
	l.known = false
	l.mu.Unlock()
	if wasLeading {
		l.log.Error("leader lock lost: this poolbot must stop acting", "why", why, "err", err)
		close(l.lost)
	}
}

// Lost is closed when a held lock is lost; the instance must stop acting
// (leave chat, stop sending SAL) at once.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// IsLeader reports whether this instance holds the lock now.
func (l *Lock) IsLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leading
}

// Holder returns who holds the lock as last seen (this instance while it
// leads); ok is false before the first look.
func (l *Lock) Holder() (Holder, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder, l.known
}

// Me is this instance's identity.
func (l *Lock) Me() Holder { return l.me }

// Release stops renewing and deletes the key if this instance still holds
// it, so that a standby takes over at its next poll instead of after the
// ttl.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	stop := l.stopRenw
	l.stopRenw = nil
	l.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	l.renewing.Wait()
	l.mu.Lock()
	leading, index := l.leading, l.index
	l.leading = false
	l.mu.Unlock()
	if !leading {
		return nil
	}
	err := l.kv.DeleteKey(ctx, l.cfg.Key, index)
	if err != nil && !conftool.IsEtcdCode(err, conftool.EtcdCodeKeyNotFound) && !conftool.IsEtcdCode(err, conftool.EtcdCodeCompareFailed) {
		return fmt.Errorf("release leader lock %s: %w", l.cfg.Key, err)
	}
	l.log.Info("leader lock released", "owner", l.me.Owner)
	return nil
}

func newInstanceID() string { return spicerack.NewUUID4() }
