// Package alertmanager silences a host's alerts in Prometheus Alertmanager
// around its restart, the way spicerack's AlertmanagerHosts does
// (spicerack/alertmanager.py), through Alertmanager's API v2:
//
//   - POST /api/v2/silences with one matcher
//     {"name": "instance", "value": "^(host)(:[0-9]+)?$", "isRegex": true}
//     (the short hostname, escaped like Python's re.escape), startsAt/endsAt
//     in RFC 3339 UTC, a comment and createdBy; the answer is
//     {"silenceID": "<uuid>"}.
//   - DELETE /api/v2/silence/<id> expires it. An already expired silence is
//     done: 0.25 answers 200, newer servers HTTP 500 "already expired".
//   - GET /api/v2/silence/<id> reads its state (pending, active, expired).
//
// Every request goes to the configured Alertmanagers in order until one
// answers (they are clustered and gossip silences), with a short timeout and
// no retry on an HTTP error, like spicerack. When none answers the error
// wraps ErrUnavailable; whether that stops the restart (fail closed, the
// default) or only warns is the caller's decision, from Config.FailClosed.
//
// The client is a small hand-written one over net/http: the generated
// go-openapi client of github.com/prometheus/alertmanager would bring the
// go-openapi runtime, strfmt, validate and their dependencies into poolbot's
// go.mod for three calls.
package alertmanager
