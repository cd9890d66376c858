package alertmanager

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	if c.Enabled() || !c.FailClosedOrDefault() || c.MarginOrDefault() != DefaultMargin || c.TimeoutOrDefault() != 2*time.Second {
		t.Fatalf("zero config: enabled %t fail_closed %t margin %s timeout %s", c.Enabled(), c.FailClosedOrDefault(), c.MarginOrDefault(), c.TimeoutOrDefault())
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("empty section (silencing off) must be valid: %v", err)
	}
	no := false
	c = Config{URLs: []string{"http://am:9093"}, FailClosed: &no, Margin: time.Minute}
	if c.FailClosedOrDefault() || c.Duration(20*time.Minute) != 21*time.Minute {
		t.Fatalf("explicit config: fail_closed %t duration %s", c.FailClosedOrDefault(), c.Duration(20*time.Minute))
	}
}

func TestConfigValidate(t *testing.T) {
	yes := true
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{URLs: []string{"http://alertmanager-eqiad.wikimedia.org:9093", "https://am.example/prefix/"}}, ""},
		{Config{URLs: []string{"am:9093"}}, "alertmanager.urls[0]"},
		{Config{URLs: []string{"ftp://am"}}, "alertmanager.urls[0]"},
		{Config{URLs: []string{"http://u:p@am"}}, "no user"},
		{Config{URLs: []string{"http://am/api/v2"}}, "without /api/v2"},
		{Config{URLs: []string{"http://am", "http://am/"}}, "listed twice"},
		{Config{FailClosed: &yes}, "alertmanager.fail_closed"},
		{Config{URLs: []string{"http://am"}, Margin: -time.Second}, "alertmanager.margin"},
		{Config{URLs: []string{"http://am"}, Margin: 25 * time.Hour}, "alertmanager.margin"},
		{Config{URLs: []string{"http://am"}, Timeout: -1}, "alertmanager.timeout"},
		{Config{URLs: []string{"http://am"}, Timeout: 2 * time.Minute}, "alertmanager.timeout"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{}, Options{}); err == nil {
		t.Error("New accepted a config without urls")
	}
}
