package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ProbeOptions extend the write-then-read probe across hosts.
type ProbeOptions struct {
	// Repository; "" means the instance's probe repository or
	// probe.repository.
	Repository string
	// Peers are the same instance on other hosts of the service. Each
	// must see what the probed instance wrote: an upload opened on the
	// probed instance is continued there, and the blob is read there.
	Peers []Instance
	// ViaBalancer also reads the blob through registry.balancer_url
	// (ignored when it is not set).
	ViaBalancer bool
	// EveryTarget goes on after a peer or the balancer fails, so that
	// ProbeResult.Targets says how each one did from one write (the
	// periodic probe tells which hosts disagree). Without it the first
	// failure ends the probe.
	EveryTarget bool
}

// TargetResult is how one peer, or the balancer, did in ProbeAcross.
type TargetResult struct {
	// Peer is the peer's instance; zero for the balancer.
	Peer Instance
	// Balancer is the balancer's host[:port] from registry.balancer_url;
	// empty for a peer.
	Balancer string
	// Err is nil when the handoff and the read passed there.
	Err *ProbeError
}

// ProbeAcross is Probe, then the checks that find hosts whose storage is
// not the same (T422166: after apus moved, hosts restarted at different
// times write to different datacenters, and each alone passes Probe):
//
//  1. write and read the blob on inst (Probe);
//  2. for each peer: open an upload on inst (POST), continue and close it
//     on the peer (PATCH, PUT), as a push through the load balancer does.
//     A peer on another storage answers 404 BLOB_UPLOAD_UNKNOWN;
//  3. for each peer, then through the balancer: GET the blob and compare
//     the bytes. A peer on another storage answers 404 BLOB_UNKNOWN.
//
// The first failure ends the probe (with opts.EveryTarget: the first is
// the result's, and every target is still tried); its error names the peer
// and quotes the registry's answer. ProbeResult.Targets says how each
// target tried did, when the probed instance's own write and read passed.
// The whole probe is bounded by probe.timeout.
func (c *Client) ProbeAcross(ctx context.Context, inst Instance, opts ProbeOptions) ProbeResult {
	start := c.clock.Now()
	repo := opts.Repository
	if repo == "" {
		repo = inst.ProbeRepository
	}
	if repo == "" {
		repo = c.cfg.Probe.Repository
	}
	var targets []TargetResult
	res := c.probeWith(ctx, inst, repo, func(p *probeRun) *ProbeError {
		var perr *ProbeError
		targets, perr = p.across(opts)
		return perr
	})
	res = c.finishProbe(inst, repo, start, res)
	res.Targets = targets
	return res
}

// across runs steps 2 and 3 of ProbeAcross after the blob was written and
// read back on the probed instance: the targets tried and the first
// failure. A failure of the probed instance itself (the POST of a handoff)
// ends it, as does the probe's deadline: later targets are not tried.
func (p *probeRun) across(opts ProbeOptions) ([]TargetResult, *ProbeError) {
	var (
		targets []TargetResult
		first   *ProbeError
	)
	// failed records a target's failure; it reports whether to stop.
	failed := func(t *TargetResult, perr *ProbeError) bool {
		t.Err = perr
		if first == nil {
			first = perr
		}
		return !opts.EveryTarget || p.ctx.Err() != nil
	}
	for _, peer := range opts.Peers {
		t := TargetResult{Peer: peer}
		var perr *ProbeError
		if err := peer.validate(); err != nil {
			perr = &ProbeError{Step: StepValidate, Code: CodeInternal, Target: peer.String(), Err: err}
		} else if perr = p.handoff(peer); perr != nil && perr.Target == "" {
			return targets, perr // the probed instance failed, not the peer
		}
		stop := perr != nil && failed(&t, perr)
		targets = append(targets, t)
		if stop {
			return targets, first
		}
	}
	for i := range targets {
		t := &targets[i]
		if t.Err != nil {
			continue
		}
		if perr := p.readOn(StepReadPeer, t.Peer.String(), t.Peer.BaseURL()); perr != nil && failed(t, p.explain(perr, t.Peer)) {
			return targets, first
		}
	}
	if opts.ViaBalancer && p.c.cfg.BalancerURL != "" {
		base, err := url.Parse(p.c.cfg.BalancerURL)
		if err != nil {
			return targets, &ProbeError{Step: StepReadBalancer, Code: CodeInternal, Err: err}
		}
		t := TargetResult{Balancer: base.Host}
		if perr := p.readOn(StepReadBalancer, "balancer "+base.Host, base); perr != nil {
			failed(&t, perr)
		}
		targets = append(targets, t)
	}
	return targets, first
}

// handoff opens an upload of the probe blob on the probed instance and
// continues it on peer. The blob exists already, which does not matter:
// the peer must find the session in its storage before anything else.
func (p *probeRun) handoff(peer Instance) *ProbeError {
	loc, perr := p.startUpload()
	if perr != nil {
		perr.Step = StepHandoff
		return perr
	}
	there := *loc
	there.Scheme, there.Host = peer.BaseURL().Scheme, peer.BaseURL().Host
	if perr := p.upload(&there); perr != nil {
		p.cancelUpload(loc)
		perr.Step, perr.Target = StepHandoff, peer.String()
		perr.Detail = strings.TrimPrefix(perr.Detail+"; ", "; ") + "upload opened on " + p.inst.String()
		return p.explain(perr, peer)
	}
	return nil
}

// readOn GETs the probe blob from base and compares the bytes.
func (p *probeRun) readOn(step, target string, base *url.URL) *ProbeError {
	u := *base
	u.Path = "/v2/" + p.repo + "/blobs/" + p.digest
	r, err := p.c.do(p.ctx, http.MethodGet, &u, nil, nil, true, int64(max(len(p.blob), maxErrorBody)))
	if err != nil {
		perr := p.transportFail(step, http.MethodGet, &u, err)
		perr.Target = target
		return perr
	}
	if r.status != http.StatusOK {
		perr := fail(step, http.MethodGet, &u, r)
		perr.Target = target
		perr.Detail = strings.TrimPrefix(perr.Detail+"; ", "; ") + "written through " + p.inst.String()
		return perr
	}
	if !bytes.Equal(r.body, p.blob) {
		sum := sha256.Sum256(r.body)
		return &ProbeError{Step: step, Target: target, Method: http.MethodGet, Path: u.EscapedPath(), Status: r.status,
			Code: CodeBlobMismatch, Detail: fmt.Sprintf("read %d bytes (sha256:%s), wrote %d (%s) through %s",
				len(r.body), hex.EncodeToString(sum[:]), len(p.blob), p.digest, p.inst)}
	}
	return nil
}
