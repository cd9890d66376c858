package procedure

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"

	"poolbot"
	"poolbot/integrations/calendar"
)

// Deployment windows held up by the deploy block: their deployers are told.

// windowNoticeHorizon bounds how far ahead notices to deployers are
// scheduled when the deploy block is taken. An operation that runs longer
// than this is far outside any estimate, and the calendar will have been
// refetched long before.
const windowNoticeHorizon = 12 * time.Hour

// watchWindowsWhileBlocked tells the deployers of every deployment window
// that starts while poolbot holds the deploy block that their window is
// held up: at once for a window already active (a forced or resumed
// request), and by a one-time job at the start of each later one. The
// jobs are removed when the block is released.
func (e *Engine) watchWindowsWhileBlocked(ctx context.Context, svc *Service, r poolbot.Request) {
	if e.deps.Calendar == nil {
		return
	}
	sched, _, err := e.deps.Calendar.Schedule()
	if err != nil {
		e.log.Warn("calendar unreadable while taking the deploy block: deployers of windows that start meanwhile are not told",
			"request", int64(r.ID), "err", err)
		return
	}
	tell := func(w calendar.Window, at time.Time, verb string) {
		who := strings.Join(w.Deployers, ", ")
		if who == "" {
			who = "deployers"
		}
		n := about(r, poolbot.NoticeInfo, "", fmt.Sprintf("%s %s, but poolbot holds the scap lock for %s %s (%s); deploys resume when it ends",
			describeWindow(w, at), verb, r.ID, r.Summary(), r.Operator))
		n.To = who
		e.announce(ctx, n)
	}
	now := e.clock.Now()
	for _, w := range sched.Active(now) {
		tell(w, now, "is on now")
	}
	tag := fmt.Sprintf("window-notice-%d", r.ID)
	e.sched.RemoveByTags(tag)
	for _, w := range sched.Windows {
		if !w.Start.After(now) || w.Start.After(now.Add(windowNoticeHorizon)) {
			continue
		}
		_, err = e.sched.NewJob(gocron.OneTimeJob(gocron.OneTimeJobStartDateTime(w.Start)),
			gocron.NewTask(func() { tell(w, w.Start, "starts now") }),
			gocron.WithName(tag), gocron.WithTags(tag))
		if err != nil {
			e.log.Error("scheduling window notice", "request", r.ID, "err", err)
		}
	}
}

func (e *Engine) stopWindowWatch(id poolbot.RequestID) {
	e.sched.RemoveByTags(fmt.Sprintf("window-notice-%d", id))
}
