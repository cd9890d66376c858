package registry_test

import (
	"context"
	"strings"
	"testing"

	regtest "poolbot/internal/testenv/registry"
)

// The registry on real S3 (Ceph RGW) is tested in testenv/apus; here only
// the configuration checks, which need no server.
func TestS3OptionsAreChecked(t *testing.T) {
	good := regtest.S3Storage{RegionEndpoint: "http://apus.discovery.wmnet:7480", Bucket: "b", AccessKey: "a", SecretKey: "s"}
	for name, mutate := range map[string]func(*regtest.S3Storage){
		"no scheme":  func(s *regtest.S3Storage) { s.RegionEndpoint = "apus.discovery.wmnet:7480" },
		"path":       func(s *regtest.S3Storage) { s.RegionEndpoint = "http://apus.discovery.wmnet/x" },
		"no bucket":  func(s *regtest.S3Storage) { s.Bucket = "" },
		"newline":    func(s *regtest.S3Storage) { s.SecretKey = "s\nstorage: {}" },
		"no keys":    func(s *regtest.S3Storage) { s.AccessKey = "" },
		"ftp scheme": func(s *regtest.S3Storage) { s.RegionEndpoint = "ftp://apus" },
	} {
		s := good
		mutate(&s)
		_, err := regtest.Launch(context.Background(), regtest.Options{Binary: "/bin/true", S3: &s})
		if err == nil || !strings.HasPrefix(err.Error(), "registry s3: ") {
			t.Errorf("%s: Launch = %v, want a registry s3 error", name, err)
		}
	}
}
