package procedure

import (
	"time"

	"poolbot"
)

// Metrics receives what the procedure measures, for poolbot's /metrics.
// Calls come from the service workers and must not block.
type Metrics interface {
	// Gates reports the gates closed for the head of a service's queue
	// after each evaluation ("calendar", "scap", "conftool", "force"),
	// and since when that request has waited. closed is empty and since
	// zero when nothing waits on gates (empty queue, running or parked
	// head, or all gates open).
	Gates(service string, closed []string, since time.Time)
	// HostRestarted reports one host's restart, health wait and probe:
	// how long it took and whether it failed.
	HostRestarted(service, host string, took time.Duration, err error)
}

type noMetrics struct{}

func (noMetrics) Gates(string, []string, time.Time)                  {}
func (noMetrics) HostRestarted(string, string, time.Duration, error) {}

// reportGates tells Metrics which gates block r now.
func (e *Engine) reportGates(service string, r poolbot.Request, v verdict) {
	if v.clear() {
		e.deps.Metrics.Gates(service, nil, time.Time{})
		return
	}
	var closed []string
	for _, b := range v.blockers {
		if len(closed) == 0 || closed[len(closed)-1] != b.gate {
			closed = append(closed, b.gate)
		}
	}
	e.deps.Metrics.Gates(service, closed, r.CreatedAt)
}
