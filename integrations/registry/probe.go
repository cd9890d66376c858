package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"poolbot"
)

// Probe steps: the request that failed.
const (
	StepValidate       = "validate"        // repository name / instance checks
	StepPrepare        = "prepare"         // making the random blob
	StepStartUpload    = "start_upload"    // POST /v2/<repo>/blobs/uploads/
	StepUploadChunk    = "upload_chunk"    // PATCH <location>
	StepCompleteUpload = "complete_upload" // PUT <location>&digest=
	StepCheckBlob      = "check_blob"      // HEAD /v2/<repo>/blobs/<digest>
	StepFetchBlob      = "fetch_blob"      // GET /v2/<repo>/blobs/<digest>
	// Across hosts (ProbeAcross): an upload opened on the probed instance
	// continued on another host's; the blob read on another host's
	// instance; the blob read through the load balancer.
	StepHandoff      = "handoff"       // POST here, PATCH and PUT <location> there
	StepReadPeer     = "read_peer"     // GET /v2/<repo>/blobs/<digest> on another host
	StepReadBalancer = "read_balancer" // GET /v2/<repo>/blobs/<digest> through registry.balancer_url
)

// ProbeResult is the outcome of one write-then-read probe.
type ProbeResult struct {
	Instance   Instance
	Repository string
	// Digest of the probe blob ("sha256:<hex>"), empty if none was made.
	Digest string
	OK     bool
	// Code is CodeOK, a registry error code (BLOB_UPLOAD_UNKNOWN, ...) or one
	// of our lower-case codes (network, timeout, http_5xx, blob_mismatch, ...).
	Code string
	// Step is the step that failed (empty when OK).
	Step string
	// Status is the HTTP status of the failing request, 0 if none.
	Status int
	// Err is a *ProbeError when the probe failed.
	Err      error
	Duration time.Duration
	// Deleted reports that the probe blob was deleted afterwards.
	Deleted bool
	// Targets are the peers and the balancer ProbeAcross tried after the
	// probed instance's own write and read passed, in order.
	Targets []TargetResult
}

// String is a one-line summary fit for chat.
func (r ProbeResult) String() string {
	if r.OK {
		return fmt.Sprintf("registry %s: write-then-read probe ok in %s", r.Instance, poolbot.FormatDuration(r.Duration))
	}
	return fmt.Sprintf("registry %s: write-then-read probe FAILED (%s) after %s: %v", r.Instance, r.Code, poolbot.FormatDuration(r.Duration), r.Err)
}

// ProbeError describes the failed step of a probe.
type ProbeError struct {
	Step string
	Code string
	// Target is where the failing request went when that is not the
	// probed instance: another host's instance or the load balancer.
	Target string
	Method string
	// Path is the request path (no query: the upload state token is noise).
	Path     string
	Status   int
	Registry []RegistryError
	// Body is the registry's answer as it came (whitespace at the ends
	// trimmed, control characters made spaces, long ones cut in the
	// middle so the cause at the end stays): what the FAILED notice
	// quotes, e.g. {"errors":[{"code":"BLOB_UPLOAD_UNKNOWN",...}]}.
	Body   string
	Detail string
	Err    error
}

func (e *ProbeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Step)
	if e.Target != "" {
		fmt.Fprintf(&b, " on %s", e.Target)
	}
	if e.Method != "" {
		fmt.Fprintf(&b, ": %s %s", e.Method, e.Path)
	}
	fmt.Fprintf(&b, ": %s", e.Code)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	switch {
	case e.Body != "":
		b.WriteString(": ")
		b.WriteString(e.Body)
	case len(e.Registry) > 0:
		b.WriteString(": ")
		b.WriteString(summarizeErrors(e.Registry))
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *ProbeError) Unwrap() error { return e.Err }

// probeRun carries one probe's state between steps.
type probeRun struct {
	c      *Client
	ctx    context.Context
	inst   Instance
	repo   string
	blob   []byte
	digest string
}

