package monitoring

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// troubleshootingMessages are messages an operator can see (chat replies
// and notices, SAL lines, log lines, startup errors) that README's
// Troubleshooting section must explain. code is a fragment of a string
// literal in poolbot's own Go sources, so a change of wording there fails
// this test until the README (and this list) follow; readme is how the
// README shows it, when that differs (a format verb filled in). lib marks
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
	{code: ` is encrypted: set ssh.passphrase_file`},
	{code: `restart: ssh.known_hosts: `},
	{code: `known_hosts: required (host keys are always checked)`},
	{readme: `knownhosts: key is unknown`, lib: true}, // golang.org/x/crypto/ssh/knownhosts
	{readme: `knownhosts: key mismatch`, lib: true},
	{code: `cumin exited %d (`, readme: `cumin exited 2 (`},
	{code: `cumin exited 4 (`},

	// Slack.
	{code: `slack: Slack refused the app-level token (check slack_app_token)`},
	{code: `slack mirror: queue full; line dropped`},
	{code: `slack: handler queue full; command dropped`},

	// Log lines.
	{code: `irc: server refused a line`},
	{code: `irc: kicked; will rejoin`},
	{code: `irc: nick taken; asking NickServ to regain it`},
	{code: `irc: handler queue full; message dropped`},
	{code: `SAL line not delivered; will retry`},
	{code: `notice not delivered`},
	{code: `SAL lines left in the outbox at shutdown; they are delivered after the next start`},
}

// Every listed message is still what the code says, and README's
// Troubleshooting section explains it.
func TestReadmeTroubleshootingCoversMessages(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := troubleshootingSection(t, string(readme))
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
			t.Errorf("no string literal in poolbot's sources contains %q: the message changed; update README's Troubleshooting and this list", m.code)
		}
		want := m.readme
		if want == "" {
			want = m.code
		}
		if !strings.Contains(section, want) {
			t.Errorf("README's Troubleshooting section does not explain %q", want)
		}
	}
}

// troubleshootingSection is README's "## Troubleshooting" up to the next
// second-level heading.
func troubleshootingSection(t *testing.T, readme string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n## Troubleshooting\n")
	if !ok {
		t.Fatal(`README has no "## Troubleshooting" section`)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
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
