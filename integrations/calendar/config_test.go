package calendar

import (
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestConfigYAMLAndDefaults(t *testing.T) {
	const doc = `
source: wikitech
wikitech:
  api_url: https://wikitech.wikimedia.org/w/api.php
  page: Deployments
  user_agent: "poolbot/1.0 (https://wikitech.wikimedia.org/wiki/Tool:Poolbot; sre@example.org)"
  timeout: 20s
  max_body_bytes: 4194304
ical:
  url: https://calendar.example.org/deployments.ics
  horizon: 168h
  lookback: 12h
  timezone: America/Los_Angeles
  deployers_property: X-DEPLOYERS
refresh_interval: 10m
max_age: 45m
lead_margin: 5m
tail_margin: 20m
unreadable_window_length: 2h
`
	var c Config
	if err := yaml.UnmarshalWithOptions([]byte(doc), &c, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Wikitech.Timeout != 20*time.Second || c.ICal.Horizon != 7*24*time.Hour || c.MaxAge != 45*time.Minute || c.TailMargin != 20*time.Minute ||
		c.UnreadableWindowLength != 2*time.Hour {
		t.Errorf("decoded %+v", c)
	}
	// The sources get the length from the calendar section.
	if w := c.WithDefaults(); w.Wikitech.UnreadableWindowLength != 2*time.Hour || w.ICal.UnreadableWindowLength != 2*time.Hour {
		t.Errorf("unreadable_window_length not passed on: %+v", w)
	}
	if err := yaml.UnmarshalWithOptions([]byte("wikitech:\n  usr_agent: x\n"), &Config{}, yaml.Strict()); err == nil {
		t.Error("unknown key accepted")
	}

	d := Config{Wikitech: WikitechConfig{UserAgent: "ua"}}.WithDefaults()
	if d.Source != SourceWikitech || d.Wikitech.APIURL != DefaultAPIURL || d.Wikitech.Page != "Deployments" ||
		d.RefreshInterval != 15*time.Minute || d.MaxAge != time.Hour || d.Wikitech.UnreadableWindowLength != time.Hour || d.ICal.Horizon != 14*24*time.Hour || d.ICal.Lookback != 24*time.Hour {
		t.Errorf("defaults %+v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Wikitech: WikitechConfig{UserAgent: "poolbot (sre@example.org)"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"no user agent", func(c *Config) { c.Wikitech.UserAgent = " " }, []string{"calendar.wikitech.user_agent: required"}},
		{"bad source", func(c *Config) { c.Source = "google" }, []string{`calendar.source: "google" is not "wikitech" or "ical"`}},
		{"bad api url", func(c *Config) { c.Wikitech.APIURL = "wikitech.wikimedia.org/w/api.php" }, []string{"calendar.wikitech.api_url"}},
		{"bad page", func(c *Config) { c.Wikitech.Page = "Deployments|Other" }, []string{"calendar.wikitech.page"}},
		{"stale before refresh", func(c *Config) { c.RefreshInterval = time.Hour }, []string{"calendar.max_age: 1h0m0s must exceed calendar.refresh_interval (1h0m0s)"}},
		{"refresh too often", func(c *Config) { c.RefreshInterval = time.Second }, []string{"calendar.refresh_interval: 1s is below 1m"}},
		{"negative margins", func(c *Config) { c.LeadMargin, c.TailMargin = -1, -1 }, []string{"calendar.lead_margin", "calendar.tail_margin"}},
		{"unreadable length too short", func(c *Config) { c.UnreadableWindowLength = time.Second }, []string{"calendar.unreadable_window_length: 1s is not between 1m and 24h"}},
		{"unreadable length negative", func(c *Config) { c.UnreadableWindowLength = -time.Hour }, []string{"calendar.unreadable_window_length: -1h0m0s is not between 1m and 24h"}},
		{"unreadable length too long", func(c *Config) {
			c.Source = SourceICal
			c.ICal.File = "/y.ics"
			c.UnreadableWindowLength = 48 * time.Hour
		}, []string{"calendar.unreadable_window_length: 48h0m0s is not between 1m and 24h"}},
		{"ical without location", func(c *Config) { c.Source = SourceICal }, []string{"calendar.ical: set url or file"}},
		{"ical with both", func(c *Config) { c.Source = SourceICal; c.ICal.URL = "https://x/y.ics"; c.ICal.File = "/y.ics" }, []string{"set only one of url and file"}},
		{"ical bad zone", func(c *Config) { c.Source = SourceICal; c.ICal.File = "/y.ics"; c.ICal.Timezone = "PST" }, []string{`calendar.ical.timezone: unknown time zone "PST"`}},
		{"ical bad property", func(c *Config) { c.Source = SourceICal; c.ICal.File = "/y.ics"; c.ICal.DeployersProperty = "ATTENDEE" }, []string{"calendar.ical.deployers_property"}},
		{"ical horizon", func(c *Config) { c.Source = SourceICal; c.ICal.File = "/y.ics"; c.ICal.Horizon = 400 * 24 * time.Hour }, []string{"calendar.ical.horizon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			}
		})
	}
}

func TestNewSourceSelects(t *testing.T) {
	s, err := NewSource(Config{Source: SourceICal, ICal: ICalConfig{File: "testdata/deployments.ics"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*ICal); !ok {
		t.Errorf("got %T", s)
	}
	s, err = NewSource(Config{Wikitech: WikitechConfig{UserAgent: "ua (x@example.org)"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*Wikitech); !ok {
		t.Errorf("got %T", s)
	}
	if _, err := NewSource(Config{}, Options{}); err == nil {
		t.Error("config without user agent accepted")
	}
}
