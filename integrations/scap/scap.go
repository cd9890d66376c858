package scap

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/logmsgbot"
)

// Options are the dependencies New injects.
type Options struct {
	Clock  clockwork.Clock
	Logger *slog.Logger
	// HTTPClient for SpiderPig; nil uses a default client.
	HTTPClient *http.Client
	// SpiderPigCredentials overrides the credentials named in the config
	// (spiderpig.cookie or spiderpig.token); nil reads them.
	SpiderPigCredentials *Credentials
	// SpiderPigMinInterval: ask SpiderPig at most this often (default 5s;
	// negative asks on every check).
	SpiderPigMinInterval time.Duration
	// Relay says which channel lines are logmsgbot's, for the channel
	// source; the zero value trusts none.
	Relay logmsgbot.Relay
}

// DefaultSpiderPigMinInterval is how long New's Monitor reuses a SpiderPig
// answer.
const DefaultSpiderPigMinInterval = 5 * time.Second

// Scap is the wired-up integration: what the procedure and the chat
// adapters use.
type Scap struct {
	// Monitor answers "is a deployment in progress?".
	Monitor *Monitor
	// Blocker keeps deployments out (lockfile or command backend).
	Blocker Blocker
	// Locks probes lock files and, with the lockfile backend, is the Blocker.
	// Nil when the lock source is off and the command backend is used.
	Locks *Locks
	// SpiderPig is nil when spiderpig.url is empty.
	SpiderPig *SpiderPig
	// Tracker is nil when the channel source is off. The chat adapter feeds
	// every channel message to Tracker.Observe and re-evaluates gates when
	// the returned Event Ends().
	Tracker *Tracker
}

// New validates cfg and builds every enabled part.
func New(cfg Config, o Options) (*Scap, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	log := o.Logger.With("component", "scap")
	s := &Scap{}

	if cfg.Locks.LocksEnabled() || cfg.DeployBlock.Backend == BackendLockfile {
		s.Locks = NewLocks(LocksOptions{
			GlobalLock: cfg.DeployBlock.GlobalLock,
			Locker:     cfg.DeployBlock.Locker,
			Clock:      o.Clock,
			Logger:     log,
		})
	}
	var cmdBlocker *CommandBlocker
	switch cfg.DeployBlock.Backend {
	case BackendLockfile:
		s.Blocker = s.Locks
	case BackendCommand:
		b, err := NewCommandBlocker(cfg.DeployBlock, o.Clock, log)
		if err != nil {
			return nil, err
		}
		cmdBlocker, s.Blocker = b, b
	}

	if cfg.SpiderPig.SpiderPigEnabled() {
		creds := o.SpiderPigCredentials
		if creds == nil {
			c, err := cfg.SpiderPig.Credentials()
			if err != nil {
				return nil, fmt.Errorf("scap: %w", err)
			}
			creds = &c
		}
		sp, err := NewSpiderPig(cfg.SpiderPig, *creds, o.HTTPClient, log)
		if err != nil {
			return nil, err
		}
		s.SpiderPig = sp
	}
	if cfg.Channel.ChannelEnabled() {
		s.Tracker = NewTracker(cfg.Channel, o.Relay, o.Clock, log)
	}

	if o.SpiderPigMinInterval == 0 {
		o.SpiderPigMinInterval = DefaultSpiderPigMinInterval
	}
	mo := MonitorOptions{
		SpiderPigMinInterval: max(o.SpiderPigMinInterval, 0),
		SpiderPig:            s.SpiderPig,
		Tracker:              s.Tracker,
		CommandBlocker:       cmdBlocker,
		GlobalLock:           cfg.DeployBlock.GlobalLock,
		Clock:                o.Clock,
		Logger:               log,
	}
	if cfg.Locks.LocksEnabled() {
		mo.Locks, mo.LockFiles, mo.AllowMissing = s.Locks, cfg.Locks.Files, cfg.Locks.AllowMissing
	}
	s.Monitor = NewMonitor(mo)
	return s, nil
}
