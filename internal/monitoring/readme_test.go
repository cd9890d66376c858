package monitoring

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"poolbot"
	"poolbot/watch"
)

// troubleshootingMessages are messages an operator can see (chat replies
// and notices, SAL lines, log lines, startup errors) that
// docs/troubleshooting.md must explain. code is a fragment of a string
// literal in poolbot's own Go sources, so a change of wording there fails
// this test until docs/troubleshooting.md (and this list) follow; readme is
// how that page shows it, when that differs (a format verb filled in). lib marks
// a message that comes from a library, not from poolbot's sources.
var troubleshootingMessages = []struct {
	code, readme string
	lib          bool
}{
	// Chat replies.
	{code: `unknown command %q; try %shelp`, readme: `unknown command "x"; try !help`},
	{code: `within the calendar's horizon`},
	{code: `no clear slot of `},

	// Watch: drift and the periodic probe.
	{code: ` changed outside poolbot`},
	{code: `discovery object deleted outside poolbot`},
	{code: ` — but recording it failed (`},
	{code: `registry probe FAILING for `},
	{code: `registry probe OK again for `},

	// conftool.
	{code: `after the write no datacenter is pooled (concurrent depool elsewhere)`},
	{code: `: CHECK NOW`},
	{code: `after the write no datacenter was pooled (concurrent depool elsewhere); `},
	{code: `discovery object not found`},
	{code: `(poolbot never creates discovery objects)`},
	{code: `wanted %t (changed by someone else?)`, readme: `wanted false (changed by someone else?)`},
	{code: `disappeared after the write`},

	// scap and SpiderPig.
	{code: ` was removed or replaced while poolbot held it; the block was not effective since then`},
	{code: `poolbot already holds a deploy block since `},
	{code: `none of the scap lock files exists (`},
	{code: `is poolbot running on the deploy host? (set locks.allow_missing to accept)`},
	{code: `SpiderPig refused the credentials`},
	{code: `, not JSON (a login page?)`},

	// Restart executors.
	{code: `timed out`},
	{code: `no SSH handshake within `},
	{code: ` is encrypted: set ssh.passphrase`},
	{code: `restart: ssh.known_hosts: `},
	{code: `known_hosts: required (host keys are always checked)`},
	{readme: `knownhosts: key is unknown`, lib: true}, // golang.org/x/crypto/ssh/knownhosts
	{readme: `knownhosts: key mismatch`, lib: true},
	{code: `cumin exited %d (`, readme: `cumin exited 2 (`},
	{code: `cumin exited 4 (`},
	{code: `%s (cumin: %s)`, readme: `Connection refused (cumin: 100.0% (1/1) of nodes failed`},
	{code: `hosts_query %q matched no hosts`, readme: `hosts_query "A:docker-registry" matched no hosts`},
	{code: `ERROR: %v; restarts use the %d hosts it selected at start-up (`, readme: `ERROR: hosts_query "…" matched no hosts; restarts use the 2 hosts it selected at start-up (`},
	{code: ` until poolbot restarts`},

	// Slack.
	{code: `slack: Slack refused the app-level token (check slack_app_token)`},
	{code: `slack mirror: queue full; line dropped`},
	{code: `slack: handler queue full; command dropped`},

	// Host guards, spicerack locks, break-glass (issue 15).
	{code: ` STAYS DEPOOLED (`},
	{code: `WITHOUT an Alertmanager silence (alertmanager.fail_closed is false)`},
	{code: `; it expires by itself`},
	{code: ` waits before changing conftool: `},
	{code: ` waits before the next host: `},
	{code: ` (fix or delete the key by hand)`},
	{code: `deploy block BROKEN by %s with scap lock --unlock-all (%s)`, readme: `deploy block BROKEN by jdoe with scap lock --unlock-all (reason)`},

	// Log lines.
	{code: `irc: server refused a line`},
	{code: `irc: kicked; will rejoin`},
	{code: `irc: nick taken; asking NickServ to regain it`},
	{code: `irc: handler queue full; message dropped`},
	{code: `SAL line not delivered; will retry`},
	{code: `notice not delivered`},
	{code: `SAL lines left in the outbox at shutdown; they are delivered after the next start`},
	{code: `logmsgbot.accounts is empty: relayed lines are trusted by the relay's nick alone`},
	{code: `%s is no longer read: %s`, readme: `scap.channel.relay_nicks is no longer read: set logmsgbot.nicks`},
	{code: `reason: `, readme: `reason: removed 3 invalid bytes (not UTF-8); stored as:`},
}

