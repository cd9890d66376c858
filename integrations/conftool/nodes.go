package conftool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Node objects: the load-balancer (pybal/LVS) pool membership of one host,
// conftool entity "node" with tags dc, cluster, service, stored at
//
//	<prefix>/pools/<dc>/<cluster>/<service>/<fqdn>
//
// holding {"pooled": "yes|no|inactive", "weight": N} (reference §4). The
// registry roll-restart cookbook depools a host's node objects around its
// restart with spicerack's change_and_revert("pooled", "yes", "no",
// name=host) and repools them only when the restart succeeded.

// Node pooled values.
const (
	NodePooledYes      = "yes"
	NodePooledNo       = "no"
	NodePooledInactive = "inactive"
)

// ErrNoNode: the host has no node object in any of the selected pools
// (spicerack's "No match found").
var ErrNoNode = errors.New("no conftool node object matches")

// Pool selects one load-balancer pool: the node tags dc, cluster, service.
type Pool struct {
	DC      string `yaml:"dc"`
	Cluster string `yaml:"cluster"`
	Service string `yaml:"service"`
}

// Validate checks the tags with the same rule as service names (no regex
// metacharacters, safe in a key path and a confctl selector).
func (p Pool) Validate() error {
	for _, f := range []struct{ kind, v string }{{"dc", p.DC}, {"cluster", p.Cluster}, {"service", p.Service}} {
		if err := ValidateName(f.kind, f.v); err != nil {
			return err
		}
	}
	return nil
}

// Selector is confctl's selector for the node object of host in the pool:
// "dc=codfw,cluster=apus,service=apus,name=moss-fe2001.codfw.wmnet".
func (p Pool) Selector(host string) string {
	return fmt.Sprintf("dc=%s,cluster=%s,service=%s,name=%s", p.DC, p.Cluster, p.Service, host)
}

// Node is one node object as read.
type Node struct {
	Pool   Pool
	Host   string
	Pooled string // yes, no or inactive
	Weight int
	// ModifiedIndex is etcd's index of the key; SetNodePooled writes with a
	// compare-and-swap on it.
	ModifiedIndex uint64
}

// hostPattern is what a node name (a host's FQDN) must match: DNS labels
// with dots, no regex metacharacters but the dot, which confctl's anchored
// regex would read as "any character" — harmless for real FQDNs, and the
// etcd backend does not use regexes at all.
var hostPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// ValidateHost checks a node name.
func ValidateHost(host string) error {
	if len(host) > 253 || !hostPattern.MatchString(host) {
		return fmt.Errorf("%w: host %q is not a lower-case DNS name", ErrInvalidName, host)
	}
	return nil
}

func (e *Etcd) nodeKey(p Pool, host string) string {
	return e.prefix + "/pools/" + p.DC + "/" + p.Cluster + "/" + p.Service + "/" + host
}

// NodeKey is the etcd key of host's node object in pool (for messages).
func (e *Etcd) NodeKey(p Pool, host string) string { return e.nodeKey(p, host) }

type nodeValue struct {
	Pooled *string `json:"pooled"`
	Weight *int    `json:"weight"`
}

func decodeNode(key string, raw []byte) (pooled string, weight int, err error) {
	var v nodeValue
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", 0, fmt.Errorf("conftool: node %s: value is not a JSON object: %s", key, truncate(string(raw), 80))
	}
	if v.Pooled == nil {
		return "", 0, fmt.Errorf("conftool: node %s: value has no pooled field: %s", key, truncate(string(raw), 80))
	}
	if err := checkNodePooled(*v.Pooled); err != nil {
		return "", 0, fmt.Errorf("conftool: node %s: %w", key, err)
	}
	if v.Weight != nil {
		weight = *v.Weight
	}
	return *v.Pooled, weight, nil
}

func checkNodePooled(v string) error {
	switch v {
	case NodePooledYes, NodePooledNo, NodePooledInactive:
		return nil
	}
	return fmt.Errorf("pooled must be yes, no or inactive, not %q", v)
}

// Nodes returns host's node objects in the pools where it has one, in the
// order of pools. A host in none of them is ErrNoNode.
func (e *Etcd) Nodes(ctx context.Context, pools []Pool, host string) ([]Node, error) {
	if err := ValidateHost(host); err != nil {
		return nil, fmt.Errorf("conftool: nodes: %w", err)
	}
	var out []Node
	for _, p := range pools {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("conftool: nodes: %w", err)
		}
		key := e.nodeKey(p, host)
		n, err := e.GetKey(ctx, key, false)
		if isEtcdCode(err, etcdErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("conftool: node %s: %w", key, err)
		}
		pooled, weight, err := decodeNode(key, []byte(n.Value))
		if err != nil {
			return nil, err
		}
		out = append(out, Node{Pool: p, Host: host, Pooled: pooled, Weight: weight, ModifiedIndex: n.ModifiedIndex})
	}
	if len(out) == 0 {
		sel := make([]string, len(pools))
		for i, p := range pools {
			sel[i] = p.Selector(host)
		}
		return nil, fmt.Errorf("%w: %s", ErrNoNode, strings.Join(sel, " | "))
	}
	return out, nil
}

// SetNodePooled sets pooled on host's node object in pool, merging the
// field into the stored JSON like conftool (other fields kept), with a
// compare-and-swap on the index it read, retried a few times if others
// write meanwhile. It returns the node as written.
func (e *Etcd) SetNodePooled(ctx context.Context, p Pool, host, pooled string) (Node, error) {
	if err := ValidateHost(host); err != nil {
		return Node{}, fmt.Errorf("conftool: set node: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Node{}, fmt.Errorf("conftool: set node: %w", err)
	}
	if err := checkNodePooled(pooled); err != nil {
		return Node{}, fmt.Errorf("conftool: set node %s: %w", p.Selector(host), err)
	}
	key := e.nodeKey(p, host)
	for range 5 {
		cur, err := e.GetKey(ctx, key, false)
		if isEtcdCode(err, etcdErrKeyNotFound) {
			// conftool never creates objects on set; neither does poolbot.
			return Node{}, fmt.Errorf("%w: %s (deleted meanwhile)", ErrNoNode, key)
		}
		if err != nil {
			return Node{}, fmt.Errorf("conftool: node %s: %w", key, err)
		}
		if _, _, err := decodeNode(key, []byte(cur.Value)); err != nil {
			return Node{}, err
		}
		merged, err := mergeNodePooled([]byte(cur.Value), pooled)
		if err != nil {
			return Node{}, fmt.Errorf("conftool: node %s: %w", key, err)
		}
		written, err := e.SetKey(ctx, key, string(merged), WriteCond{PrevIndex: cur.ModifiedIndex})
		if isEtcdCode(err, etcdErrCompareFailed) {
			continue
		}
		if err != nil {
			return Node{}, fmt.Errorf("conftool: node %s: %w", key, err)
		}
		got, weight, err := decodeNode(key, []byte(written.Value))
		if err != nil {
			return Node{}, err
		}
		if got != pooled {
			return Node{}, fmt.Errorf("%w: node %s reads pooled=%s after setting %s", ErrVerify, key, got, pooled)
		}
		return Node{Pool: p, Host: host, Pooled: got, Weight: weight, ModifiedIndex: written.ModifiedIndex}, nil
	}
	return Node{}, fmt.Errorf("%w: node %s changed under every write attempt", ErrConflict, key)
}

func mergeNodePooled(stored []byte, pooled string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stored, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("stored value is not a JSON object: %s", truncate(string(stored), 80))
	}
	q, _ := json.Marshal(pooled)
	fields["pooled"] = q
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
