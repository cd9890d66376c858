package ceph

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The helpers below are a small S3 client for tests: they create buckets
// and look at what a registry stored, path-style and signed with AWS
// signature version 2, which RGW accepts. (The registry itself signs with
// version 4; this client only inspects.)

// CreateBucket creates bucket (PUT /<bucket>). An existing bucket owned by
// the site's user is fine.
func (s *Site) CreateBucket(ctx context.Context, bucket string) error {
	status, body, err := s.do(ctx, http.MethodPut, "/"+bucket, nil, nil)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("create bucket %s on %s: HTTP %d: %s", bucket, s.Name, status, body)
	}
	return nil
}

// PutObject stores data at bucket/key.
func (s *Site) PutObject(ctx context.Context, bucket, key string, data []byte) error {
	status, body, err := s.do(ctx, http.MethodPut, "/"+bucket+"/"+key, nil, data)
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("put %s/%s on %s: HTTP %d: %s", bucket, key, s.Name, status, body)
	}
	return nil
}

// GetObject returns the object at bucket/key; found is false on 404.
func (s *Site) GetObject(ctx context.Context, bucket, key string) (data []byte, found bool, err error) {
	status, body, err := s.do(ctx, http.MethodGet, "/"+bucket+"/"+key, nil, nil)
	if err != nil {
		return nil, false, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	switch status {
	case http.StatusOK:
		return body, true, nil
	case http.StatusNotFound:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("get %s/%s on %s: HTTP %d: %s", bucket, key, s.Name, status, body)
}

// ListObjects returns the keys in bucket that start with prefix.
func (s *Site) ListObjects(ctx context.Context, bucket, prefix string) ([]string, error) {
	var keys []string
	marker := ""
	for {
		q := url.Values{"prefix": {prefix}}
		if marker != "" {
			q.Set("marker", marker)
		}
		status, body, err := s.do(ctx, http.MethodGet, "/"+bucket+"/", q, nil)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", bucket, err)
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("list %s on %s: HTTP %d: %s", bucket, s.Name, status, body)
		}
		var res struct {
			IsTruncated bool
			Contents    []struct{ Key string }
		}
		if err := xml.Unmarshal(body, &res); err != nil {
			return nil, fmt.Errorf("list %s on %s: %w", bucket, s.Name, err)
		}
		for _, c := range res.Contents {
			keys = append(keys, c.Key)
		}
		if !res.IsTruncated || len(res.Contents) == 0 {
			return keys, nil
		}
		marker = res.Contents[len(res.Contents)-1].Key
	}
}

// do sends one signed request to the gateway and reads the whole answer.
func (s *Site) do(ctx context.Context, method, path string, query url.Values, body []byte) (int, []byte, error) {
	u := s.Endpoint() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	date := time.Now().UTC().Format(http.TimeFormat)
	req.Header.Set("Date", date)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	// StringToSign = Method \n Content-MD5 \n Content-Type \n Date \n resource
	toSign := strings.Join([]string{method, "", req.Header.Get("Content-Type"), date, path}, "\n")
	mac := hmac.New(sha1.New, []byte(s.SecretKey))
	mac.Write([]byte(toSign))
	req.Header.Set("Authorization", "AWS "+s.AccessKey+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}
