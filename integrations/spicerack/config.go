package spicerack

import (
	"fmt"
	"strings"
	"time"
)

// Config is the spicerack_locks: section. The locks live in the conftool
// etcd (spicerack's /etc/etcd/etcdrc points there), so they use
// conftool.etcd's endpoints and credentials.
//
//	spicerack_locks:
//	  enabled: true
//	  owner: ""                      # default "<user>@<short host> [<pid>]"
//	  service_route_lock: sre.discovery.service-route:rw
//	  registry_restart_lock: sre.misc-clusters.roll-restart-reboot-docker-registry
//	  registry_restart_ttl: 30m
type Config struct {
	Enabled             bool          `yaml:"enabled"`
	Owner               string        `yaml:"owner"`
	ServiceRouteLock    string        `yaml:"service_route_lock"`
	RegistryRestartLock string        `yaml:"registry_restart_lock"`
	RegistryRestartTTL  time.Duration `yaml:"registry_restart_ttl"`
}

// ServiceRoute is the lock held while conftool changes: the configured
// name with the cookbook's rw rules (concurrency 1, ttl 600).
func (c Config) ServiceRoute() Spec {
	s := ServiceRouteRW
	if c.ServiceRouteLock != "" {
		s.Name = c.ServiceRouteLock
	}
	return s
}

// RegistryRestart is the lock checked and held around restarts.
func (c Config) RegistryRestart() Spec {
	s := RegistryRollRestart
	if c.RegistryRestartLock != "" {
		s.Name = c.RegistryRestartLock
	}
	if c.RegistryRestartTTL != 0 {
		s.TTL = c.RegistryRestartTTL
	}
	return s
}

// Validate checks the section; errors name the key.
func (c Config) Validate() error {
	if strings.ContainsAny(c.Owner, "\x00\r\n") {
		return fmt.Errorf("spicerack_locks.owner: control characters are not allowed")
	}
	if err := c.ServiceRoute().Validate(); err != nil {
		return fmt.Errorf("spicerack_locks.service_route_lock: %w", err)
	}
	if err := c.RegistryRestart().Validate(); err != nil {
		return fmt.Errorf("spicerack_locks.registry_restart_lock/registry_restart_ttl: %w", err)
	}
	return nil
}
