package config

import (
	"errors"
	"fmt"
	pathpkg "path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// checkKeys walks the parsed YAML against the Go type it will be decoded
// into and reports every key the type does not have, and every duration
// that does not parse, with its line. The decoder's strict mode stops at
// the first one; an operator fixing a config wants them all. Each entry
// reported is removed from the tree, so the rest can still be decoded and
// validated.
func checkKeys(file *ast.File, t reflect.Type) []string {
	var problems []string
	for _, doc := range file.Docs {
		if doc.Body != nil {
			walk(doc.Body, t, "", &problems)
		}
	}
	return problems
}

// walk checks n as a value of type t at key path path. It reports whether
// n itself cannot be decoded, for the mapping entry holding it to be
// removed.
func walk(n ast.Node, t reflect.Type, path string, problems *[]string) (bad bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := n.(type) {
	case *ast.TagNode:
		return walk(v.Value, t, path, problems)
	case *ast.AnchorNode:
		return walk(v.Value, t, path, problems)
	}
	if t == reflect.TypeFor[time.Duration]() {
		// The decoder's duration error carries no position; say where.
		if sc, ok := n.(ast.ScalarNode); ok {
			if v, isStr := sc.GetValue().(string); isStr {
				if _, err := time.ParseDuration(v); err != nil {
					*problems = append(*problems, fmt.Sprintf("line %d: %s: %q is not a duration (use e.g. 90s, 5m, 2h)",
						n.GetToken().Position.Line, path, v))
					return true
				}
			}
		}
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return false // a type error, which the decoder reports
		}
		fields := yamlFields(t)
		m.Values = slices.DeleteFunc(m.Values, func(mv *ast.MappingValueNode) bool {
			key := mv.Key.GetToken().Value
			if mv.Key.IsMergeKey() {
				return false
			}
			ft, ok := fields[key]
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				slices.Sort(known)
				if now, ok := retired(join(path, key)); ok {
					*problems = append(*problems, fmt.Sprintf("line %d: %s is no longer read: %s",
						mv.Key.GetToken().Position.Line, join(path, key), now))
					return true
				}
				*problems = append(*problems, fmt.Sprintf("line %d: unknown key %q%s (known keys: %s)",
					mv.Key.GetToken().Position.Line, key, in(path), strings.Join(known, ", ")))
				return true
			}
			return walk(mv.Value, ft, join(path, key), problems)
		})
	case reflect.Map:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return false
		}
		m.Values = slices.DeleteFunc(m.Values, func(mv *ast.MappingValueNode) bool {
			return walk(mv.Value, t.Elem(), join(path, mv.Key.GetToken().Value), problems)
		})
	case reflect.Slice, reflect.Array:
		s, ok := n.(*ast.SequenceNode)
		if !ok {
			return false
		}
		for i, e := range s.Values {
			// A bad element takes its whole list out.
			bad = walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), problems) || bad
		}
	}
	return bad
}

// decodeAll decodes body into a fresh value from newValue, strictly. A
// decoding error at a known place (a list where a number belongs, ...) is
// recorded with its line and key path, the entry is removed, and decoding
// starts again, so that every such problem is reported and the rest is
// still decoded. It returns nil when an error cannot be located (the
// error is recorded too).
func decodeAll[T any](body ast.Node, newValue func() *T, p *Problems) *T {
	for {
		v := newValue()
		if body == nil {
			return v
		}
		err := yaml.NodeToValue(body, v, yaml.Strict())
		if err == nil {
			return v
		}
		var yerr yaml.Error
		if errors.As(err, &yerr) && yerr.GetToken() != nil {
			if path, _, removed := prune(body, yerr.GetToken(), ""); removed {
				p.add("line %d: %s: %s", yerr.GetToken().Position.Line, path, decodeMessage(err))
				continue
			}
		}
		p.add("%s", oneLine(err))
		return nil
	}
}

// prune removes the innermost mapping entry that holds tok from the tree
// under n and returns its key path. found without removed: tok is in n
// but n is not a mapping entry (a list, a scalar), for the caller to
// remove the entry holding n.
func prune(n ast.Node, tok *token.Token, path string) (at string, found, removed bool) {
	switch v := n.(type) {
	case *ast.TagNode:
		return prune(v.Value, tok, path)
	case *ast.AnchorNode:
		return prune(v.Value, tok, path)
	case *ast.MappingNode:
		for i, mv := range v.Values {
			p := join(path, mv.Key.GetToken().Value)
			at, found, removed := prune(mv.Value, tok, p)
			if !found && (sameToken(mv.Key.GetToken(), tok) || sameToken(mv.GetToken(), tok)) {
				at, found = p, true
			}
			if found {
				if !removed {
					v.Values = slices.Delete(v.Values, i, i+1)
				}
				return at, true, true
			}
		}
	case *ast.SequenceNode:
		for i, e := range v.Values {
			if at, found, removed := prune(e, tok, fmt.Sprintf("%s[%d]", path, i)); found {
				if removed {
					return at, true, true
				}
				return path, true, false
			}
		}
	}
	if n != nil && sameToken(n.GetToken(), tok) {
		return path, true, false
	}
	return "", false, false
}

func sameToken(a, b *token.Token) bool {
	if a == nil || b == nil {
		return false
	}
	return a == b || a.Position.Offset == b.Position.Offset && a.Position.Line == b.Position.Line &&
		a.Position.Column == b.Position.Column
}

