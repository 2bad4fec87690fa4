// Package cronschedule reads CronWorkflow schedules (standard cron syntax, with github.com/robfig/cron/v3)
// and decides, purely from the last handled time and now, what is due: the rule that a
// CronWorkflow never creates a backlog of runs after an outage lives here.
package cronschedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// maxLookback bounds how far back the controller looks for missed schedules (after a long
// outage): a schedule older than that is not even counted.
const maxLookback = 400 * 24 * time.Hour

// Parse reads a schedule in standard cron syntax (five fields or a descriptor such as @hourly)
// and a time zone (IANA name; empty is UTC). Time zones in the schedule itself (TZ=, CRON_TZ=) are
// refused: timeZone says it, once.
func Parse(schedule, timeZone string) (cron.Schedule, *time.Location, error) {
	if strings.HasPrefix(strings.TrimSpace(schedule), "TZ=") || strings.HasPrefix(strings.TrimSpace(schedule), "CRON_TZ=") {
		return nil, nil, fmt.Errorf("schedule %q: set the time zone in spec.timeZone, not in the schedule", schedule)
	}
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		return nil, nil, fmt.Errorf("schedule %q: %w", schedule, err)
	}
	if sched.Next(time.Unix(0, 0).UTC()).IsZero() {
		// cron gives up after five years without a match: a day that does not exist (30 2 ...).
		return nil, nil, fmt.Errorf("schedule %q never fires: no date matches it", schedule)
	}
	loc := time.UTC
	if timeZone != "" {
		if loc, err = time.LoadLocation(timeZone); err != nil {
			return nil, nil, fmt.Errorf("timeZone %q: %w", timeZone, err)
		}
	}
	return sched, loc, nil
}

// Due is what a CronWorkflow should do now.
type Due struct {
	// Time is the most recent scheduled time after the last handled one and not after now; zero if
	// none is due.
	Time time.Time
	// Missed counts the scheduled times before Time (since the last handled one) that are not run:
	// at most one run is created for the times missed while the controller was down.
	Missed int
	// TooLate is set when Time itself is older than the starting deadline: it is missed too.
	TooLate bool
	// Next is the first scheduled time after now.
	Next time.Time
}

// Decide finds what is due at now, given the last handled scheduled time (or the CronWorkflow's
// creation) and the starting deadline (nil for none). The rule, which docs/templates.md
// documents: whatever the outage, at most one run is due, for the most recent scheduled time; the
// ones before it are missed, and so is that one if it is older than the deadline.
func Decide(sched cron.Schedule, loc *time.Location, last, now time.Time, deadline *time.Duration) Due {
	from := last
	if lb := now.Add(-maxLookback); from.Before(lb) {
		from = lb
	}
	var d Due
	for t := sched.Next(from.In(loc)); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		if !d.Time.IsZero() {
			d.Missed++
		}
		d.Time = t
	}
	if !d.Time.IsZero() && deadline != nil && now.Sub(d.Time) > *deadline {
		d.TooLate = true
	}
	d.Next = sched.Next(now.In(loc))
	return d
}

// RunName is the deterministic name of the run for a scheduled time: the CronWorkflow's name and
// the minutes since the epoch, so one scheduled time never makes two runs.
func RunName(cronName string, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cronName, scheduled.Unix()/60)
}
