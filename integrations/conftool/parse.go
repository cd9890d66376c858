package conftool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Object is one object printed by `confctl ... get`.
type Object struct {
	// Name is the object's name: the datacenter, for discovery objects.
	Name string
	// Tags is confctl's tag string, e.g. "dnsdisc=apus".
	Tags string
	State
}

// Tag returns the value of tag key in o.Tags ("" if absent).
func (o Object) Tag(key string) string {
	for _, kv := range strings.Split(o.Tags, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// maxObjects bounds how many objects a get may print.
const maxObjects = 1000

// ParseGetOutput parses the output of `confctl ... get`: one JSON object per
// line, {"<name>": {"pooled": true, "references": [], "ttl": 300}, "tags":
// "dnsdisc=apus"}. Blank lines are skipped; anything else is an error. The
// object's fields are validated like a stored value (pooled must be a
// boolean). A line holds exactly one object and one tags string.
func ParseGetOutput(out []byte) ([]Object, error) {
	var objects []Object
	for lineNo, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(objects) >= maxObjects {
			return nil, fmt.Errorf("more than %d objects", maxObjects)
		}
		obj, err := parseGetLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", lineNo+1, truncate(string(line), 120), err)
		}
		objects = append(objects, obj)
	}
	return objects, nil
}

func parseGetLine(line []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil {
		return Object{}, fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return Object{}, errors.New("not a JSON object")
	}
	var (
		obj               Object
		haveTags, haveObj bool
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Object{}, fmt.Errorf("not JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return Object{}, errors.New("not JSON: object key is not a string")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return Object{}, fmt.Errorf("not JSON: %w", err)
		}
		switch {
		case key == "tags" && len(raw) > 0 && raw[0] == '"':
			if haveTags {
				return Object{}, errors.New(`"tags" appears twice`)
			}
			if err := json.Unmarshal(raw, &obj.Tags); err != nil {
				return Object{}, fmt.Errorf("tags: %w", err)
			}
			haveTags = true
		case len(raw) > 0 && raw[0] == '{':
			if haveObj {
				return Object{}, fmt.Errorf("more than one object in a line (%q and %q)", obj.Name, key)
			}
			st, err := decodeValue(raw)
			if err != nil {
				return Object{}, fmt.Errorf("object %q: %w", key, err)
			}
			obj.Name, obj.State, haveObj = key, st, true
		default:
			return Object{}, fmt.Errorf("unexpected field %q: %s", key, truncate(string(raw), 40))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return Object{}, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Object{}, errors.New("trailing data after the JSON object")
	}
	if !haveObj {
		return Object{}, errors.New("no object in line")
	}
	if !haveTags {
		return Object{}, errors.New(`no "tags" in line`)
	}
	return obj, nil
}

// FieldChange is one line of `confctl ... set/...` output, e.g.
// "apus/codfw: pooled changed True => False".
type FieldChange struct {
	Object string // "apus/codfw" (older conftool prints only "codfw")
	Field  string
	From   string // Python's str() of the old value: True, False, 300...
	To     string
}

var setLine = regexp.MustCompile(`^(\S+): (\S+) changed (.*) => (.*)$`)

// ParseSetOutput parses the output of a set action. A set that changes
// nothing prints an empty line. Lines that are not field changes are
// returned in unexpected (e.g. a confirmation prompt).
func ParseSetOutput(out []byte) (changes []FieldChange, unexpected []string) {
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := setLine.FindStringSubmatch(line)
		if m == nil {
			unexpected = append(unexpected, line)
			continue
		}
		changes = append(changes, FieldChange{Object: m[1], Field: m[2], From: m[3], To: m[4]})
	}
	return changes, unexpected
}
