package conftool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Node objects through confctl: `--object-type node select
// 'dc=<dc>,cluster=<cluster>,service=<service>,name=<host>' get|set/pooled=…`.
// A selector value is an anchored regex; the host's dots match any
// character, so every answer is checked to be exactly the host asked for,
// and a set runs only after a get selected exactly one object (confctl
// would prompt for several).

// Nodes implements the node reads on the confctl backend, like
// (*Etcd).Nodes.
func (c *Confctl) Nodes(ctx context.Context, pools []Pool, host string) ([]Node, error) {
	if err := ValidateHost(host); err != nil {
		return nil, fmt.Errorf("conftool: nodes: %w", err)
	}
	var out []Node
	var sels []string
	for _, p := range pools {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("conftool: nodes: %w", err)
		}
		sels = append(sels, p.Selector(host))
		n, found, err := c.getNode(ctx, p, host)
		if err != nil {
			return nil, err
		}
		if found {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, strings.Join(sels, " | "))
	}
	return out, nil
}

// SetNodePooled implements the node write on the confctl backend: check
// that the selector picks exactly this node, set, read back.
func (c *Confctl) SetNodePooled(ctx context.Context, p Pool, host, pooled string) (Node, error) {
	if err := ValidateHost(host); err != nil {
		return Node{}, fmt.Errorf("conftool: set node: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Node{}, fmt.Errorf("conftool: set node: %w", err)
	}
	sel := p.Selector(host)
	if err := checkNodePooled(pooled); err != nil {
		return Node{}, fmt.Errorf("conftool: set node %s: %w", sel, err)
	}
	if _, found, err := c.getNode(ctx, p, host); err != nil {
		return Node{}, err
	} else if !found {
		return Node{}, fmt.Errorf("%w: %s", ErrNoNode, sel)
	}
	if _, err := c.runFor(ctx, "node", sel, "set/pooled="+pooled); err != nil {
		return Node{}, fmt.Errorf("conftool: set node %s: %w", sel, err)
	}
	n, found, err := c.getNode(ctx, p, host)
	if err != nil {
		return Node{}, fmt.Errorf("conftool: set node %s: read-back: %w", sel, err)
	}
	if !found || n.Pooled != pooled {
		return Node{}, fmt.Errorf("%w: node %s reads pooled=%s after setting %s", ErrVerify, sel, n.Pooled, pooled)
	}
	return n, nil
}

// getNode reads the one node object of host in pool; found is false when
// confctl selected none.
func (c *Confctl) getNode(ctx context.Context, p Pool, host string) (Node, bool, error) {
	sel := p.Selector(host)
	out, err := c.runFor(ctx, "node", sel, "get")
	if err != nil {
		return Node{}, false, fmt.Errorf("conftool: node %s: %w", sel, err)
	}
	nodes, err := parseNodeGetOutput(out)
	if err != nil {
		return Node{}, false, fmt.Errorf("%w: unexpected output of confctl --object-type node select %s get: %v", ErrVerify, sel, err)
	}
	wantTags := fmt.Sprintf("dc=%s,cluster=%s,service=%s", p.DC, p.Cluster, p.Service)
	switch len(nodes) {
	case 0:
		return Node{}, false, nil
	case 1:
		n := nodes[0]
		if n.name != host || !sameTags(n.tags, wantTags) {
			return Node{}, false, fmt.Errorf("%w: confctl select %s returned node %q with tags %q", ErrVerify, sel, n.name, n.tags)
		}
		return Node{Pool: p, Host: host, Pooled: n.pooled, Weight: n.weight}, true, nil
	}
	return Node{}, false, fmt.Errorf("%w: confctl selected %d nodes for %s, want exactly one", ErrVerify, len(nodes), sel)
}

// sameTags compares confctl tag strings regardless of order.
func sameTags(a, b string) bool {
	as, bs := strings.Split(a, ","), strings.Split(b, ",")
	if len(as) != len(bs) {
		return false
	}
	seen := map[string]bool{}
	for _, t := range as {
		seen[t] = true
	}
	for _, t := range bs {
		if !seen[t] {
			return false
		}
	}
	return true
}

type confctlNode struct {
	name, tags, pooled string
	weight             int
}

// parseNodeGetOutput parses `confctl --object-type node ... get`: one JSON
// object per line, {"<fqdn>": {"pooled": "yes", "weight": 10}, "tags":
// "dc=codfw,cluster=apus,service=apus"}.
func parseNodeGetOutput(out []byte) ([]confctlNode, error) {
	var nodes []confctlNode
	for lineNo, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(nodes) >= maxObjects {
			return nil, fmt.Errorf("more than %d objects", maxObjects)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("line %d %q: %w", lineNo+1, truncate(string(line), 120), err)
		}
		var n confctlNode
		if err := json.Unmarshal(raw["tags"], &n.tags); err != nil {
			return nil, fmt.Errorf("line %d: no tags string", lineNo+1)
		}
		delete(raw, "tags")
		if len(raw) != 1 {
			return nil, fmt.Errorf("line %d: %d objects on one line, want 1", lineNo+1, len(raw))
		}
		for name, v := range raw {
			pooled, weight, err := decodeNode(name, v)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
			}
			n.name, n.pooled, n.weight = name, pooled, weight
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
