package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	Eventually(t, 5*time.Second, "the third look", func() bool { return calls.Add(1) >= 3 })
	if n := calls.Load(); n != 3 {
		t.Fatalf("cond called %d times, want 3 (it must stop as soon as it holds)", n)
	}
}

// recorder is a testing.TB whose Fatalf records the message and stops
// the goroutine, like testing.T does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventuallyReportFailsWithTheLastState(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		EventuallyReport(r, 30*time.Millisecond, "the door to open", func() (bool, string) { return false, "door shut" })
	}()
	<-done
	if !strings.Contains(r.msg, "waiting for the door to open; last: door shut") {
		t.Fatalf("failure message %q does not name what was awaited and the last state", r.msg)
	}
}
