package dns

import (
	"net/netip"
	"strings"
	"testing"
)

// The state file is confd's rendering of puppet's
// discovery-statefile.tpl.erb: one "<ip> => UP|DOWN/<ttl>" line per
// datacenter, sorted by datacenter name.
func TestRenderStateFile(t *testing.T) {
	ips := map[string]netip.Addr{"eqiad": netip.MustParseAddr("10.2.2.10"), "codfw": netip.MustParseAddr("10.2.1.10")}
	got, err := RenderStateFile(ips, map[string]string{
		"eqiad": `{"pooled": true, "references": [], "ttl": 300}`,
		"codfw": `{"pooled": false, "references": [], "ttl": 10}`,
	})
	if err != nil || got != "10.2.1.10 => DOWN/10\n10.2.2.10 => UP/300\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	eqiad := `{"pooled": true, "ttl": 300}`
	for _, tc := range []struct {
		codfw, want string
	}{
		{"", "discovery object for codfw is missing"},
		{`{"pooled": true}`, "codfw: ttl  is not a number"},
		{`nope`, "discovery object for codfw:"},
	} {
		objects := map[string]string{"eqiad": eqiad}
		if tc.codfw != "" {
			objects["codfw"] = tc.codfw
		}
		if _, err := RenderStateFile(ips, objects); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("codfw %q: got %v, want %q", tc.codfw, err, tc.want)
		}
	}
}
