package procedure

import (
	"context"
	"slices"
	"testing"

	"poolbot/integrations/registry"
)

// crossRecorder is a Registry that records how it is asked to probe.
type crossRecorder struct {
	noRegistry
	peers       []string
	viaBalancer bool
	plain       int
}

func (c *crossRecorder) Probe(context.Context, registry.Instance, string) registry.ProbeResult {
	c.plain++
	return registry.ProbeResult{OK: true}
}

func (c *crossRecorder) ProbeAcross(_ context.Context, _ registry.Instance, o registry.ProbeOptions) registry.ProbeResult {
	c.peers = nil
	for _, p := range o.Peers {
		c.peers = append(c.peers, p.String())
	}
	c.viaBalancer = o.ViaBalancer
	return registry.ProbeResult{OK: true}
}

// The probe across hosts asks the same instance on the given hosts other
// than the probed one; a Registry that cannot gets the plain probe.
func TestProbeAcrossPeers(t *testing.T) {
	t.Parallel()
	rec := &crossRecorder{}
	svc := &Service{Registry: rec, Instances: func(host string) []registry.Instance {
		return []registry.Instance{
			{Name: "restricted", Host: host, Port: 5002, DebugPort: 5003},
			{Name: "ml", Host: host, Port: 5004, DebugPort: 5005},
		}
	}}
	inst := svc.Instances("registry2004")[0]
	probeAcross(context.Background(), svc, "registry2004", inst, []string{"registry2004", "registry2005", "registry2006"}, true)
	if want := []string{"restricted@registry2005:5002", "restricted@registry2006:5002"}; !slices.Equal(rec.peers, want) || !rec.viaBalancer {
		t.Fatalf("peers %v balancer %t, want %v and the balancer", rec.peers, rec.viaBalancer, want)
	}
	probeAcross(context.Background(), svc, "registry2004", inst, nil, false)
	if len(rec.peers) != 0 || rec.viaBalancer || rec.plain != 0 {
		t.Fatalf("first host: peers %v balancer %t plain %d", rec.peers, rec.viaBalancer, rec.plain)
	}

	plain := &Service{Registry: noRegistry{}, Instances: svc.Instances}
	if res := probeAcross(context.Background(), plain, "registry2004", inst, []string{"registry2005"}, true); !res.OK {
		t.Fatalf("plain registry: %+v", res)
	}
}