// Probe pushes a fresh random blob to repo on inst with the blob-push
// protocol (POST, PATCH, PUT), reads it back (HEAD, GET), compares it, and
// deletes it (best effort). repo "" means the instance's probe repository or
// probe.repository. The whole probe is bounded by probe.timeout.
func (c *Client) Probe(ctx context.Context, inst Instance, repo string) ProbeResult {
	start := c.clock.Now()
	if repo == "" {
		repo = inst.ProbeRepository
	}
	if repo == "" {
		repo = c.cfg.Probe.Repository
	}
	return c.finishProbe(inst, repo, start, c.probeWith(ctx, inst, repo, nil))
}

// finishProbe fills in the result and logs it.
func (c *Client) finishProbe(inst Instance, repo string, start time.Time, res ProbeResult) ProbeResult {
	res.Instance, res.Repository, res.Duration = inst, repo, c.sinceOn(start)
	var pe *ProbeError
	if errors.As(res.Err, &pe) {
		res.OK, res.Code, res.Step, res.Status = false, pe.Code, pe.Step, pe.Status
		c.log.Warn("registry probe failed", "instance", inst.String(), "repository", repo,
			"code", res.Code, "step", res.Step, "status", res.Status, "duration", res.Duration, "err", res.Err)
	} else {
		res.OK, res.Code = true, CodeOK
		c.log.Info("registry probe ok", "instance", inst.String(), "repository", repo,
			"digest", res.Digest, "duration", res.Duration, "deleted", res.Deleted)
	}
	return res
}

// probeWith writes and reads back the blob on inst, then runs more (nil:
// nothing more) before the blob is deleted.
func (c *Client) probeWith(ctx context.Context, inst Instance, repo string, more func(*probeRun) *ProbeError) ProbeResult {
	if err := inst.validate(); err != nil {
		return ProbeResult{Err: &ProbeError{Step: StepValidate, Code: CodeInternal, Err: err}}
	}
	if err := ValidateRepository(repo); err != nil {
		return ProbeResult{Err: &ProbeError{Step: StepValidate, Code: CodeInvalidRepository, Err: err}}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Probe.Timeout)
	defer cancel()
	blob, err := c.makeBlob(inst)
	if err != nil {
		return ProbeResult{Err: &ProbeError{Step: StepPrepare, Code: CodeInternal, Err: err}}
	}
	sum := sha256.Sum256(blob)
	p := &probeRun{c: c, ctx: ctx, inst: inst, repo: repo, blob: blob, digest: "sha256:" + hex.EncodeToString(sum[:])}
	res := ProbeResult{Digest: p.digest}

	uploadLoc, perr := p.startUpload()
	if perr != nil {
		res.Err = p.explain(perr, inst)
		return res
	}
	if perr := p.upload(uploadLoc); perr != nil {
		p.cancelUpload(uploadLoc)
		res.Err = p.explain(perr, inst)
		return res
	}
	if perr := p.readBack(); perr != nil {
		res.Err = p.explain(perr, inst)
		return res
	}
	if more != nil {
		if perr := more(p); perr != nil {
			res.Err = perr
			if !c.cfg.Probe.KeepBlobs {
				res.Deleted = p.deleteBlob()
			}
			return res
		}
	}
	if !c.cfg.Probe.KeepBlobs {
		res.Deleted = p.deleteBlob()
	}
	return res
}

// explain adds what inst's /debug/health says to an UNAVAILABLE answer:
// the registry answers every request 503 "health check failed: please see
// /debug/health" once its storage check fails, and only that page names
// the cause (for S3: the endpoint and the address it dialled, i.e. which
// apus site is down).
func (p *probeRun) explain(perr *ProbeError, inst Instance) *ProbeError {
	if perr == nil || perr.Code != CodeUnavailable {
		return perr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), min(p.c.cfg.Health.Timeout, cleanupTimeout))
	defer cancel()
	var herr *HealthError
	if err := p.c.checkDebugHealth(ctx, inst); errors.As(err, &herr) && len(herr.Checks) > 0 {
		hs := *herr
		hs.Instance, hs.Err = inst, nil
		perr.Detail = strings.TrimPrefix(perr.Detail+"; ", "; ") + hs.Error()
	}
	return perr
}

