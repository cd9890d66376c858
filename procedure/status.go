package procedure

import (
	"context"
	"fmt"
	"slices"
	"time"

	"poolbot"
	"poolbot/store"
)

// What !status says about requests that run or need an operator, beside
// Blockers (report.go) for the ones that wait.

// Progress says where a running request is: the step, and while it
// restarts, host n/N and the estimated end.
func (e *Engine) Progress(ctx context.Context, r poolbot.Request) (string, error) {
	svc, ok := e.services[r.Service]
	if !ok {
		return "", fmt.Errorf("service %s is not managed", r.Service)
	}
	switch r.State {
	case poolbot.StateBlockingDeploys:
		return "taking the deploy block", nil
	case poolbot.StateSwitching:
		return "setting the conftool pooled state", nil
	case poolbot.StateRestarting:
	default:
		return "", nil
	}
	steps, err := e.deps.Store.HostSteps(ctx, r.ID)
	if err != nil {
		return "", err
	}
	if len(steps) == 0 {
		return fmt.Sprintf("restarting 0/%d hosts, starting", len(svc.Plan.Hosts)), nil
	}
	now := e.clock.Now()
	return hostProgress(steps, e.perHost(ctx, svc), svc.Plan.Pace, now), nil
}

// hostProgress is "host 2/4 registry2 (1 done), estimated end 14:32 UTC":
// the host under way (or next), and the end if the hosts left take
// perHost each, paced.
func hostProgress(steps []poolbot.HostStep, perHost, pace time.Duration, now time.Time) string {
	n := len(steps)
	cur := slices.IndexFunc(steps, func(s poolbot.HostStep) bool { return s.State != poolbot.HostDone })
	if cur < 0 {
		return fmt.Sprintf("%d/%d hosts restarted, finishing", n, n)
	}
	s := steps[cur]
	left := time.Duration(n-cur)*perHost + time.Duration(n-cur-1)*pace
	if s.State == poolbot.HostRestarting && !s.StartedAt.IsZero() {
		left -= min(now.Sub(s.StartedAt), perHost)
	}
	word := "next"
	if s.State == poolbot.HostRestarting {
		word = "restarting"
	}
	return fmt.Sprintf("host %d/%d %s %s (%d done), estimated end %s", s.Position, n, s.Host, word, cur, poolbot.FormatClock(now.Add(left), now))
}

// attentionHorizon is how long a failed request stays in !status when
// nothing of its service ran since.
const attentionHorizon = 24 * time.Hour

// Attention lists the service's failed requests an operator still has to
// act on: the latest one, if it ended within attentionHorizon and no
// request of the service finished after it, with what it left and what to
// do. (A parked request is unfinished and listed with the queue.)
func (e *Engine) Attention(ctx context.Context, service string) ([]string, error) {
	recent, err := e.deps.Store.List(ctx, store.Filter{Service: service, Newest: true, Limit: 1,
		States: []poolbot.State{poolbot.StateDone, poolbot.StateFailed, poolbot.StateCancelled, poolbot.StateExpired}})
	if err != nil || len(recent) == 0 {
		return nil, err
	}
	r := recent[0]
	now := e.clock.Now()
	if r.State != poolbot.StateFailed || now.Sub(r.FinishedAt) > attentionHorizon {
		return nil, nil
	}
	line := fmt.Sprintf("%s %s by %s: FAILED %s ago: %s", r.ID, r.Summary(), r.Operator,
		poolbot.FormatDuration(now.Sub(r.FinishedAt)), r.Error)
	if _, switches := r.Action.Pooled(); switches {
		line += "; " + e.describePooled(ctx, r)
	}
	steps, err := e.deps.Store.HostSteps(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(steps, func(s poolbot.HostStep) bool { return s.State == poolbot.HostFailed }); i >= 0 {
		line += fmt.Sprintf("; to do: %sresume %d retries host %d/%d %s once it is fixed", "!", int64(r.ID), steps[i].Position, len(steps), steps[i].Host)
	} else {
		line += "; to do: check the state above and queue a new request"
	}
	return []string{line}, nil
}
