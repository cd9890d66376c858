package procedure

import (
	"context"
	"fmt"

	"poolbot"
	"poolbot/integrations/registry"
)

// CrossProber is a Registry that can run the write-then-read probe across
// hosts (registry.Client does). Hosts whose registries write to different
// apus sites each pass a probe on their own instance; only an upload
// continued, and a blob read, on another host shows the split (T422166).
type CrossProber interface {
	ProbeAcross(ctx context.Context, inst registry.Instance, opts registry.ProbeOptions) registry.ProbeResult
}

// probeAcross probes inst of host across the same instance on each of
// peers (host itself is skipped) and, with viaBalancer, through the
// service's load balancer. A Registry that cannot gets the plain probe.
func probeAcross(ctx context.Context, svc *Service, host string, inst registry.Instance, peers []string, viaBalancer bool) registry.ProbeResult {
	cp, ok := svc.Registry.(CrossProber)
	if !ok {
		return svc.Registry.Probe(ctx, inst, "")
	}
	var others []registry.Instance
	for _, h := range peers {
		if h == host {
			continue
		}
		for _, pi := range svc.Instances(h) {
			if pi.Name == inst.Name {
				others = append(others, pi)
			}
		}
	}
	return cp.ProbeAcross(ctx, inst, registry.ProbeOptions{Peers: others, ViaBalancer: viaBalancer})
}

// probeAfterRestart probes inst of host after its restart against the
// hosts this request has already restarted: they must be on the storage
// the host is on now. Hosts not restarted yet may still be on the old
// site (the reason deploys are blocked meanwhile), so they are not
// asked, nor is the balancer, which sends requests to them, until every
// other host is done.
func (e *Engine) probeAfterRestart(ctx context.Context, svc *Service, r poolbot.Request, host string, inst registry.Instance) (registry.ProbeResult, error) {
	steps, err := e.deps.Store.HostSteps(ctx, r.ID)
	if err != nil {
		return registry.ProbeResult{}, fmt.Errorf("reading the hosts restarted so far for the probe: %w", err)
	}
	var done []string
	all := true
	for _, s := range steps {
		switch {
		case s.Host == host:
		case s.State == poolbot.HostDone:
			done = append(done, s.Host)
		default:
			all = false
		}
	}
	return probeAcross(ctx, svc, host, inst, done, all), nil
}
