package spicerack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/conftool"
)

// KeysBasePath is spicerack's KEYS_BASE_PATH.
const KeysBasePath = "/spicerack/locks"

// Spicerack's lock prefixes (the directory under KeysBasePath).
const (
	PrefixCookbooks = "cookbooks" // per cookbook run
	PrefixCustom    = "custom"    // spicerack.lock() inside cookbooks
)

// Spec names a lock and how poolbot holds it.
type Spec struct {
	Prefix      string        // PrefixCookbooks or PrefixCustom
	Name        string        // no "/"
	Concurrency int           // 0 = unlimited but tracked
	TTL         time.Duration // whole seconds
}

// Key is the etcd key of the lock.
func (s Spec) Key() string { return KeysBasePath + "/" + s.Prefix + "/" + s.Name }

// Validate applies spicerack's checks.
func (s Spec) Validate() error {
	if s.Prefix != PrefixCookbooks && s.Prefix != PrefixCustom {
		return fmt.Errorf("spicerack lock prefix %q must be %q or %q", s.Prefix, PrefixCookbooks, PrefixCustom)
	}
	if s.Name == "" || strings.ContainsAny(s.Name, "/?#\x00\r\n ") {
		return fmt.Errorf("spicerack lock name %q must be non-empty, without '/' or blanks", s.Name)
	}
	if s.Concurrency < 0 {
		return fmt.Errorf("spicerack lock %s: concurrency %d is negative", s.Name, s.Concurrency)
	}
	if s.TTL < time.Second || s.TTL%time.Second != 0 {
		return fmt.Errorf("spicerack lock %s: ttl %s must be whole seconds, at least 1s", s.Name, s.TTL)
	}
	return nil
}

// ServiceRouteRW is the lock cookbook sre.discovery.service-route takes to
// pool or depool (LockArgs suffix "rw", concurrency 1, ttl 600): poolbot
// holds the same while it changes conftool.
var ServiceRouteRW = Spec{Prefix: PrefixCookbooks, Name: "sre.discovery.service-route:rw", Concurrency: 1, TTL: 600 * time.Second}

// RegistryRollRestart is the automatic lock of cookbook
// sre.misc-clusters.roll-restart-reboot-docker-registry (no suffix; the
// cookbook itself takes it with spicerack's defaults, concurrency 20 and
// ttl 1800). poolbot asks for concurrency 1, so that neither a running
// cookbook nor a second restarter can join while it holds it, and the
// cookbook cannot start while poolbot holds it.
var RegistryRollRestart = Spec{Prefix: PrefixCookbooks, Name: "sre.misc-clusters.roll-restart-reboot-docker-registry", Concurrency: 1, TTL: 1800 * time.Second}

// KV is the etcd v2 key access the locks need; *conftool.Etcd has it.
type KV interface {
	GetKey(ctx context.Context, key string, recursive bool) (conftool.KeyNode, error)
	SetKey(ctx context.Context, key, value string, cond conftool.WriteCond) (conftool.KeyNode, error)
	CreateInOrderKey(ctx context.Context, dir, value string, ttl time.Duration) (conftool.KeyNode, error)
	DeleteKey(ctx context.Context, key string, prevIndex uint64) error
}

// Options configure Locks.
type Options struct {
	// Owner is written into poolbot's holders; default DefaultOwner().
	Owner string
	// WriterLockTries and WriterLockDelay pace the writer lock retries
	// (spicerack: 15 tries, k-th retry after k × 1 s).
	WriterLockTries int
	WriterLockDelay time.Duration
	Clock           clockwork.Clock
	Logger          *slog.Logger
}

// DefaultOwner is spicerack's owner format for this process:
// "<user>@<short hostname> [<pid>]".
func DefaultOwner() string {
	name := "poolbot"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	host, _, _ = strings.Cut(host, ".")
	return fmt.Sprintf("%s@%s [%d]", name, host, os.Getpid())
}

// Locks takes, releases and reads spicerack locks. Safe for concurrent use.
type Locks struct {
	kv          KV
	owner       string
	writerTries int
	writerDelay time.Duration
	clock       clockwork.Clock
	log         *slog.Logger
}