// makeBlob returns BlobSize bytes: a readable header naming the probe (so a
// blob found in storage explains itself) over random bytes, with at least 16
// random bytes so every probe writes a blob the registry has never seen.
// A blob the registry already has would short-circuit the write.
func (c *Client) makeBlob(inst Instance) ([]byte, error) {
	n := c.cfg.Probe.BlobSize
	blob := make([]byte, n)
	if _, err := io.ReadFull(c.rand, blob); err != nil {
		return nil, fmt.Errorf("random blob: %w", err)
	}
	header := fmt.Sprintf("poolbot write-then-read probe %s %s\n", inst.Name, c.clock.Now().UTC().Format(time.RFC3339Nano))
	if len(header)+16 <= n {
		copy(blob, header)
	}
	return blob, nil
}

func (p *probeRun) repoURL(elem ...string) *url.URL {
	u := p.inst.BaseURL()
	u.Path = "/v2/" + p.repo + "/" + strings.Join(elem, "/")
	return u
}

// fail builds the ProbeError for an unexpected response.
func fail(step, method string, u *url.URL, r *response) *ProbeError {
	errs, _ := ParseErrors(r.body)
	pe := &ProbeError{Step: step, Method: method, Path: u.EscapedPath(), Status: r.status, Registry: errs,
		Code: classifyStatus(r.status, errs)}
	if method == http.MethodHead && r.status == http.StatusNotFound {
		// HEAD has no body to say so; a 404 on a blob HEAD is "blob unknown".
		pe.Code = CodeBlobUnknown
	}
	pe.Body = quoteBody(r.body)
	return pe
}

func (p *probeRun) transportFail(step, method string, u *url.URL, err error) *ProbeError {
	return &ProbeError{Step: step, Method: method, Path: u.EscapedPath(), Code: transportCode(p.ctx, err), Err: err}
}

// startUpload opens an upload session: POST → 202 with a Location.
func (p *probeRun) startUpload() (*url.URL, *ProbeError) {
	u := p.repoURL("blobs", "uploads", "")
	r, err := p.c.do(p.ctx, http.MethodPost, u, nil, nil, true, maxErrorBody)
	if err != nil {
		return nil, p.transportFail(StepStartUpload, http.MethodPost, u, err)
	}
	if r.status != http.StatusAccepted {
		return nil, fail(StepStartUpload, http.MethodPost, u, r)
	}
	loc, perr := uploadLocation(StepStartUpload, http.MethodPost, u, r)
	if perr != nil {
		return nil, perr
	}
	return loc, nil
}

// uploadLocation resolves the Location of an upload response against the
// request URL (distribution sends it absolute unless relativeurls is set).
func uploadLocation(step, method string, u *url.URL, r *response) (*url.URL, *ProbeError) {
	raw := r.header.Get("Location")
	bad := func(detail string) *ProbeError {
		return &ProbeError{Step: step, Method: method, Path: u.EscapedPath(), Status: r.status, Code: CodeBadResponse, Detail: detail}
	}
	if raw == "" {
		return nil, bad("no Location header")
	}
	loc, err := r.url.Parse(raw)
	if err != nil {
		return nil, bad(fmt.Sprintf("bad Location %q: %v", truncate(raw, 100), err))
	}
	if loc.Scheme != "http" && loc.Scheme != "https" || !strings.Contains(loc.Path, "/blobs/uploads/") {
		return nil, bad(fmt.Sprintf("Location %q is not an upload URL", truncate(raw, 100)))
	}
	return loc, nil
}

