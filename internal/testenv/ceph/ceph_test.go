package ceph_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ceph"
	"poolbot/internal/testenv/registry"
)

// TestTwoSitesHaveTheirOwnData starts two sites on one port at two loopback
// addresses and shows that an object written to one is not in the other.
func TestTwoSitesHaveTheirOwnData(t *testing.T) {
	ctx := context.Background()
	// Addresses of their own (127.R.R.1 and .2): lab worlds of other tests
	// use 127.0.0.2 and up.
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	hostA, hostB := fmt.Sprintf("127.%d.%d.1", r[0]|1, r[1]), fmt.Sprintf("127.%d.%d.2", r[0]|1, r[1])
	l, err := net.Listen("tcp", hostA+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	eqiad := ceph.Start(t, ceph.Options{Name: "eqiad", Host: hostA, Port: port, Buckets: []string{"registry-test"}})
	codfw := ceph.Start(t, ceph.Options{Name: "codfw", Host: hostB, Port: port, Buckets: []string{"registry-test"}})

	if err := eqiad.PutObject(ctx, "registry-test", "a/b/data", []byte("eqiad only")); err != nil {
		t.Fatal(err)
	}
	got, found, err := eqiad.GetObject(ctx, "registry-test", "a/b/data")
	if err != nil || !found || string(got) != "eqiad only" {
		t.Fatalf("eqiad get = %q %v %v", got, found, err)
	}
	if _, found, err := codfw.GetObject(ctx, "registry-test", "a/b/data"); err != nil || found {
		t.Fatalf("codfw has eqiad's object: found=%v err=%v", found, err)
	}
	keys, err := eqiad.ListObjects(ctx, "registry-test", "a/")
	if err != nil || len(keys) != 1 || keys[0] != "a/b/data" {
		t.Fatalf("eqiad list = %v %v", keys, err)
	}
	if keys, err := codfw.ListObjects(ctx, "registry-test", ""); err != nil || len(keys) != 0 {
		t.Fatalf("codfw list = %v %v", keys, err)
	}

	// A registry with the site's address as its endpoint (no name to
	// resolve, no namespace needed) stores a pushed blob in the bucket.
	reg := registry.Start(t, registry.Options{S3: &registry.S3Storage{
		RegionEndpoint: eqiad.Endpoint(), Bucket: "registry-test", AccessKey: eqiad.AccessKey, SecretKey: eqiad.SecretKey,
	}})
	blob := []byte("a layer stored in eqiad")
	var p registry.Pusher
	if err := p.PushBlob(ctx, reg.URL(), "lab/direct", blob); err != nil {
		t.Fatalf("push to a registry on eqiad: %v", err)
	}
	hex := strings.TrimPrefix(registry.Digest(blob), "sha256:")
	if got, found, err := eqiad.GetObject(ctx, "registry-test", "docker/registry/v2/blobs/sha256/"+hex[:2]+"/"+hex+"/data"); err != nil || !found || !bytes.Equal(got, blob) {
		t.Fatalf("pushed blob in eqiad's bucket: %q %v %v", got, found, err)
	}

	// A wrong secret is refused by the gateway: the credentials are checked.
	bad := *codfw
	bad.SecretKey = "wrong"
	if err := bad.PutObject(ctx, "registry-test", "x", []byte("x")); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("put with a wrong secret: %v", err)
	}

	// Site down: the gateway stops, connections are refused; it comes back
	// with the data (the cluster kept running).
	if err := eqiad.StopGateway(); err != nil {
		t.Fatal(err)
	}
	c := net.Dialer{Timeout: time.Second}
	if conn, err := c.Dial("tcp", eqiad.Addr); err == nil {
		conn.Close()
		t.Fatal("stopped gateway still accepts connections")
	}
	if err := eqiad.StartGateway(ctx); err != nil {
		t.Fatal(err)
	}
	if got, found, err := eqiad.GetObject(ctx, "registry-test", "a/b/data"); err != nil || !found || !bytes.Equal(got, []byte("eqiad only")) {
		t.Fatalf("after gateway restart: %q %v %v", got, found, err)
	}

	// Frozen: TCP connects, nothing answers.
	if err := codfw.FreezeGateway(); err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := cl.Get(codfw.Endpoint() + "/"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("frozen gateway answered: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	if err := codfw.ThawGateway(); err != nil {
		t.Fatal(err)
	}
	if _, err := codfw.ListObjects(ctx, "registry-test", ""); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSiteStart measures a site's start (monitor, OSD, gateway, user,
// one bucket) and the RSS of its daemons right after.
//
//	go test ./internal/testenv/ceph/ -run '^$' -bench SiteStart -benchtime 1x
func BenchmarkSiteStart(b *testing.B) {
	for _, bin := range ceph.Binaries {
		testenv.Need(b, bin)
	}
	var rss int64
	for i := 0; i < b.N; i++ {
		s, err := ceph.Launch(context.Background(), ceph.Options{Name: "bench" + strconv.Itoa(i), Buckets: []string{"registry-bench"}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		for _, pid := range s.PIDs() {
			n, err := testenv.RSS(pid)
			if err != nil {
				b.Fatal(err)
			}
			rss += n
		}
		s.Close()
		if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
			b.Fatalf("Close left %s", s.Dir)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(rss)/float64(b.N)/(1<<20), "MiB-RSS/site")
}