// New builds Locks over kv.
func New(kv KV, o Options) (*Locks, error) {
	l := &Locks{kv: kv, owner: o.Owner, writerTries: o.WriterLockTries, writerDelay: o.WriterLockDelay, clock: o.Clock, log: o.Logger}
	if l.owner == "" {
		l.owner = DefaultOwner()
	}
	if strings.ContainsAny(l.owner, "\x00\r\n") {
		return nil, fmt.Errorf("spicerack lock owner %q: control characters", l.owner)
	}
	if l.writerTries == 0 {
		l.writerTries = 15
	}
	if l.writerDelay == 0 {
		l.writerDelay = time.Second
	}
	if l.writerTries < 0 || l.writerDelay < 0 {
		return nil, errors.New("spicerack writer lock tries and delay must not be negative")
	}
	if l.clock == nil {
		l.clock = clockwork.NewRealClock()
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("component", "spicerack-locks")
	return l, nil
}

// Owner is the owner string poolbot writes.
func (l *Locks) Owner() string { return l.owner }

// HeldError: the lock cannot be taken now because of these live holders.
type HeldError struct {
	Key     string
	Holders []Holder // live holders, in stored order
	// Concurrency is the limit that refused: the smallest live holder's, or
	// poolbot's requested one.
	Concurrency int
}

// ErrHeld matches every *HeldError (errors.Is).
var ErrHeld = errors.New("spicerack lock held by someone else")

func (e *HeldError) Is(target error) bool { return target == ErrHeld }

func (e *HeldError) Error() string {
	parts := make([]string, len(e.Holders))
	for i, h := range e.Holders {
		parts[i] = h.String()
	}
	return fmt.Sprintf("spicerack lock %s is held by %s (%d holder(s), concurrency allowed %d)",
		e.Key, strings.Join(parts, "; "), len(e.Holders), e.Concurrency)
}

// Until is when the first current holder expires at the latest, the time
// a waiting gate can name.
func (e *HeldError) Until() time.Time {
	var t time.Time
	for _, h := range e.Holders {
		if h.Expires().After(t) {
			t = h.Expires()
		}
	}
	return t
}

// State is a lock key as read.
type State struct {
	Key     string
	Holders []Holder // every stored holder, expired ones included
	Index   uint64   // the key's modifiedIndex (0: absent)
}

// Live returns the holders that have not expired at now.
func (s State) Live(now time.Time) []Holder {
	var live []Holder
	for _, h := range s.Holders {
		if !h.Expired(now) {
			live = append(live, h)
		}
	}
	return live
}

// Lease is a lock poolbot holds.
type Lease struct {
	Spec    Spec
	ID      string // poolbot's holder uuid
	Owner   string
	Created time.Time
}

// Expires is when the lease lapses unless refreshed.
func (l Lease) Expires() time.Time { return l.Created.Add(l.Spec.TTL) }

// Inspect reads the lock key. An absent key has no holders.
func (l *Locks) Inspect(ctx context.Context, spec Spec) (State, error) {
	if err := spec.Validate(); err != nil {
		return State{}, err
	}
	return l.read(ctx, spec.Key())
}

func (l *Locks) read(ctx context.Context, key string) (State, error) {
	node, err := l.kv.GetKey(ctx, key, false)
	if conftool.IsEtcdCode(err, conftool.EtcdCodeKeyNotFound) {
		return State{Key: key}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("spicerack lock %s: %w", key, err)
	}
	if node.Dir {
		return State{}, &MalformedError{Key: key, Reason: "is a directory"}
	}
	holders, err := decodeHolders(key, node.Value)
	if err != nil {
		return State{}, err
	}
	return State{Key: key, Holders: holders, Index: node.ModifiedIndex}, nil
}

// Check reports, without writing, whether spec could be acquired now: nil,
// a *HeldError naming the holders, or a *MalformedError. It is the gate
// check before restarts.
func (l *Locks) Check(ctx context.Context, spec Spec) error {
	st, err := l.Inspect(ctx, spec)
	if err != nil {
		return err
	}
	_, err = admit(st, Holder{Concurrency: spec.Concurrency}, l.clock.Now())
	return err
}

// admit is spicerack's KeyLocks.add: live holders at or above a live
// holder's concurrency (counted with the expired ones still in, as
// spicerack does) or the requested concurrency refuse; expired holders are
// dropped. It returns the holders to write, the new one last.
func admit(st State, h Holder, now time.Time) ([]Holder, error) {
	var live []Holder
	minConc := -1
	for _, other := range st.Holders {
		if other.Expired(now) {
			continue
		}
		live = append(live, other)
		if other.Concurrency != 0 && len(st.Holders) >= other.Concurrency && (minConc < 0 || other.Concurrency < minConc) {
			minConc = other.Concurrency
		}
	}
	if minConc >= 0 {
		return nil, &HeldError{Key: st.Key, Holders: live, Concurrency: minConc}
	}
	if h.Concurrency != 0 && len(live) >= h.Concurrency {
		return nil, &HeldError{Key: st.Key, Holders: live, Concurrency: h.Concurrency}
	}
	return append(live, h), nil
}

// Acquire takes spec once: writer lock, read, spicerack's admission rules,
// compare-and-swap write, writer lock release. A lock held by others is a
// *HeldError (the caller's gate waits and retries), a bad value a
// *MalformedError; nothing is written then.
func (l *Locks) Acquire(ctx context.Context, spec Spec) (Lease, error) {
	if err := spec.Validate(); err != nil {
		return Lease{}, err
	}
	wl, err := l.acquireWriterLock(ctx)
	if err != nil {
		return Lease{}, fmt.Errorf("acquire %s: %w", spec.Key(), err)
	}
	defer l.releaseWriterLock(wl)
	st, err := l.read(ctx, spec.Key())
	if err != nil {
		return Lease{}, err
	}
	now := l.clock.Now().UTC().Truncate(time.Microsecond)
	mine := Holder{ID: NewUUID4(), Concurrency: spec.Concurrency, Created: now, Owner: l.owner, TTL: spec.TTL}
	holders, err := admit(st, mine, now)
	if err != nil {
		return Lease{}, err
	}
	if err := l.write(ctx, st, holders); err != nil {
		return Lease{}, fmt.Errorf("acquire %s: %w", spec.Key(), err)
	}
	for _, h := range st.Holders {
		if h.Expired(now) {
			l.log.Info("dropped expired spicerack lock holder", "key", st.Key, "owner", h.Owner, "expired", h.Expires())
		}
	}
	l.log.Info("acquired spicerack lock", "key", st.Key, "id", mine.ID, "owner", l.owner, "ttl", spec.TTL)
	return Lease{Spec: spec, ID: mine.ID, Owner: l.owner, Created: now}, nil
}

// write stores holders over st (compare-and-swap on st.Index, or create
// when absent), deleting the key when none is left, as spicerack does.
func (l *Locks) write(ctx context.Context, st State, holders []Holder) error {
	if len(holders) == 0 {
		if st.Index == 0 {
			return nil
		}
		err := l.kv.DeleteKey(ctx, st.Key, st.Index)
		if conftool.IsEtcdCode(err, conftool.EtcdCodeKeyNotFound) {
			return nil
		}
		return err
	}
	cond := conftool.WriteCond{PrevIndex: st.Index, MustNotExist: st.Index == 0}
	_, err := l.kv.SetKey(ctx, st.Key, encodeHolders(holders), cond)
	if conftool.IsEtcdCode(err, conftool.EtcdCodeCompareFailed) || conftool.IsEtcdCode(err, conftool.EtcdCodeNodeExist) {
		// Someone wrote without the writer lock: refuse rather than
		// overwrite their holder.
		return fmt.Errorf("%s changed during the write (a writer without the writer lock?): %w", st.Key, err)
	}
	return err
}

// ErrLeaseLost: poolbot's holder is no longer in the key (it expired and
// someone reaped it, or it was removed by hand).
var ErrLeaseLost = errors.New("spicerack lock lease lost")

// Refresh restarts the lease's ttl by rewriting its created time to now, so
// that a long sequence keeps the lock. Other holders are kept as they are.
func (l *Locks) Refresh(ctx context.Context, lease Lease) (Lease, error) {
	key := lease.Spec.Key()
	wl, err := l.acquireWriterLock(ctx)
	if err != nil {
		return lease, fmt.Errorf("refresh %s: %w", key, err)
	}
	defer l.releaseWriterLock(wl)
	st, err := l.read(ctx, key)
	if err != nil {
		return lease, err
	}
	now := l.clock.Now().UTC().Truncate(time.Microsecond)
	found := false
	for i := range st.Holders {
		if st.Holders[i].ID == lease.ID {
			st.Holders[i].Created = now
			found = true
		}
	}
	if !found {
		return lease, fmt.Errorf("refresh %s: holder %s: %w", key, lease.ID, ErrLeaseLost)
	}
	if err := l.write(ctx, st, st.Holders); err != nil {
		return lease, fmt.Errorf("refresh %s: %w", key, err)
	}
	lease.Created = now
	return lease, nil
}

// Release removes poolbot's holder (the key goes with the last holder). A
// holder already gone is not an error: the lock expired and was reaped.
func (l *Locks) Release(ctx context.Context, lease Lease) error {
	key := lease.Spec.Key()
	wl, err := l.acquireWriterLock(ctx)
	if err != nil {
		return fmt.Errorf("release %s: %w", key, err)
	}
	defer l.releaseWriterLock(wl)
	st, err := l.read(ctx, key)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	keep := make([]Holder, 0, len(st.Holders))
	for _, h := range st.Holders {
		if h.ID != lease.ID {
			keep = append(keep, h)
		}
	}
	if len(keep) == len(st.Holders) {
		l.log.Warn("spicerack lock holder not found on release (expired?)", "key", key, "id", lease.ID)
		return nil
	}
	if err := l.write(ctx, st, keep); err != nil {
		return fmt.Errorf("release %s: %w", key, err)
	}
	l.log.Info("released spicerack lock", "key", key, "id", lease.ID)
	return nil
}
