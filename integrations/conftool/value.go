package conftool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Schema defaults of conftool's discovery entity, applied to fields missing
// from a stored value, as conftool does.
const (
	defaultTTL = 300
)

// decodeValue parses a stored discovery value. It is strict about the types
// poolbot relies on (pooled must be a JSON boolean, ttl an integer) and fills
// in schema defaults for missing fields. Unknown fields are ignored here; the
// write path keeps them (mergePooled).
func decodeValue(raw []byte) (State, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return State{}, fmt.Errorf("value is not a JSON object: %w", err)
	}
	if fields == nil {
		return State{}, errors.New("value is not a JSON object: null")
	}
	return stateFromFields(fields)
}

func stateFromFields(fields map[string]json.RawMessage) (State, error) {
	st := State{TTL: defaultTTL, References: []string{}}
	if raw, ok := fields["pooled"]; ok {
		// Only true/false: conftool refuses anything else for a bool field,
		// and a string "yes" here would mean someone wrote a node-style value.
		switch string(bytes.TrimSpace(raw)) {
		case "true":
			st.Pooled = true
		case "false":
			st.Pooled = false
		default:
			return State{}, fmt.Errorf("pooled is %s, not a JSON boolean", truncate(string(raw), 40))
		}
	}
	if raw, ok := fields["ttl"]; ok {
		if t := bytes.TrimSpace(raw); len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
			return State{}, fmt.Errorf("ttl is %s, not a number", truncate(string(raw), 40))
		}
		var ttl json.Number
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&ttl); err != nil {
			return State{}, fmt.Errorf("ttl is %s, not a number", truncate(string(raw), 40))
		}
		n, err := ttl.Int64()
		if err != nil || n < 0 || n > 1<<31-1 {
			return State{}, fmt.Errorf("ttl is %s, not a non-negative integer", truncate(string(raw), 40))
		}
		st.TTL = int(n)
	}
	if raw, ok := fields["references"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		var refs []json.RawMessage
		if err := json.Unmarshal(raw, &refs); err != nil {
			return State{}, fmt.Errorf("references is %s, not a list", truncate(string(raw), 40))
		}
		for _, r := range refs {
			var s string
			if json.Unmarshal(r, &s) != nil {
				// conftool's list type does not constrain elements; keep a
				// non-string element readable rather than failing the read.
				s = string(r)
			}
			st.References = append(st.References, s)
		}
	}
	return st, nil
}

// mergePooled returns stored with its "pooled" field set to pooled, keeping
// every other field (known or not) as it was, the way conftool merges a
// change into the stored JSON. The stored value must decode (a value poolbot
// cannot read is left for a human rather than overwritten).
func mergePooled(stored []byte, pooled bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stored, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("stored value is not a JSON object: %s", truncate(string(stored), 80))
	}
	if _, err := stateFromFields(fields); err != nil {
		return nil, fmt.Errorf("stored value %s: %w", truncate(string(stored), 80), err)
	}
	fields["pooled"] = json.RawMessage(fmt.Sprint(pooled))
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep unknown string fields byte-for-byte readable
	if err := enc.Encode(fields); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
