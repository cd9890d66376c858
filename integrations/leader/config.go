package leader

import (
	"fmt"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultKey  = "/poolbot/leader"
	DefaultTTL  = 30 * time.Second
	DefaultPoll = 5 * time.Second
)

// Config is the leader: section.
//
//	leader:
//	  key: /poolbot/leader   # one key per group of instances sharing a config
//	  ttl: 30s               # takeover after a crash within ttl + poll
//	  renew_every: 10s       # default ttl/3
//	  poll: 5s               # how often a standby tries
type Config struct {
	Key        string        `yaml:"key"`
	TTL        time.Duration `yaml:"ttl"`
	RenewEvery time.Duration `yaml:"renew_every"`
	Poll       time.Duration `yaml:"poll"`
}

// withDefaults fills unset fields.
func (c Config) withDefaults() Config {
	if c.Key == "" {
		c.Key = DefaultKey
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = c.TTL / 3
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	return c
}

// Validate checks the section; errors name the key.
func (c Config) Validate() error {
	d := c.withDefaults()
	if !strings.HasPrefix(d.Key, "/") || strings.HasSuffix(d.Key, "/") || strings.Contains(d.Key, "//") ||
		strings.ContainsAny(d.Key, "?# \x00\r\n") || strings.Contains(d.Key, "/../") || strings.Contains(d.Key, "/./") {
		return fmt.Errorf("leader.key: %q must be an absolute etcd key like /poolbot/leader", c.Key)
	}
	if strings.HasPrefix(d.Key, "/conftool/") || strings.HasPrefix(d.Key, "/spicerack/") {
		return fmt.Errorf("leader.key: %q is inside another tool's tree", c.Key)
	}
	if d.TTL < 2*time.Second || d.TTL%time.Second != 0 {
		return fmt.Errorf("leader.ttl: %s must be whole seconds, at least 2s", c.TTL)
	}
	if d.RenewEvery <= 0 || d.RenewEvery > d.TTL/2 {
		return fmt.Errorf("leader.renew_every: %s must be positive and at most half of leader.ttl (%s), so one lost renewal does not lose the lock", c.RenewEvery, d.TTL)
	}
	if d.Poll <= 0 || d.Poll > d.TTL {
		return fmt.Errorf("leader.poll: %s must be positive and at most leader.ttl (%s)", c.Poll, d.TTL)
	}
	return nil
}
