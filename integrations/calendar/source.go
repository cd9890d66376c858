package calendar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"poolbot"
)

// Source fetches the deployment calendar. A Source that cannot read or
// understand the calendar returns an error, never an empty schedule.
type Source interface {
	Fetch(ctx context.Context) (Schedule, error)
}

// Options are the dependencies shared by the sources and the cache. Zero
// values are replaced by defaults.
type Options struct {
	// HTTPClient is used for every request (nil: a client without a global
	// timeout; each fetch is bounded by the configured timeout instead).
	HTTPClient *http.Client
	// Clock stamps fetches and drives refreshes (nil: the real clock).
	Clock clockwork.Clock
	// Logger (nil: discard).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// NewSource returns the source cfg selects. cfg is validated first.
func NewSource(cfg Config, opt Options) (Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	switch cfg.Source {
	case SourceICal:
		return NewICal(cfg.ICal, opt)
	default:
		return NewWikitech(cfg.Wikitech, opt)
	}
}

// fetchTimeoutError is the cause of a fetch context ended by the configured
// timeout, telling it apart from a deadline of the caller's. It wraps
// context.DeadlineExceeded.
type fetchTimeoutError struct{ d time.Duration }

func (e *fetchTimeoutError) Error() string {
	return fmt.Sprintf("no complete answer within %s (timeout)", poolbot.FormatDuration(e.d))
}

func (e *fetchTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// withFetchTimeout bounds one fetch by the configured timeout.
func withFetchTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, &fetchTimeoutError{d: d})
}

// explainTimeout makes sure an error caused by the configured timeout says
// so (net/http usually reports the context's cause itself, not always).
func explainTimeout(ctx context.Context, err error) error {
	var cause *fetchTimeoutError
	if err != nil && errors.As(context.Cause(ctx), &cause) && !errors.As(err, new(*fetchTimeoutError)) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// errBodyTooLarge is wrapped by readBody when a response exceeds its limit.
var errBodyTooLarge = errors.New("response body too large")

// readBody reads at most limit bytes of r, failing if there is more.
func readBody(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, limit)
	}
	return b, nil
}

// snippet returns the start of a response body for an error message,
// cleaned so that it cannot carry control characters into logs or IRC.
func snippet(b []byte) string {
	const n = 160
	if len(b) > n {
		b = b[:n]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := cleanText(string(b))
	if s == "" {
		return "(empty body)"
	}
	return strings.TrimSpace(s)
}
