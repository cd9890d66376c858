package conftool

// A stand-in for confctl (Python conftool cannot be installed here). When the
// test binary is started through a symlink named "confctl", TestMain runs
// fakeConfctlMain instead of the tests. It implements the subset of confctl
// poolbot uses, with confctl's argv grammar, output formats and exit codes,
// and keeps its state in the REAL etcd named by its --config file (hosts,
// namespace, api_version, as conftool's config.yaml), reading with quorum and
// writing with compare-and-swap like conftool's etcd driver. It talks to etcd
// with its own plain v2 HTTP calls, independent of the code under test, so
// both backends are exercised against the same store.
//
// Environment (inherited from the test through the code under test):
//   FAKE_CONFCTL_RECORD          append one JSON line per run: argv, and the
//                                SAL line confctl would announce without --quiet
//   FAKE_CONFCTL_DEFAULT_CONFIG  stands in for /etc/conftool/config.yaml
//   FAKE_CONFCTL_MODE            misbehaviour: garbage (get prints non-JSON),
//                                ignore-name (the name selector matches all),
//                                lie (set reports a change but writes nothing),
//                                fail (exit 1 with a CRITICAL log line),
//                                hang (sleep until killed), huge (2 MiB output)

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "confctl" {
		os.Exit(fakeConfctlMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type fakeRecord struct {
	Argv     []string `json:"argv"`
	Announce string   `json:"announce,omitempty"`
}

func fakeConfctlMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	record := fakeRecord{Argv: append([]string{}, args...)}
	defer func() {
		if path := os.Getenv("FAKE_CONFCTL_RECORD"); path != "" {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				b, _ := json.Marshal(record)
				_, _ = f.Write(append(b, '\n'))
				_ = f.Close()
			}
		}
	}()
	usage := func(msg string) int {
		fmt.Fprintln(stderr, "usage: confctl [-h] [--config CONFIG] [--object-type OBJECT_TYPE] [--yaml] [--host] [--debug] [--quiet] [--schema SCHEMA] {tags,find,select} ...")
		fmt.Fprintln(stderr, "confctl: error: "+msg)
		return 2
	}
	mode := os.Getenv("FAKE_CONFCTL_MODE")
	config := os.Getenv("FAKE_CONFCTL_DEFAULT_CONFIG")
	objectType, quiet := "node", false
	i := 0
	for ; i < len(args) && strings.HasPrefix(args[i], "-"); i++ {
		arg := args[i]
		takeValue := func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			return args[i], true
		}
		var ok bool
		switch {
		case arg == "--config":
			if config, ok = takeValue(); !ok {
				return usage("argument --config: expected one argument")
			}
		case strings.HasPrefix(arg, "--config="):
			config = strings.TrimPrefix(arg, "--config=")
		case arg == "--object-type":
			if objectType, ok = takeValue(); !ok {
				return usage("argument --object-type: expected one argument")
			}
		case arg == "--schema":
			if _, ok = takeValue(); !ok {
				return usage("argument --schema: expected one argument")
			}
		case arg == "--quiet":
			quiet = true
		case arg == "--debug", arg == "--host":
		default:
			return usage("unrecognized arguments: " + arg)
		}
	}
	rest := args[i:]
	if len(rest) == 0 {
		return usage("the following arguments are required: mode")
	}
	if rest[0] != "select" {
		return usage("fake confctl implements only the select mode, got " + rest[0])
	}
	if len(rest) < 3 {
		return usage("the following arguments are required: selector, action")
	}
	if len(rest) > 3 {
		return usage("unrecognized arguments: " + strings.Join(rest[3:], " "))
	}
	selector, action := rest[1], rest[2]
	logf := func(level, format string, a ...any) {
		fmt.Fprintf(stderr, "%s:conftool:%s\n", level, fmt.Sprintf(format, a...))
	}

	switch mode {
	case "fail":
		logf("CRITICAL", "Invalid configuration: Backend error: etcd cluster is unavailable or misconfigured")
		return 1
	case "hang":
		time.Sleep(5 * time.Minute)
		return 1
	case "huge":
		line := strings.Repeat("x", 1023) + "\n"
		for range 2048 {
			_, _ = io.WriteString(stdout, line)
		}
		return 0
	}
	if objectType != "discovery" && objectType != "node" {
		logf("CRITICAL", "Object type %s is not available in the current schema", objectType)
		return 1
	}
	store, err := loadFakeStore(config)
	if err != nil {
		logf("CRITICAL", "Invalid configuration: %v", err)
		return 1
	}

	selectors := map[string]*regexp.Regexp{}
	for _, tag := range strings.Split(selector, ",") {
		k, expr, ok := strings.Cut(tag, "=")
		if !ok {
			fmt.Fprintln(stderr, "Traceback (most recent call last):")
			fmt.Fprintln(stderr, "ValueError: not enough values to unpack (expected 2, got 1)")
			return 1
		}
		allowed := map[string]bool{"dnsdisc": true, "name": true}
		if objectType == "node" {
			allowed = map[string]bool{"dc": true, "cluster": true, "service": true, "name": true}
		}
		if !allowed[k] {
			logf("CRITICAL", "Invalid selector tag %s", k)
			return 1
		}
		re, err := regexp.Compile("^" + expr + "$") // conftool anchors every selector
		if err != nil {
			fmt.Fprintln(stderr, "Traceback (most recent call last):")
			fmt.Fprintf(stderr, "re.error: %v\n", err)
			return 1
		}
		selectors[k] = re
	}
	if mode == "ignore-name" {
		delete(selectors, "name")
	}
	query := store.query
	if objectType == "node" {
		query = store.queryNodes
	}
	objects, err := query(selectors)
	if err != nil {
		logf("ERROR", "Error when trying to %s on %s", action, selector)
		logf("ERROR", "Failure writing to the kvstore: %v", err)
		return 1
	}

	switch {
	case action == "get":
		for _, o := range objects {
			if mode == "garbage" {
				fmt.Fprintln(stdout, "Traceback? no: this is not JSON")
				continue
			}
			fmt.Fprintln(stdout, o.pyJSON())
		}
		return 0
	case strings.HasPrefix(action, "set/"):
		if len(objects) > 1 {
			tagHosts := map[string][]string{}
			for _, o := range objects {
				tagHosts["/"+o.service] = append(tagHosts["/"+o.service], o.name)
			}
			b, _ := json.Marshal(tagHosts)
			fmt.Fprintln(stdout, "The selector you chose has selected the following objects:")
			fmt.Fprintln(stdout, string(b))
			fmt.Fprintln(stdout, "Ok to continue? [y/N]")
			fmt.Fprint(stdout, "confctl>")
			answer, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && answer == "" {
				fmt.Fprintln(stderr, "Traceback (most recent call last):")
				fmt.Fprintln(stderr, `  File "/usr/lib/python3/dist-packages/conftool/cli/tool.py", in raise_warning`)
				fmt.Fprintln(stderr, "EOFError: EOF when reading a line")
				return 1
			}
			if strings.ToLower(strings.TrimSpace(answer)) != "y" {
				fmt.Fprintln(stdout, "Aborting")
				return 1
			}
		}
		parse := parseFakeSet
		if objectType == "node" {
			parse = parseFakeNodeSet
		}
		values, err := parse(strings.TrimPrefix(action, "set/"))
		if err != nil {
			logf("ERROR", "Error when trying to %s on %s", action, selector)
			logf("ERROR", "Generic action failure: %v", err)
			return 1
		}
		fail := false
		for _, o := range objects {
			var desc []string
			for _, k := range sortedFakeKeys(values) {
				if cur, ok := o.fields[k]; !ok || string(cur) != string(values[k]) {
					desc = append(desc, fmt.Sprintf("%s/%s: %s changed %s => %s", o.service, o.name, k, pyStr(o.fields[k]), pyStr(values[k])))
				}
			}
			if mode != "lie" {
				if err := store.update(o, values); err != nil {
					logf("ERROR", "Error when trying to %s on %s", action, selector)
					logf("ERROR", "Failure writing to the kvstore: %v", err)
					fail = true
					continue
				}
			}
			fmt.Fprintln(stdout, strings.Join(desc, "\n"))
		}
		if fail {
			return 1
		}
		if !quiet {
			record.Announce = fmt.Sprintf("!log %s@%s conftool action : %s; selector: %s", "poolbot", "testhost", action, selector)
		}
		return 0
	}
	logf("ERROR", "Invalid action, reason: Cannot parse action %s", action)
	return 1
}

