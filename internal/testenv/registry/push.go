package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// A Pusher pushes images with the registry HTTP API the way docker and
// docker-pusher do: for each blob a chunked upload (POST to open the
// session, PATCH with the data, PUT ?digest= to close it), then the
// manifest. Every request is its own HTTP request, so behind a load
// balancer they may reach different hosts, as in production.
type Pusher struct {
	// Client sends the requests; nil means a client without keep-alive (so
	// a load balancer sees every request as a new connection).
	Client *http.Client
	// Rebase, when set, rewrites each upload Location before it is used:
	// tests use it to continue an upload on another registry than the one
	// that opened it.
	Rebase func(loc *url.URL) *url.URL
}

// PushError is a failed push request; Body holds the registry's answer,
// e.g. {"errors":[{"code":"BLOB_UPLOAD_UNKNOWN",...}]}.
type PushError struct {
	Step   string // start_upload, upload_chunk, complete_upload, put_manifest
	Method string
	Path   string
	Status int
	Body   string
	Err    error
}

func (e *PushError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s %s: %v", e.Step, e.Method, e.Path, e.Err)
	}
	return fmt.Sprintf("%s: %s %s: HTTP %d: %s", e.Step, e.Method, e.Path, e.Status, strings.TrimSpace(e.Body))
}

func (e *PushError) Unwrap() error { return e.Err }

// Code is the first registry error code in the answer (BLOB_UPLOAD_UNKNOWN,
// ...), empty if there is none.
func (e *PushError) Code() string {
	var body struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal([]byte(e.Body), &body) != nil || len(body.Errors) == 0 {
		return ""
	}
	return body.Errors[0].Code
}

// Digest is the OCI digest of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// PushImage pushes a one-layer image to base (e.g. http://127.0.0.1:5000)
// as repo:tag: the layer, a config blob, then the manifest. It returns the
// manifest's digest.
func (p *Pusher) PushImage(ctx context.Context, base, repo, tag string, layer []byte) (string, error) {
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%q]}}`, Digest(layer))
	for _, blob := range [][]byte{layer, config} {
		if err := p.PushBlob(ctx, base, repo, blob); err != nil {
			return "", err
		}
	}
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		Digest(config), len(config), Digest(layer), len(layer))
	u := base + "/v2/" + repo + "/manifests/" + tag
	h := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	resp, body, err := p.do(ctx, http.MethodPut, u, manifest, h)
	if err != nil {
		return "", &PushError{Step: "put_manifest", Method: http.MethodPut, Path: pathOf(u), Err: err}
	}
	if resp.StatusCode != http.StatusCreated {
		return "", &PushError{Step: "put_manifest", Method: http.MethodPut, Path: pathOf(u), Status: resp.StatusCode, Body: body}
	}
	return Digest(manifest), nil
}

// PushBlob uploads data to repo with POST, PATCH and PUT.
func (p *Pusher) PushBlob(ctx context.Context, base, repo string, data []byte) error {
	loc, err := p.StartUpload(ctx, base, repo)
	if err != nil {
		return err
	}
	if loc, err = p.UploadChunk(ctx, loc, data); err != nil {
		return err
	}
	return p.CompleteUpload(ctx, loc, Digest(data))
}

// StartUpload opens an upload session (POST /v2/<repo>/blobs/uploads/ →
// 202) and returns its Location.
func (p *Pusher) StartUpload(ctx context.Context, base, repo string) (*url.URL, error) {
	u := base + "/v2/" + repo + "/blobs/uploads/"
	resp, body, err := p.do(ctx, http.MethodPost, u, nil, http.Header{"Content-Length": {"0"}})
	if err != nil {
		return nil, &PushError{Step: "start_upload", Method: http.MethodPost, Path: pathOf(u), Err: err}
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, &PushError{Step: "start_upload", Method: http.MethodPost, Path: pathOf(u), Status: resp.StatusCode, Body: body}
	}
	return p.location(resp, "start_upload")
}

// UploadChunk sends data as the first chunk (PATCH <loc>, Content-Range
// 0-<n-1> → 202) and returns the next Location.
func (p *Pusher) UploadChunk(ctx context.Context, loc *url.URL, data []byte) (*url.URL, error) {
	loc = p.rebase(loc)
	h := http.Header{"Content-Type": {"application/octet-stream"}, "Content-Range": {fmt.Sprintf("0-%d", len(data)-1)}}
	resp, body, err := p.do(ctx, http.MethodPatch, loc.String(), data, h)
	if err != nil {
		return nil, &PushError{Step: "upload_chunk", Method: http.MethodPatch, Path: loc.Path, Err: err}
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, &PushError{Step: "upload_chunk", Method: http.MethodPatch, Path: loc.Path, Status: resp.StatusCode, Body: body}
	}
	return p.location(resp, "upload_chunk")
}

// CompleteUpload closes the session (PUT <loc>&digest=<d> → 201).
func (p *Pusher) CompleteUpload(ctx context.Context, loc *url.URL, digest string) error {
	u := *p.rebase(loc)
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	resp, body, err := p.do(ctx, http.MethodPut, u.String(), nil, nil)
	if err != nil {
		return &PushError{Step: "complete_upload", Method: http.MethodPut, Path: u.Path, Err: err}
	}
	if resp.StatusCode != http.StatusCreated {
		return &PushError{Step: "complete_upload", Method: http.MethodPut, Path: u.Path, Status: resp.StatusCode, Body: body}
	}
	return nil
}

func (p *Pusher) rebase(loc *url.URL) *url.URL {
	if p.Rebase != nil {
		return p.Rebase(loc)
	}
	return loc
}

func (p *Pusher) location(resp *http.Response, step string) (*url.URL, error) {
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path == "" {
		return nil, &PushError{Step: step, Method: resp.Request.Method, Path: resp.Request.URL.Path, Status: resp.StatusCode,
			Err: fmt.Errorf("bad Location %q", resp.Header.Get("Location"))}
	}
	return loc, nil
}

// noKeepAlive is the default client: each request a new connection.
func noKeepAlive() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func (p *Pusher) do(ctx context.Context, method, u string, body []byte, h http.Header) (*http.Response, string, error) {
	c := p.Client
	if c == nil {
		c = noKeepAlive()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.ContentLength = int64(len(body))
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, "", err
	}
	return resp, string(b), nil
}

func pathOf(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Path
	}
	return u
}