// withDigest adds digest=<d> to an upload URL, keeping its _state.
func withDigest(loc *url.URL, digest string) *url.URL {
	u := *loc
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	return &u
}

// upload sends the blob (one PATCH chunk, or in the PUT when monolithic) and
// closes the session with PUT ?digest= → 201.
func (p *probeRun) upload(loc *url.URL) *ProbeError {
	n := len(p.blob)
	octet := http.Header{"Content-Type": {"application/octet-stream"}}
	var putBody []byte
	if p.c.cfg.Probe.Monolithic {
		putBody = p.blob
	} else {
		h := octet.Clone()
		h.Set("Content-Range", fmt.Sprintf("0-%d", n-1))
		r, err := p.c.do(p.ctx, http.MethodPatch, loc, p.blob, h, true, maxErrorBody)
		if err != nil {
			return p.transportFail(StepUploadChunk, http.MethodPatch, loc, err)
		}
		if r.status != http.StatusAccepted {
			return fail(StepUploadChunk, http.MethodPatch, loc, r)
		}
		if got, want := r.header.Get("Range"), fmt.Sprintf("0-%d", n-1); got != want {
			return &ProbeError{Step: StepUploadChunk, Method: http.MethodPatch, Path: loc.EscapedPath(), Status: r.status,
				Code: CodeBadResponse, Detail: chunkRangeDetail(got, want, n)}
		}
		// The new Location carries a _state with the new offset; the old
		// one would now be rejected as resuming at the wrong offset.
		next, perr := uploadLocation(StepUploadChunk, http.MethodPatch, loc, r)
		if perr != nil {
			return perr
		}
		loc = next
	}
	put := withDigest(loc, p.digest)
	var h http.Header
	if putBody != nil {
		h = octet
	}
	r, err := p.c.do(p.ctx, http.MethodPut, put, putBody, h, true, maxErrorBody)
	if err != nil {
		return p.transportFail(StepCompleteUpload, http.MethodPut, put, err)
	}
	if r.status != http.StatusCreated {
		return fail(StepCompleteUpload, http.MethodPut, put, r)
	}
	if got := r.header.Get("Docker-Content-Digest"); got != "" && got != p.digest {
		return &ProbeError{Step: StepCompleteUpload, Method: http.MethodPut, Path: put.EscapedPath(), Status: r.status,
			Code: CodeBlobMismatch, Detail: fmt.Sprintf("registry stored digest %s, sent %s", truncate(got, 80), p.digest)}
	}
	return nil
}

// readBack checks HEAD (size and digest) and GET (the bytes).
func (p *probeRun) readBack() *ProbeError {
	u := p.repoURL("blobs", p.digest)
	mismatch := func(step, method string, status int, format string, args ...any) *ProbeError {
		return &ProbeError{Step: step, Method: method, Path: u.EscapedPath(), Status: status,
			Code: CodeBlobMismatch, Detail: fmt.Sprintf(format, args...)}
	}
	r, err := p.c.do(p.ctx, http.MethodHead, u, nil, nil, true, 0)
	if err != nil {
		return p.transportFail(StepCheckBlob, http.MethodHead, u, err)
	}
	if r.status != http.StatusOK {
		return fail(StepCheckBlob, http.MethodHead, u, r)
	}
	if got := r.header.Get("Docker-Content-Digest"); got != p.digest {
		return mismatch(StepCheckBlob, http.MethodHead, r.status, "Docker-Content-Digest %q, want %s", truncate(got, 80), p.digest)
	}
	if r.contentLength != int64(len(p.blob)) {
		return mismatch(StepCheckBlob, http.MethodHead, r.status, "Content-Length %d, wrote %d bytes", r.contentLength, len(p.blob))
	}

	r, err = p.c.do(p.ctx, http.MethodGet, u, nil, nil, true, int64(max(len(p.blob), maxErrorBody)))
	if err != nil {
		return p.transportFail(StepFetchBlob, http.MethodGet, u, err)
	}
	if r.status != http.StatusOK {
		return fail(StepFetchBlob, http.MethodGet, u, r)
	}
	if len(r.body) != len(p.blob) {
		return mismatch(StepFetchBlob, http.MethodGet, r.status, "read %d bytes, wrote %d", len(r.body), len(p.blob))
	}
	if !bytes.Equal(r.body, p.blob) {
		sum := sha256.Sum256(r.body)
		return mismatch(StepFetchBlob, http.MethodGet, r.status, "read back other bytes (sha256:%s), wrote %s", hex.EncodeToString(sum[:]), p.digest)
	}
	return nil
}