// parseFakeSet parses k=v:k2=v2 with the discovery schema's types.
func parseFakeSet(arg string) (map[string]json.RawMessage, error) {
	values := map[string]json.RawMessage{}
	for _, el := range strings.Split(arg, ":") {
		k, v, ok := strings.Cut(strings.TrimSpace(el), "=")
		if !ok {
			return nil, fmt.Errorf("Could not parse set instructions: %s", arg)
		}
		switch k {
		case "pooled":
			switch strings.ToLower(v) {
			case "true":
				values[k] = json.RawMessage("true")
			case "false":
				values[k] = json.RawMessage("false")
			default:
				return nil, fmt.Errorf("Booleans can only be 'true' or 'false'")
			}
		case "ttl":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("invalid literal for int() with base 10: '%s'", v)
			}
			values[k] = json.RawMessage(strconv.Itoa(n))
		case "references":
			b, _ := json.Marshal(strings.Split(v, ","))
			values[k] = b
		default:
			b, _ := json.Marshal(v)
			values[k] = b
		}
	}
	return values, nil
}

func sortedFakeKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pyStr renders a JSON value as Python's str() of the decoded value.
func pyStr(raw json.RawMessage) string {
	switch string(raw) {
	case "true":
		return "True"
	case "false":
		return "False"
	case "", "null":
		return "None"
	}
	return string(raw)
}

