package registry

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// validate rejects an S3 configuration the registry would refuse or
// misread, with a one-line error.
func (s *S3Storage) validate() error {
	u, err := url.Parse(s.RegionEndpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return fmt.Errorf("registry s3: regionendpoint %q is not an http(s)://host[:port] URL", s.RegionEndpoint)
	}
	if s.Bucket == "" || s.AccessKey == "" || s.SecretKey == "" {
		return errors.New("registry s3: bucket, accesskey and secretkey are required")
	}
	for _, v := range []string{s.RegionEndpoint, s.Region, s.Bucket, s.AccessKey, s.SecretKey, s.RootDirectory} {
		if strings.ContainsAny(v, "\n\r\x00") {
			return errors.New("registry s3: a value contains a line break or NUL")
		}
	}
	return nil
}

// storageConfig is the storage driver part of config.yml, indented under
// `storage:`. For S3 it is WMF's (profile::docker_registry): path-style
// requests, v4 signatures, region us-west-1, redirects off so that blobs
// are served through the registry rather than from S3 URLs; `secure`
// follows the endpoint's scheme.
func (i *Instance) storageConfig() string {
	if i.s3 == nil {
		return fmt.Sprintf("  filesystem:\n    rootdirectory: %q\n", filepath.Join(i.StorageDir, "registry"))
	}
	s := i.s3
	region := s.Region
	if region == "" {
		region = "us-west-1"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  s3:\n    regionendpoint: %q\n    region: %q\n    bucket: %q\n    accesskey: %q\n    secretkey: %q\n",
		s.RegionEndpoint, region, s.Bucket, s.AccessKey, s.SecretKey)
	fmt.Fprintf(&b, "    forcepathstyle: true\n    secure: %t\n    v4auth: true\n", strings.HasPrefix(s.RegionEndpoint, "https:"))
	if s.RootDirectory != "" {
		fmt.Fprintf(&b, "    rootdirectory: %q\n", s.RootDirectory)
	}
	b.WriteString("  redirect:\n    disable: true\n")
	return b.String()
}

// S3 is the instance's S3 storage configuration, nil on the filesystem.
func (i *Instance) S3() *S3Storage { return i.s3 }

// errS3 is returned by the helpers that act on a filesystem storage.
func (i *Instance) errS3(what string) error {
	if i.s3 != nil {
		return fmt.Errorf("registry %s: %s works on filesystem storage; this instance uses s3 at %s", i.Addr, what, i.s3.RegionEndpoint)
	}
	return nil
}
