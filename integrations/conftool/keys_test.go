package conftool

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRawKeyInputRefusedBeforeAnyRequest(t *testing.T) {
	// No server behind it: every call must fail on its input alone.
	e := newEtcdClient(t, EtcdConfig{Endpoints: []string{"http://127.0.0.1:1"}})
	ctx := context.Background()
	for _, key := range []string{"relative", "/a//b", "/a/../b", "/a?x=1", "/a\nb"} {
		if _, err := e.GetKey(ctx, key, false); err == nil || !strings.Contains(err.Error(), "etcd key") && !strings.Contains(err.Error(), "segments") {
			t.Errorf("GetKey(%q): %v", key, err)
		}
	}
	for _, ttl := range []time.Duration{-time.Second, 500 * time.Millisecond, 1500 * time.Millisecond} {
		if _, err := e.SetKey(ctx, "/a", "v", WriteCond{TTL: ttl}); err == nil || !strings.Contains(err.Error(), "whole seconds") {
			t.Errorf("SetKey ttl %s: %v", ttl, err)
		}
	}
	if _, err := e.SetKey(ctx, "/a", "v", WriteCond{PrevIndex: 3, MustNotExist: true}); err == nil {
		t.Error("PrevIndex with MustNotExist accepted")
	}
}
