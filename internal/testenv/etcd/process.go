package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// PID is the etcd process's id (0 when not running), for testenv.RSS.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// GetValue is Get for programs that are not tests: the key's value.
func (s *Server) GetValue(ctx context.Context, key string) (string, error) {
	body, status, err := s.do(ctx, http.MethodGet, "/v2/keys"+key+"?quorum=true", nil)
	if err != nil {
		return "", fmt.Errorf("etcd get %s: %w", key, err)
	}
	var resp struct {
		Node Node `json:"node"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &resp) != nil {
		return "", fmt.Errorf("etcd get %s: status %d: %s", key, status, body)
	}
	return resp.Node.Value, nil
}