// Every listed message is still what the code says, and
// docs/troubleshooting.md explains it.
func TestReadmeTroubleshootingCoversMessages(t *testing.T) {
	root := filepath.Join("..", "..")
	page, err := os.ReadFile(filepath.Join(root, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(page)
	if !strings.HasPrefix(section, "# Troubleshooting\n") {
		t.Fatal(`docs/troubleshooting.md does not start with "# Troubleshooting"`)
	}
	literals := sourceLiterals(t, root)
	inCode := func(fragment string) bool {
		for _, l := range literals {
			if strings.Contains(l, fragment) {
				return true
			}
		}
		return false
	}
	for _, m := range troubleshootingMessages {
		if m.code != "" && !m.lib && !inCode(m.code) {
			t.Errorf("no string literal in poolbot's sources contains %q: the message changed; update docs/troubleshooting.md and this list", m.code)
		}
		want := m.readme
		if want == "" {
			want = m.code
		}
		if !strings.Contains(section, want) {
			t.Errorf("docs/troubleshooting.md does not explain %q", want)
		}
	}
}

// Every relative link in README.md and docs/ names a file that exists, so
// the README's "Read on" table leads somewhere.
func TestReadmeLinksResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(root, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#]+)(#[^)]*)?\)`)
	links := 0
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			links++
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), target)); err != nil {
				t.Errorf("%s links to %s: %v", p, target, err)
			}
		}
	}
	if links < 6 {
		t.Errorf("only %d relative links in README.md and docs/: the README no longer points to docs/?", links)
	}
}

// sourceLiterals returns every string literal of the Go sources that end
// up in the poolbot binary: not tests, the lab, the test servers or the
// tools module.
func sourceLiterals(t *testing.T, root string) []string {
	t.Helper()
	skip := map[string]bool{".git": true, "testdata": true, "vendor": true, "tools": true, "lab": true,
		"e2e": true, "testenv": true, "poolbot-lab": true}
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skip[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if v, err := strconv.Unquote(lit.Value); err == nil {
					out = append(out, v)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 1000 {
		t.Fatalf("only %d string literals under %s: not the poolbot sources?", len(out), root)
	}
	return out
}

// Every poolbot_* metric is in docs/operations.md's metrics table, and
// poolbot_blocked_seconds' HELP and the table say the same thing: counted
// from when the request was created, queue time included.
func TestOperationsDocListsMetrics(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(page)
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Registry: reg, Store: fakeStore{}, Services: []string{"apus"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	help := map[string]string{}
	for _, f := range families {
		help[f.GetName()] = f.GetHelp()
	}
	for _, name := range []string{"poolbot_requests", "poolbot_blocked_seconds", "poolbot_gate_closed", "poolbot_build_info",
		"poolbot_sal_outbox_depth", "poolbot_host_restart_duration_seconds", "poolbot_drift_total", "poolbot_registry_probe_ok",
		"poolbot_registry_probe_failures_total", "poolbot_registry_probe_duration_seconds", "poolbot_registry_probe_skipped_total"} {
		if !strings.Contains(doc, "`"+name) {
			t.Errorf("docs/operations.md does not list %s", name)
		}
	}
	for name := range help {
		if strings.HasPrefix(name, "poolbot_") && !strings.Contains(doc, "`"+name) {
			t.Errorf("docs/operations.md does not list %s (%s)", name, help[name])
		}
	}
	if h := help["poolbot_blocked_seconds"]; !strings.Contains(h, "counted from when it was created (time queued behind another request of the service included)") ||
		!strings.Contains(doc, "counted from when the request was created: it includes time spent queued behind another request") {
		t.Errorf("poolbot_blocked_seconds: HELP %q and docs/operations.md disagree", h)
	}
	if h := help["poolbot_requests"]; !strings.Contains(h, "ended in the last 24h") || !strings.Contains(doc, "ended in the last 24 hours") {
		t.Errorf("poolbot_requests: HELP %q and docs/operations.md disagree", h)
	}
}

// fakeStore answers the store reads of the metrics with nothing.
type fakeStore struct{}

func (fakeStore) CountByState(context.Context, time.Time) (map[poolbot.State]int, error) {
	return map[poolbot.State]int{}, nil
}
func (fakeStore) SALBacklog(context.Context) (int, error) { return 0, nil }
func (fakeStore) Ping(context.Context) error              { return nil }
