package scap

import (
	"context"
	"testing"
)

// SpiderPig's job runner says "Running job <id>" while it runs a job; with
// "job": null and the job not (or not yet, or no longer) running in the
// jobs list, that status alone means a deployment is in progress.
func TestSpiderPigRunningStatusWithNullJob(t *testing.T) {
	srv := newFakeSpiderPig(t, "running-nulljob")
	sp := newTestSpiderPig(t, srv.URL, Credentials{Cookie: testCookie}, nil)
	st, err := sp.JobrunnerStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Job != nil || st.Status != "Running job 46" {
		t.Fatalf("fixture: %+v", st)
	}
	act, err := NewMonitor(MonitorOptions{SpiderPig: sp}).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !act.Busy || len(act.Reasons) != 1 {
		t.Fatalf("a running job runner is not busy: %+v", act)
	}
	if r := act.Reasons[0]; r.Source != SourceSpiderPig || r.JobID != 46 || r.What != "SpiderPig job 46 running" {
		t.Fatalf("reason %+v", r)
	}
}

func TestRunningJobID(t *testing.T) {
	for _, c := range []struct {
		status string
		id     int64
		ok     bool
	}{
		{"Running job 46", 46, true},
		{"Running job 43, awaiting user interaction", 43, true},
		{"Running job", 0, true},
		{"Running job ?", 0, true},
		{"idle", 0, false},
		{"Terminated", 0, false},
		{"Jobrunner not running", 0, false},
		{"", 0, false},
	} {
		if id, ok := runningJobID(c.status); id != c.id || ok != c.ok {
			t.Errorf("runningJobID(%q) = %d, %v; want %d, %v", c.status, id, ok, c.id, c.ok)
		}
	}
}
