package procedure

import (
	"fmt"
	"strings"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
)

// describeWindow names a deployment window for a notice:
// "deployment window "UTC late backport window" 20:00–21:00 UTC (deployers: a, b)".
//
// A calendar entry that could not be read completely is named as such:
// "unreadable calendar card at 10:00 UTC (no end time): treated as 10:00–11:00 UTC".
func describeWindow(w calendar.Window, now time.Time) string {
	if w.Unreadable != "" {
		return fmt.Sprintf("unreadable calendar card at %s (%s): treated as %s", poolbot.FormatSince(w.Start, now), w.Unreadable, poolbot.FormatSpan(w.Start, w.End, now))
	}
	s := fmt.Sprintf("deployment window %q %s", w.Name, poolbot.FormatSpan(w.Start, w.End, now))
	if w.ActiveAt(now) {
		s += " (active)"
	}
	if len(w.Deployers) > 0 {
		s += " (deployers: " + strings.Join(w.Deployers, ", ") + ")"
	}
	return s
}

// progress is "done: <hosts>; not touched: <hosts>", how END lines and
// notices say how far a restart sequence got.
func progress(done, left []string) string {
	return "done: " + hostList(done) + "; not touched: " + hostList(left)
}

// endLine is a request's last SAL line, shaped like spicerack's:
// "END (PASS|FAIL|CANCELLED) - <summary>: <detail> - T123 (duration: MMm SSs)".
// The task is repeated (as spicerack's reasons end in " - T123") because
// stashbot comments on the tasks a SAL line names.
func endLine(outcome string, r poolbot.Request, detail string, d time.Duration) string {
	task := ""
	if r.Task != "" {
		task = " - " + r.Task
	}
	return fmt.Sprintf("END (%s) - %s: %s%s (duration: %s)", outcome, r.Summary(), detail, task, poolbot.FormatDuration(d))
}

// hostList joins host names, or says "none".
func hostList(hosts []string) string {
	if len(hosts) == 0 {
		return "none"
	}
	return strings.Join(hosts, ", ")
}
