package conftool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/jonboulle/clockwork"
)

// State is one discovery object: whether the datacenter is pooled for the
// service, the DNS TTL, and conftool's references.
type State struct {
	Pooled     bool
	TTL        int
	References []string
	// ModifiedIndex is etcd's modifiedIndex of the key (etcd backend only; 0
	// from confctl). It identifies a write: the index SetPooled returns is the
	// one a watcher sees for poolbot's own change.
	ModifiedIndex uint64
}

// Equal reports whether a and b hold the same values and index.
func (s State) Equal(o State) bool {
	return s.Pooled == o.Pooled && s.TTL == o.TTL && s.ModifiedIndex == o.ModifiedIndex &&
		slices.Equal(s.References, o.References)
}

// Client reads and changes discovery objects.
type Client interface {
	// Get returns the object of service in datacenter (ErrNotFound if absent).
	Get(ctx context.Context, service, datacenter string) (State, error)
	// List returns every datacenter's object of service, keyed by datacenter
	// (ErrNotFound when the service has none).
	List(ctx context.Context, service string) (map[string]State, error)
	// SetPooled sets pooled, then reads the object back and returns what it
	// read; a read-back that does not show the wanted value is an error
	// (ErrVerify). Depooling the last pooled datacenter is refused
	// (ErrLastPooled), checked against live state right before the write.
	SetPooled(ctx context.Context, service, datacenter string, pooled bool) (State, error)
}

// Watcher reports changes of a service's discovery objects.
type Watcher interface {
	// Watch returns a channel of changes of service's objects. It first sends
	// the current state (SourceInitial, one Change per datacenter), then every
	// change. It never gives up while ctx lives: lost connections are retried
	// with backoff and reported as SourceError changes. The channel is closed
	// when ctx is done.
	Watch(ctx context.Context, service string) (<-chan Change, error)
}

// The backends implement the interfaces.
var (
	_ Client  = (*Etcd)(nil)
	_ Watcher = (*Etcd)(nil)
	_ Client  = (*Confctl)(nil)
	_ Watcher = (*PollWatcher)(nil)
)

// ChangeSource says how a Change was learnt.
type ChangeSource int

const (
	// SourceInitial: the state read when the watch started.
	SourceInitial ChangeSource = iota
	// SourceEvent: an etcd event for this key; every write is one event.
	SourceEvent
	// SourceResync: a difference between a fresh read and what the watcher
	// knew, after a gap (etcd's history was cleared, the connection was lost,
	// or a poll interval passed). Intermediate writes may have been missed.
	SourceResync
	// SourceError: the watcher lost etcd (Err says why); it keeps retrying
	// and resyncs when it is back.
	SourceError
)

func (s ChangeSource) String() string {
	switch s {
	case SourceInitial:
		return "initial"
	case SourceEvent:
		return "event"
	case SourceResync:
		return "resync"
	case SourceError:
		return "error"
	}
	return fmt.Sprintf("ChangeSource(%d)", int(s))
}

// Change is one change of a discovery object.
type Change struct {
	Service    string
	Datacenter string // empty for SourceError
	Source     ChangeSource
	// Old is the state before the change, nil when not known (first sight).
	Old *State
	// New is the state after the change; nil when the object was deleted
	// (Deleted) or its new value could not be decoded (Err).
	New     *State
	Deleted bool
	// ModifiedIndex is etcd's index of the change (0 from a polled backend).
	ModifiedIndex uint64
	// Err is why the watch failed (SourceError), or why the new value could
	// not be decoded (SourceEvent/SourceResync with New == nil).
	Err error
}

// PooledChanged reports whether the change flipped pooled: known before and
// after with different values, or a deletion of a pooled object.
func (c Change) PooledChanged() bool {
	switch {
	case c.Old == nil:
		return false
	case c.New == nil:
		return c.Deleted && c.Old.Pooled
	default:
		return c.Old.Pooled != c.New.Pooled
	}
}

func (c Change) String() string {
	show := func(s *State) string {
		if s == nil {
			return "?"
		}
		return fmt.Sprintf("pooled=%t", s.Pooled)
	}
	switch {
	case c.Source == SourceError:
		return fmt.Sprintf("%s: watch error: %v", c.Service, c.Err)
	case c.Deleted:
		return fmt.Sprintf("%s/%s (%s): deleted (was %s) at index %d", c.Service, c.Datacenter, c.Source, show(c.Old), c.ModifiedIndex)
	case c.Err != nil:
		return fmt.Sprintf("%s/%s (%s): unreadable value at index %d: %v", c.Service, c.Datacenter, c.Source, c.ModifiedIndex, c.Err)
	}
	return fmt.Sprintf("%s/%s (%s): %s => %s at index %d", c.Service, c.Datacenter, c.Source, show(c.Old), show(c.New), c.ModifiedIndex)
}

