package testenv

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually looks again: often enough that a test
// does not idle after its condition holds, rarely enough not to compete
// with the servers it waits on.
const pollEvery = 20 * time.Millisecond

// Eventually polls cond in real time until it holds, and fails t when it
// still does not after timeout. It is for waiting on real servers and
// goroutines (a store write, a SAL line, a daemon's reply), never for
// logic: time in the code under test is a fake clock.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	EventuallyReport(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// EventuallyReport is Eventually for a condition that also says what it
// saw, so that a timeout reports the last state rather than only that it
// timed out.
func EventuallyReport(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if last != "" {
				t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}
