package spicerack

import (
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ServiceRoute() != ServiceRouteRW || c.RegistryRestart() != RegistryRollRestart {
		t.Fatalf("defaults %+v %+v", c.ServiceRoute(), c.RegistryRestart())
	}
	c = Config{RegistryRestartTTL: time.Hour, ServiceRouteLock: "x:rw"}
	if c.RegistryRestart().TTL != time.Hour || c.ServiceRoute().Key() != "/spicerack/locks/cookbooks/x:rw" {
		t.Fatalf("overrides %+v %+v", c.ServiceRoute(), c.RegistryRestart())
	}
	for _, bad := range []Config{
		{Owner: "a\nb"},
		{ServiceRouteLock: "a/b"},
		{RegistryRestartTTL: -time.Second},
		{RegistryRestartTTL: 1500 * time.Millisecond},
	} {
		if err := bad.Validate(); err == nil || !strings.HasPrefix(err.Error(), "spicerack_locks.") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
