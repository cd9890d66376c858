package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// unknownKeys walks the YAML document against the Go type it will be
// decoded into and reports every key the type does not have, and every
// duration that does not parse, with its line. The decoder's strict mode
// stops at the first one; an operator fixing a config wants them all.
func unknownKeys(data []byte, t reflect.Type) ([]string, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, doc := range file.Docs {
		if doc.Body != nil {
			walk(doc.Body, t, "", &problems)
		}
	}
	return problems, nil
}

func walk(n ast.Node, t reflect.Type, path string, problems *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := n.(type) {
	case *ast.TagNode:
		walk(v.Value, t, path, problems)
		return
	case *ast.AnchorNode:
		walk(v.Value, t, path, problems)
		return
	}
	if t == reflect.TypeFor[time.Duration]() {
		// The decoder's duration error carries no position; say where.
		if sc, ok := n.(ast.ScalarNode); ok {
			if v, isStr := sc.GetValue().(string); isStr {
				if _, err := time.ParseDuration(v); err != nil {
					*problems = append(*problems, fmt.Sprintf("line %d: %s: %q is not a duration (use e.g. 90s, 5m, 2h)",
						n.GetToken().Position.Line, path, v))
				}
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return // a type error, which the decoder reports
		}
		fields := yamlFields(t)
		for _, mv := range m.Values {
			key := mv.Key.GetToken().Value
			if mv.Key.IsMergeKey() {
				continue
			}
			ft, ok := fields[key]
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				slices.Sort(known)
				*problems = append(*problems, fmt.Sprintf("line %d: unknown key %q%s (known keys: %s)",
					mv.Key.GetToken().Position.Line, key, in(path), strings.Join(known, ", ")))
				continue
			}
			walk(mv.Value, ft, join(path, key), problems)
		}
	case reflect.Map:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return
		}
		for _, mv := range m.Values {
			walk(mv.Value, t.Elem(), join(path, mv.Key.GetToken().Value), problems)
		}
	case reflect.Slice, reflect.Array:
		s, ok := n.(*ast.SequenceNode)
		if !ok {
			return
		}
		for i, e := range s.Values {
			walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), problems)
		}
	}
}

// yamlFields maps the YAML keys of a struct type to their field types,
// following inlined embedded structs.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func in(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}