type fakeObject struct {
	service, name string
	key           string
	index         uint64
	fields        map[string]json.RawMessage
	// nodeTags is set for node objects: "dc=…,cluster=…,service=…".
	nodeTags string
}

// pyJSON prints the object as conftool's get does (Python json.dumps
// separators, schema fields in schema order).
func (o fakeObject) pyJSON() string {
	get := func(k, def string) string {
		if v, ok := o.fields[k]; ok {
			var x any
			if json.Unmarshal(v, &x) == nil {
				return pyDumps(x)
			}
		}
		return def
	}
	if o.nodeTags != "" {
		return fmt.Sprintf(`{"%s": {"pooled": %s, "weight": %s}, "tags": "%s"}`,
			o.name, get("pooled", `"no"`), get("weight", "0"), o.nodeTags)
	}
	return fmt.Sprintf(`{"%s": {"pooled": %s, "references": %s, "ttl": %s}, "tags": "dnsdisc=%s"}`,
		o.name, get("pooled", "false"), get("references", "[]"), get("ttl", "300"), o.service)
}

func pyDumps(x any) string {
	switch v := x.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = pyDumps(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			kb, _ := json.Marshal(k)
			parts[i] = string(kb) + ": " + pyDumps(v[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	b, _ := json.Marshal(x)
	return string(b)
}

// fakeStore is conftool's etcd driver, reduced to what the fake needs.
type fakeStore struct {
	endpoint string
	base     string // namespace + "/" + api_version
	http     *http.Client
}

func loadFakeStore(path string) (*fakeStore, error) {
	if path == "" {
		path = "/etc/conftool/config.yaml"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The test writes the config as JSON, which is also valid YAML.
	var cfg struct {
		Hosts      []string `json:"hosts"`
		Namespace  string   `json:"namespace"`
		APIVersion string   `json:"api_version"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cfg.Hosts) == 0 {
		return nil, fmt.Errorf("%s: no hosts", path)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "/conftool"
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = "v1"
	}
	return &fakeStore{endpoint: cfg.Hosts[0], base: cfg.Namespace + "/" + cfg.APIVersion,
		http: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (s *fakeStore) call(method, key string, query url.Values, form url.Values) (map[string]json.RawMessage, int, error) {
	u := s.endpoint + "/v2/keys" + key + "?" + query.Encode()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, 0, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var out map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, resp.StatusCode, err
	}
	return out, resp.StatusCode, nil
}

type fakeNode struct {
	Key           string     `json:"key"`
	Value         string     `json:"value"`
	Dir           bool       `json:"dir"`
	Nodes         []fakeNode `json:"nodes"`
	ModifiedIndex uint64     `json:"modifiedIndex"`
}

// tree reads the directory below the store's base recursively (with
// quorum, as conftool reads); nil when it does not exist.
func (s *fakeStore) tree(dir string) (*fakeNode, error) {
	out, status, err := s.call(http.MethodGet, s.base+dir, url.Values{"recursive": {"true"}, "quorum": {"true"}}, nil)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNotFound {
		return nil, nil
	}
	var root fakeNode
	if err := json.Unmarshal(out["node"], &root); err != nil {
		return nil, fmt.Errorf("etcd answered %d: %v", status, out)
	}
	return &root, nil
}

// query lists discovery objects matching the anchored selectors.
func (s *fakeStore) query(selectors map[string]*regexp.Regexp) ([]fakeObject, error) {
	root, err := s.tree("/discovery")
	if err != nil || root == nil {
		return nil, err
	}
	var objects []fakeObject
	for _, svcDir := range root.Nodes {
		service := filepath.Base(svcDir.Key)
		if re := selectors["dnsdisc"]; re != nil && !re.MatchString(service) {
			continue
		}
		for _, n := range svcDir.Nodes {
			name := filepath.Base(n.Key)
			if re := selectors["name"]; re != nil && !re.MatchString(name) {
				continue
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal([]byte(n.Value), &fields); err != nil {
				return nil, fmt.Errorf("%s: invalid JSON: %v", n.Key, err)
			}
			objects = append(objects, fakeObject{service: service, name: name, key: n.Key, index: n.ModifiedIndex, fields: fields})
		}
	}
	sort.Slice(objects, func(i, j int) bool { return objects[i].key < objects[j].key })
	return objects, nil
}

// update merges values into the stored object and writes it with a
// compare-and-swap on the index it was read at, as conftool does.
func (s *fakeStore) update(o fakeObject, values map[string]json.RawMessage) error {
	merged := map[string]json.RawMessage{}
	for k, v := range o.fields {
		merged[k] = v
	}
	for k, v := range values {
		merged[k] = v
	}
	b, _ := json.Marshal(merged)
	out, status, err := s.call(http.MethodPut, o.key, url.Values{"prevIndex": {strconv.FormatUint(o.index, 10)}}, url.Values{"value": {string(b)}})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("etcd answered %d: %s %s", status, out["errorCode"], out["message"])
	}
	return nil
}

// queryNodes lists node objects (pools/<dc>/<cluster>/<service>/<name>)
// matching the anchored selectors.
func (s *fakeStore) queryNodes(selectors map[string]*regexp.Regexp) ([]fakeObject, error) {
	root, err := s.tree("/pools")
	if err != nil || root == nil {
		return nil, err
	}
	match := func(tag, v string) bool { re := selectors[tag]; return re == nil || re.MatchString(v) }
	var objects []fakeObject
	for _, dc := range root.Nodes {
		for _, cluster := range dc.Nodes {
			for _, service := range cluster.Nodes {
				d, c, sv := filepath.Base(dc.Key), filepath.Base(cluster.Key), filepath.Base(service.Key)
				if !match("dc", d) || !match("cluster", c) || !match("service", sv) {
					continue
				}
				for _, n := range service.Nodes {
					name := filepath.Base(n.Key)
					if !match("name", name) {
						continue
					}
					var fields map[string]json.RawMessage
					if err := json.Unmarshal([]byte(n.Value), &fields); err != nil {
						return nil, fmt.Errorf("%s: invalid JSON: %v", n.Key, err)
					}
					objects = append(objects, fakeObject{service: sv, name: name, key: n.Key, index: n.ModifiedIndex,
						fields: fields, nodeTags: fmt.Sprintf("dc=%s,cluster=%s,service=%s", d, c, sv)})
				}
			}
		}
	}
	sort.Slice(objects, func(i, j int) bool { return objects[i].key < objects[j].key })
	return objects, nil
}

// parseFakeNodeSet parses k=v:k2=v2 with the node schema's types (pooled
// is a choice of yes, no, inactive; weight an int).
func parseFakeNodeSet(arg string) (map[string]json.RawMessage, error) {
	values := map[string]json.RawMessage{}
	for _, el := range strings.Split(arg, ":") {
		k, v, ok := strings.Cut(strings.TrimSpace(el), "=")
		if !ok {
			return nil, fmt.Errorf("Could not parse set instructions: %s", arg)
		}
		switch k {
		case "pooled":
			if v != "yes" && v != "no" && v != "inactive" {
				return nil, fmt.Errorf("Value %s is not in the allowed choices", v)
			}
			b, _ := json.Marshal(v)
			values[k] = b
		case "weight":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("invalid literal for int() with base 10: '%s'", v)
			}
			values[k] = json.RawMessage(strconv.Itoa(n))
		default:
			return nil, fmt.Errorf("Key %s is not in the schema", k)
		}
	}
	return values, nil
}