var (
	// ErrInvalidName: a service or datacenter name is not of the allowed form.
	ErrInvalidName = errors.New("invalid name")
	// ErrNotFound: the discovery object (or service) does not exist. poolbot
	// never creates discovery objects.
	ErrNotFound = errors.New("discovery object not found")
	// ErrLastPooled: the change would leave the service pooled nowhere.
	ErrLastPooled = errors.New("refusing to depool the last pooled datacenter")
	// ErrVerify: the read-back after a write does not show the wanted value,
	// or the backend's answer is not what it must be.
	ErrVerify = errors.New("verification failed")
	// ErrConflict: etcd's compare-and-swap kept failing because others kept
	// writing the key.
	ErrConflict = errors.New("concurrent modification")
)

// namePattern is what service and datacenter names must match. Beyond being
// safe in a key path and an argv element, it contains no regular-expression
// metacharacters: confctl compiles selector values as ^value$, so "apus" can
// only ever select apus.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateName checks a service or datacenter name; kind ("service",
// "datacenter") names it in the error.
func ValidateName(kind, name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %s %q must match %s", ErrInvalidName, kind, name, namePattern)
	}
	return nil
}

func validateNames(service, datacenter string) error {
	if err := ValidateName("service", service); err != nil {
		return err
	}
	return ValidateName("datacenter", datacenter)
}

// LastPooledError is the guard's refusal; errors.Is(err, ErrLastPooled).
type LastPooledError struct {
	Service    string
	Datacenter string
	// Depool is set when the refusal came after poolbot's own depool had
	// landed (a concurrent depool elsewhere left the service pooled
	// nowhere): that write's modifiedIndex. Repool is the modifiedIndex
	// of poolbot's write that put the object back, when it could. Both
	// writes are poolbot's own, not drift (etcd backend; zero otherwise).
	Depool, Repool uint64
}

// Error mirrors spicerack's Discovery.depool message.
func (e *LastPooledError) Error() string {
	return fmt.Sprintf("Services %s cannot be depooled as they are only active in %s", e.Service, e.Datacenter)
}

// Is makes errors.Is(err, ErrLastPooled) true.
func (e *LastPooledError) Is(target error) bool { return target == ErrLastPooled }

// CheckDepool decides whether datacenter may be depooled for service, given
// every datacenter's state (as from List). It refuses, like spicerack, when
// datacenter is pooled and no other datacenter is: depooling would take the
// service out of DNS everywhere. Depooling a datacenter that is already
// depooled is allowed (it changes nothing). A datacenter missing from states
// is ErrNotFound.
func CheckDepool(service, datacenter string, states map[string]State) error {
	st, ok := states[datacenter]
	if !ok {
		return fmt.Errorf("%w: %s/%s (known datacenters: %s)", ErrNotFound, service, datacenter, strings.Join(sortedKeys(states), ", "))
	}
	if !st.Pooled {
		return nil
	}
	for dc, other := range states {
		if dc != datacenter && other.Pooled {
			return nil
		}
	}
	return &LastPooledError{Service: service, Datacenter: datacenter}
}

// PooledDatacenters returns the datacenters whose object is pooled, sorted.
func PooledDatacenters(states map[string]State) []string {
	var dcs []string
	for dc, st := range states {
		if st.Pooled {
			dcs = append(dcs, dc)
		}
	}
	sort.Strings(dcs)
	return dcs
}

func sortedKeys(m map[string]State) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Options holds what the backends need besides their Config.
type Options struct {
	// Logger receives debug and warning logs; nil discards them. Secrets are
	// never logged.
	Logger *slog.Logger
	// Clock paces watch reconnects and polls; nil means the real clock.
	Clock clockwork.Clock
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) clock() clockwork.Clock {
	if o.Clock == nil {
		return clockwork.NewRealClock()
	}
	return o.Clock
}

// New returns the backend cfg.Backend selects. cfg must be valid.
func New(cfg Config, opts Options) (Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendEtcd:
		return NewEtcd(cfg.Etcd, opts)
	case BackendConfctl:
		return NewConfctl(cfg.Confctl, opts)
	}
	return nil, fmt.Errorf("conftool.backend: unknown backend %q", cfg.Backend)
}

// checkAfterWrite verifies the read-back of a SetPooled: the object shows
// the wanted value, and after a depool some datacenter is still pooled.
func checkAfterWrite(service, datacenter string, pooled bool, after map[string]State) (State, error) {
	st, ok := after[datacenter]
	if !ok {
		return State{}, fmt.Errorf("%w: read-back: %s/%s disappeared after the write", ErrVerify, service, datacenter)
	}
	if st.Pooled != pooled {
		return st, fmt.Errorf("%w: read-back of %s/%s shows pooled=%t, wanted %t (changed by someone else?)",
			ErrVerify, service, datacenter, st.Pooled, pooled)
	}
	return st, nil
}
