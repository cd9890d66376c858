package apus_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/registry"
)

// The two sites are started once for the package and shared: every test
// pushes random blobs to its own repository.
var shared apus.Shared

func TestMain(m *testing.M) { os.Exit(shared.Close(m.Run())) }

func sites(t *testing.T) *apus.Apus { return shared.Sites(t) }

// host is one registry host: a registry on apus whose view of the discovery
// name is its own hosts file.
type host struct {
	name  string
	reg   *registry.Instance
	hosts *apus.HostsFile
}

func startHost(t *testing.T, a *apus.Apus, name, dc string, opts registry.Options) *host {
	t.Helper()
	hf, err := apus.NewHostsFile(t.TempDir(), name, apus.Name, a.Address(dc))
	if err != nil {
		t.Fatal(err)
	}
	opts.S3 = a.RegistryS3()
	opts.Wrapper = hf.Wrapper()
	return &host{name: name, reg: registry.Start(t, opts), hosts: hf}
}

func randomLayer(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 4096)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// blobKey is where distribution stores a blob's data in the bucket.
func blobKey(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return "docker/registry/v2/blobs/sha256/" + hex[:2] + "/" + hex + "/data"
}

// siteHolding says which sites hold the blob.
func siteHolding(t *testing.T, a *apus.Apus, digest string) []string {
	t.Helper()
	var dcs []string
	for _, dc := range apus.DCs {
		keys, err := a.Blobs(context.Background(), dc)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(keys, blobKey(digest)) {
			dcs = append(dcs, dc)
		}
	}
	return dcs
}

func TestPushLandsInTheResolvedSite(t *testing.T) {
	a := sites(t)
	ctx := context.Background()
	for _, dc := range apus.DCs {
		h := startHost(t, a, "registry-"+dc, dc, registry.Options{})
		layer := randomLayer(t)
		var p registry.Pusher
		if _, err := p.PushImage(ctx, h.reg.URL(), "lab/"+dc, "v1", layer); err != nil {
			t.Fatalf("push through the registry resolving %s to %s: %v\n%s", apus.Name, dc, err, h.reg.LogTail(2048))
		}
		if got := siteHolding(t, a, registry.Digest(layer)); !slices.Equal(got, []string{dc}) {
			t.Fatalf("layer pushed through a registry on %s is in %v", dc, got)
		}
	}
}

// TestUploadContinuedOnTheOtherSiteIsUnknown is T422166's mechanism: a
// blob upload opened (POST) on a registry whose S3 is eqiad and continued
// (PATCH) on one whose S3 is codfw. The upload state token verifies (shared
// http.secret), but the session's startedat object is not in codfw's
// bucket, so the registry answers 404 BLOB_UPLOAD_UNKNOWN. The control:
// another registry on the same site continues it fine.
func TestUploadContinuedOnTheOtherSiteIsUnknown(t *testing.T) {
	a := sites(t)
	ctx := context.Background()
	eqiad1 := startHost(t, a, "registry1001", "eqiad", registry.Options{})
	eqiad2 := startHost(t, a, "registry1002", "eqiad", registry.Options{})
	codfw := startHost(t, a, "registry2001", "codfw", registry.Options{})

	to := func(h *host) func(*url.URL) *url.URL {
		return func(loc *url.URL) *url.URL {
			u := *loc
			u.Host = h.reg.Addr
			return &u
		}
	}
	// Control: same site, other host.
	layer := randomLayer(t)
	p := registry.Pusher{}
	loc, err := p.StartUpload(ctx, eqiad1.reg.URL(), "lab/split")
	if err != nil {
		t.Fatal(err)
	}
	p.Rebase = to(eqiad2)
	if loc, err = p.UploadChunk(ctx, loc, layer); err != nil {
		t.Fatalf("PATCH on another host of the same site: %v", err)
	}
	if err := p.CompleteUpload(ctx, loc, registry.Digest(layer)); err != nil {
		t.Fatalf("PUT on another host of the same site: %v", err)
	}

	// Split: POST on eqiad, PATCH on codfw.
	p = registry.Pusher{}
	if loc, err = p.StartUpload(ctx, eqiad1.reg.URL(), "lab/split"); err != nil {
		t.Fatal(err)
	}
	p.Rebase = to(codfw)
	_, err = p.UploadChunk(ctx, loc, randomLayer(t))
	var pe *registry.PushError
	if !errors.As(err, &pe) || pe.Status != 404 || pe.Code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("PATCH on the other site: %v, want 404 BLOB_UPLOAD_UNKNOWN", err)
	}
	t.Logf("the registry's answer: %v", err)

	// PUT (monolithic close) on the other site fails the same way.
	p = registry.Pusher{}
	if loc, err = p.StartUpload(ctx, eqiad1.reg.URL(), "lab/split"); err != nil {
		t.Fatal(err)
	}
	p.Rebase = to(codfw)
	err = p.CompleteUpload(ctx, loc, registry.Digest(nil))
	if !errors.As(err, &pe) || pe.Status != 404 || pe.Code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("PUT on the other site: %v, want 404 BLOB_UPLOAD_UNKNOWN", err)
	}
}
