package scap

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scap backport holds its outer lock for the whole backport, also while
// the deployer tests the change on mwdebug and neither the global nor the
// staging lock is held: that alone is a deploy in progress.
func TestBackportLockAloneIsBusy(t *testing.T) {
	global, staging := lockDir(t)
	backport := filepath.Join(filepath.Dir(global), "scap.backport.lock")
	for _, f := range []string{global, staging} {
		if err := os.WriteFile(f, []byte("{}"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	c := startHolder(t, "hold-exclusive", backport, "jdoe", "Backport for [[gerrit:1101577|Fix foo (T123456)]]")
	s, err := New(Config{
		Locks:       LocksConfig{Files: []string{global, staging, backport}},
		DeployBlock: DeployBlockConfig{GlobalLock: global},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	act, err := s.Monitor.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if act.Clear() || len(act.Reasons) != 1 || act.Reasons[0].PID != c.pid {
		t.Fatalf("%+v", act)
	}
	if d := act.Reasons[0].What; !strings.Contains(d, "Backport for [[gerrit:1101577") {
		t.Fatalf("reason %q does not say what runs", d)
	}
	c.stop()
	if act, err := s.Monitor.Check(context.Background()); err != nil || !act.Clear() {
		t.Fatalf("after the backport: %+v %v", act, err)
	}
}
