package chat

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"
)

// Reconnect runs session until ctx ends: each time it returns, it
// waits with exponential backoff between minWait and maxWait, with jitter
// in [backoff/2, backoff) so bots restarted together don't reconnect in
// step. A session that connected and lasted stableSession resets the
// backoff. failed is told of each session's end and the wait that follows.
func Reconnect(ctx context.Context, clock clockwork.Clock, minWait, maxWait time.Duration,
	session func(ctx context.Context) (connected bool, err error),
	failed func(connected bool, err error, wait time.Duration)) {
	backoff := minWait
	for {
		started := clock.Now()
		connected, err := session(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected && clock.Since(started) >= stableSession {
			backoff = minWait
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		failed(connected, err, wait)
		select {
		case <-ctx.Done():
			return
		case <-clock.After(wait):
		}
		backoff = min(backoff*2, maxWait)
	}
}

// stableSession is how long a session must have lasted for the next
// reconnect to start again from minWait.
const stableSession = time.Minute

// Redact hides a secret in a config's String and LogValue: "" stays "",
// anything else becomes "[redacted]".
func Redact(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}
