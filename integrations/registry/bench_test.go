package registry_test

import (
	"context"
	"testing"

	"poolbot/integrations/registry"
	regtest "poolbot/internal/testenv/registry"
)

// BenchmarkProbe runs the full write-then-read probe (POST, PATCH, PUT,
// HEAD, GET, DELETE; six fresh connections) against a real local registry.
func BenchmarkProbe(b *testing.B) {
	ri := regtest.Start(b, regtest.Options{})
	c := newClient(b, testConfig(), registry.Options{})
	inst := target("restricted", ri)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := c.Probe(ctx, inst, ""); !res.OK {
			b.Fatal(res)
		}
	}
}

// BenchmarkHealth is one /debug/health plus /v2/ check.
func BenchmarkHealth(b *testing.B) {
	ri := regtest.Start(b, regtest.Options{})
	c := newClient(b, testConfig(), registry.Options{})
	inst := target("restricted", ri)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Health(ctx, inst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseErrors(b *testing.B) {
	body := []byte(`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":{"Path":"/docker/registry/v2/repositories/poolbot/probe/_uploads/0b1c/startedat","DriverName":"filesystem"}}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := registry.ParseErrors(body); err != nil {
			b.Fatal(err)
		}
	}
}
