package config

import (
	"encoding"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The example documents every key of Config: each dotted key path of the
// configuration types (nested structs, list elements as "[]", map entries
// as "*") appears in config.example.yaml with a comment of its own.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range undocumentedKeys(t, reflect.TypeFor[Config](), data) {
		t.Errorf("config.example.yaml: %s", p)
	}
}

// The check itself: a key added to a type without an example entry, or
// with an entry but no comment, is reported; secrets (yaml:"-") are not.
func TestUndocumentedKeysCheck(t *testing.T) {
	type inner struct {
		Port int `yaml:"port"`
		Name string
	}
	type item struct {
		Name string `yaml:"name"`
		Port int    `yaml:"port"`
	}
	type synthetic struct {
		Documented string           `yaml:"documented"`
		Added      string           `yaml:"added"`
		NoComment  string           `yaml:"no_comment,omitempty"`
		Secret     string           `yaml:"-"`
		Wait       time.Duration    `yaml:"wait"`
		Section    *inner           `yaml:"section"`
		Items      []item           `yaml:"items"`
		Flow       []item           `yaml:"flow"`
		Byname     map[string]inner `yaml:"byname"`
		EmptyMap   map[string]inner `yaml:"empty_map"`
		unexported string
	}
	_ = synthetic{}.unexported
	example := `
# Documented.
documented: x
no_comment: y
wait: 1s # a duration is a leaf
# A section.
section:
  port: 1 # the port
  name: x
# A list.
items:
  - name: a # element name
    # element port
    port: 1
  - name: b
# The name of each entry.
flow:
  - {name: a, port: 1}
# A map.
byname:
  one:
    port: 1 # port
    name: n # name
# No entries.
empty_map: {}
`
	got := undocumentedKeys(t, reflect.TypeFor[synthetic](), []byte(example))
	want := []string{
		`added: not in the example`,
		`no_comment (line 4): no comment`,
		`section.name (line 9): no comment`,
		`flow[].port (line 18): no comment`,
		`empty_map.*: not in the example (no entry to show its keys)`,
		`empty_map.*.port: not in the example`,
		`empty_map.*.name: not in the example`,
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("undocumentedKeys:\n got  %q\n want %q", got, want)
	}
}

// schemaKeys lists the dotted key paths of t in field order. A list of
// structs contributes "key[]" and its elements' keys; a map contributes
// "key.*" and, for struct values, their keys. Types decoded from a scalar
// (durations, times, text unmarshalers) are leaves.
func schemaKeys(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if isLeaf(t) {
			return
		}
		switch t.Kind() {
		case reflect.Struct:
			for _, f := range structKeys(t) {
				p := join(path, f.name)
				out = append(out, p)
				walk(f.typ, p)
			}
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), path+"[]")
		case reflect.Map:
			p := path + ".*"
			out = append(out, p)
			walk(t.Elem(), p)
		}
	}
	walk(t, "")
	return out
}

type structKey struct {
	name string
	typ  reflect.Type
}

// structKeys is yamlFields in declaration order.
func structKeys(t reflect.Type) []structKey {
	var out []structKey
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, structKeys(ft)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, structKey{name, f.Type})
	}
	return out
}