// cleanupTimeout bounds best-effort cleanup requests, which run even when
// the probe's own deadline has passed.
const cleanupTimeout = 5 * time.Second

// cancelUpload abandons a failed upload session so it does not linger in
// storage; failures are only logged (the session may be what is missing).
func (p *probeRun) cancelUpload(loc *url.URL) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), cleanupTimeout)
	defer cancel()
	r, err := p.c.do(ctx, http.MethodDelete, loc, nil, nil, true, maxErrorBody)
	switch {
	case err != nil:
		p.c.log.Debug("registry probe: cancel upload", "instance", p.inst.String(), "err", err)
	case r.status != http.StatusNoContent:
		p.c.log.Debug("registry probe: cancel upload", "instance", p.inst.String(), "status", r.status)
	}
}

// deleteBlob removes the probe blob; registries without storage.delete
// answer 405 UNSUPPORTED, which is fine. It never fails the probe.
func (p *probeRun) deleteBlob() bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), cleanupTimeout)
	defer cancel()
	u := p.repoURL("blobs", p.digest)
	r, err := p.c.do(ctx, http.MethodDelete, u, nil, nil, true, maxErrorBody)
	if err != nil {
		p.c.log.Warn("registry probe: delete blob", "instance", p.inst.String(), "digest", p.digest, "err", err)
		return false
	}
	if r.status == http.StatusAccepted {
		return true
	}
	errs, _ := ParseErrors(r.body)
	if r.status == http.StatusMethodNotAllowed || classifyStatus(r.status, errs) == CodeUnsupported {
		p.c.log.Debug("registry probe: blob deletion disabled", "instance", p.inst.String())
		return false
	}
	p.c.log.Warn("registry probe: delete blob", "instance", p.inst.String(), "digest", p.digest,
		"status", r.status, "errors", summarizeErrors(errs))
	return false
}

// chunkRangeDetail explains a PATCH answer whose Range is not the chunk
// sent. distribution answers 202 even when the chunk did not reach its
// storage: after the PATCH it closes the blob writer, ignores the error
// (with S3, of the UploadPart or of the hash state PUT) and reports the
// size the driver counted, which grows only on a stored part; Range
// "0-0" is its way of saying 0 bytes (or 1). So a shorter Range means a
// storage write failed that the registry does not name, e.g. an S3
// NoSuchUpload for an upload opened in another apus site.
func chunkRangeDetail(got, want string, n int) string {
	var end int
	if _, err := fmt.Sscanf(got, "0-%d", &end); err != nil || fmt.Sprintf("0-%d", end) != got || end >= n-1 {
		return fmt.Sprintf("Range %q after a %d-byte chunk, want %q", got, n, want)
	}
	stored := fmt.Sprintf("%d", end+1)
	if end == 0 {
		stored = "none"
	}
	return fmt.Sprintf("Range %q after a %d-byte chunk, want %q: the registry accepted the chunk but stored %s of its %d bytes, "+
		"so a write to its storage failed and the registry does not say which (with S3: the part upload or the hash state; "+
		"the S3 endpoint's log has the error, e.g. NoSuchUpload for an upload opened in another site)", got, n, want, stored, n)
}
