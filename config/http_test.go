package config

import (
	"strings"
	"testing"
)

func TestHTTPListen(t *testing.T) {
	for _, c := range []struct {
		listen  string
		console string
		run     string
	}{
		{listen: "", console: "", run: DefaultHTTPListen},
		{listen: "off", console: "", run: ""},
		{listen: "127.0.0.1:0", console: "127.0.0.1:0", run: "127.0.0.1:0"},
	} {
		h := HTTP{Listen: c.listen}
		if got := h.ListenAddr(true); got != c.console {
			t.Errorf("%q console: %q, want %q", c.listen, got, c.console)
		}
		if got := h.ListenAddr(false); got != c.run {
			t.Errorf("%q run: %q, want %q", c.listen, got, c.run)
		}
	}
	for _, bad := range []string{"9137", "localhost:http", "127.0.0.1:70000"} {
		cfg := &Config{HTTP: HTTP{Listen: bad}}
		p := &Problems{}
		cfg.validateHTTP(p)
		if len(p.List) != 1 || !strings.HasPrefix(p.List[0], "http.listen: ") {
			t.Errorf("%q: problems %q", bad, p.List)
		}
	}
	for _, good := range []string{"", "off", "[::1]:9137", "127.0.0.1:9137"} {
		cfg := &Config{HTTP: HTTP{Listen: good}}
		p := &Problems{}
		cfg.validateHTTP(p)
		if len(p.List) != 0 {
			t.Errorf("%q: problems %q", good, p.List)
		}
	}
}