// decodeMessage is the decoder's message without its position and source
// excerpt, in YAML's terms where it was Go's.
func decodeMessage(err error) string {
	var terr *yaml.TypeError
	if errors.As(err, &terr) && terr.DstType != nil && terr.SrcType != nil {
		return fmt.Sprintf("%s where %s is expected", yamlKind(terr.SrcType), yamlKind(terr.DstType))
	}
	var yerr yaml.Error
	if errors.As(err, &yerr) {
		return yerr.GetMessage()
	}
	return oneLine(err)
}

// yamlKind names what a value of type t looks like in YAML, with "a".
func yamlKind(t reflect.Type) string {
	a := func(s string) string {
		if strings.ContainsAny(s[:1], "aeiou") {
			return "an " + s
		}
		return "a " + s
	}
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration (e.g. 90s, 5m, 2h)"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return a("mapping")
	case reflect.Slice, reflect.Array:
		return a("list")
	case reflect.Bool:
		return a("boolean (true or false)")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a("integer")
	case reflect.Float32, reflect.Float64:
		return a("number")
	case reflect.String:
		return a("string")
	}
	return a(t.String())
}

// oneLine is a YAML error as "line N: message", without the source
// excerpt that would break the one-problem-a-line list.
func oneLine(err error) string {
	var yerr yaml.Error
	if errors.As(err, &yerr) {
		if tk := yerr.GetToken(); tk != nil {
			return fmt.Sprintf("line %d: %s", tk.Position.Line, yerr.GetMessage())
		}
		return yerr.GetMessage()
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// keyLines maps every key path in the file ("chat.irc.nick",
// "operators[0].name", "services.apus.datacenters[1]") to its line.
func keyLines(file *ast.File) map[string]int {
	lines := map[string]int{}
	var walk func(n ast.Node, path string)
	walk = func(n ast.Node, path string) {
		switch v := n.(type) {
		case *ast.TagNode:
			walk(v.Value, path)
		case *ast.AnchorNode:
			walk(v.Value, path)
		case *ast.MappingNode:
			for _, mv := range v.Values {
				p := join(path, mv.Key.GetToken().Value)
				lines[p] = mv.Key.GetToken().Position.Line
				walk(mv.Value, p)
			}
		case *ast.SequenceNode:
			for i, e := range v.Values {
				p := fmt.Sprintf("%s[%d]", path, i)
				if tk := e.GetToken(); tk != nil {
					lines[p] = tk.Position.Line
				}
				walk(e, p)
			}
		}
	}
	for _, doc := range file.Docs {
		if doc.Body != nil {
			walk(doc.Body, "")
		}
	}
	return lines
}

// leadingKey is the key path a problem starts with: "chat.irc.nick" in
// "chat.irc.nick: required", "operators[1]" in "operators[1] (bob): ...".
var leadingKey = regexp.MustCompile(`^[a-z0-9_]+(?:\.[a-z0-9_*-]+|\[[0-9]+\])*`)

// withLines puts "line N: " before each problem whose key path is in the
// file, unless it already says its line.
func withLines(problems []string, lines map[string]int) {
	for i, pr := range problems {
		if strings.HasPrefix(pr, "line ") {
			continue
		}
		if n, ok := lines[leadingKey.FindString(pr)]; ok {
			problems[i] = fmt.Sprintf("line %d: %s", n, pr)
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

// retiredKeys are keys earlier versions read, as path patterns ('*' is
// one key, e.g. a service name), with what replaces them. A config that
// still sets one is refused with that advice, not with a bare "unknown
// key", and not silently mapped: the meaning of a security setting must
// be read by the operator who moves it.
var retiredKeys = []struct{ pattern, now string }{
	{"scap.channel.relay_nicks", "set logmsgbot.nicks (one relay rule for the scap gate and the drift watch)"},
	{"scap.channel.relay_accounts", "set logmsgbot.accounts (one relay rule for the scap gate and the drift watch)"},
	{"watch.drift.relay_nicks", "set logmsgbot.nicks (one relay rule for the scap gate and the drift watch)"},
	{"watch.drift.relay_accounts", "set logmsgbot.accounts (one relay rule for the scap gate and the drift watch)"},
	// Every secret is named one way: {file: …} or {env: …}.
	{"conftool.etcd.password_file", "set conftool.etcd.password: {file: …}"},
	{"conftool.etcd.password_env", "set conftool.etcd.password: {env: …}"},
	{"services.*.registry.auth.password_file", "set auth.password: {file: …}"},
	{"services.*.restart.ssh.passphrase_file", "set ssh.passphrase: {file: …}"},
	{"scap.spiderpig.cookie_file", "set scap.spiderpig.cookie: {file: …}"},
	{"scap.spiderpig.cookie_env", "set scap.spiderpig.cookie: {env: …}"},
	{"scap.spiderpig.token_file", "set scap.spiderpig.token: {file: …}"},
	{"scap.spiderpig.token_env", "set scap.spiderpig.token: {env: …}"},
}

// retired returns the advice for a retired key path.
func retired(keyPath string) (string, bool) {
	p := strings.ReplaceAll(keyPath, ".", "/")
	for _, r := range retiredKeys {
		if ok, _ := pathpkg.Match(strings.ReplaceAll(r.pattern, ".", "/"), p); ok {
			return r.now, true
		}
	}
	return "", false
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