func isLeaf(t reflect.Type) bool {
	if t == reflect.TypeFor[time.Duration]() || t == reflect.TypeFor[time.Time]() {
		return true
	}
	pt := reflect.PointerTo(t)
	for _, i := range []reflect.Type{
		reflect.TypeFor[yaml.BytesUnmarshaler](),
		reflect.TypeFor[yaml.InterfaceUnmarshaler](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	} {
		if t.Implements(i) || pt.Implements(i) {
			return true
		}
	}
	return false
}

// exampleKey is what the example says about one key path.
type exampleKey struct {
	line       int  // of the first occurrence
	documented bool // some occurrence has a comment
}

// undocumentedKeys checks the example data against the type t and returns
// one line per key path that is missing or has no comment.
//
// A key is documented by a comment above it or at the end of its line. A
// key inside a flow mapping ("{name: a, port: 1}") cannot carry a comment
// of its own: it is documented when the comment of the flow mapping or of
// the nearest enclosing block key names it.
func undocumentedKeys(t *testing.T, typ reflect.Type, data []byte) []string {
	t.Helper()
	file, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		t.Fatalf("parse example: %v", err)
	}
	found := map[string]*exampleKey{}
	for _, doc := range file.Docs {
		if doc.Body != nil {
			collectKeys(doc.Body, typ, "", "", found)
		}
	}
	var out []string
	for _, p := range schemaKeys(typ) {
		k, ok := found[p]
		switch {
		case !ok && strings.HasSuffix(p, ".*"):
			out = append(out, p+": not in the example (no entry to show its keys)")
		case !ok:
			out = append(out, p+": not in the example")
		case !k.documented && !strings.HasSuffix(p, ".*"):
			// A map entry's key is a name (a service), not a
			// documented key; the map's own key carries the comment.
			out = append(out, fmt.Sprintf("%s (line %d): no comment", p, k.line))
		}
	}
	return out
}

// collectKeys walks n as a value of type t at key path path; context is
// the comment text that documents keys of a flow mapping found here.
func collectKeys(n ast.Node, t reflect.Type, path, context string, found map[string]*exampleKey) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := n.(type) {
	case *ast.TagNode:
		collectKeys(v.Value, t, path, context, found)
		return
	case *ast.AnchorNode:
		collectKeys(v.Value, t, path, context, found)
		return
	}
	if isLeaf(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return
		}
		fields := yamlFields(t)
		flow := m.IsFlowStyle
		if flow {
			context += " " + commentText(m)
		}
		for _, mv := range m.Values {
			name := mv.Key.GetToken().Value
			ft, ok := fields[name]
			if !ok {
				continue // an unknown key: Parse reports it
			}
			p := join(path, name)
			own := commentText(mv) + " " + commentText(mv.Key)
			if mv.Value != nil && !isBlockCollection(mv.Value) {
				own += " " + commentText(mv.Value)
			}
			doc := strings.TrimSpace(own) != ""
			if flow {
				doc = mentions(context+" "+own, name)
			}
			k := found[p]
			if k == nil {
				k = &exampleKey{line: mv.Key.GetToken().Position.Line}
				found[p] = k
			}
			k.documented = k.documented || doc
			next := context
			if !flow {
				next = own
			}
			collectKeys(mv.Value, ft, p, next, found)
		}
	case reflect.Slice, reflect.Array:
		s, ok := n.(*ast.SequenceNode)
		if !ok {
			return
		}
		for _, e := range s.Values {
			collectKeys(e, t.Elem(), path+"[]", context, found)
		}
	case reflect.Map:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return
		}
		p := path + ".*"
		for _, mv := range m.Values {
			if found[p] == nil {
				found[p] = &exampleKey{line: mv.Key.GetToken().Position.Line}
			}
			collectKeys(mv.Value, t.Elem(), p, context, found)
		}
	}
}

// isBlockCollection reports whether n is a mapping or sequence in block
// style, whose comment belongs to its first entry rather than to the key.
func isBlockCollection(n ast.Node) bool {
	switch v := n.(type) {
	case *ast.MappingNode:
		return !v.IsFlowStyle
	case *ast.SequenceNode:
		return !v.IsFlowStyle
	}
	return false
}

func commentText(n ast.Node) string {
	if n == nil {
		return ""
	}
	c := n.GetComment()
	if c == nil {
		return ""
	}
	return c.String()
}

// mentions reports whether comment names key as a word.
func mentions(comment, key string) bool {
	return regexp.MustCompile(`(^|[^a-z0-9_])` + regexp.QuoteMeta(key) + `($|[^a-z0-9_])`).MatchString(comment)
}
