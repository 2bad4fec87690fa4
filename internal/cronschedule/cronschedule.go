// Package cronschedule reads CronWorkflow schedules (standard cron syntax, with github.com/robfig/cron/v3)
// and decides, purely from the last handled time and now, what is due: the rule that a
// CronWorkflow never creates a backlog of runs after an outage lives here, and so does cron's
// handling of daylight saving changes, which robfig/cron does not have.
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

// Schedule is a parsed schedule in its time zone.
type Schedule struct {
	spec cron.Schedule
	loc  *time.Location
	// fixed: the minute and hour fields name times of day (neither starts with * or ?), as in
	// "30 2 * * *" or @daily. Clock changes are then handled as cron (ISC, Vixie) does; see Next.
	fixed bool
}

// maxClockChange is the largest change of a time zone's offset that Next handles as a daylight
// saving change, as cron does; bigger ones (a country changing its standard time) are not.
const maxClockChange = 3 * time.Hour

// Parse reads a schedule in standard cron syntax (five fields or a descriptor such as @hourly)
// and a time zone (IANA name; empty is UTC). Time zones in the schedule itself (TZ=, CRON_TZ=) are
// refused: timeZone says it, once.
func Parse(schedule, timeZone string) (Schedule, error) {
	if strings.HasPrefix(strings.TrimSpace(schedule), "TZ=") || strings.HasPrefix(strings.TrimSpace(schedule), "CRON_TZ=") {
		return Schedule{}, fmt.Errorf("schedule %q: set the time zone in spec.timeZone, not in the schedule", schedule)
	}
	spec, err := cron.ParseStandard(schedule)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", schedule, err)
	}
	if spec.Next(time.Unix(0, 0).UTC()).IsZero() {
		// cron gives up after five years without a match: a day that does not exist (30 2 ...).
		return Schedule{}, fmt.Errorf("schedule %q never fires: no date matches it", schedule)
	}
	loc := time.UTC
	if strings.EqualFold(timeZone, "Local") {
		// time.LoadLocation would give the zone of the machine reading it: the controller's, or the
		// laptop's of whoever runs lint.
		return Schedule{}, fmt.Errorf("timeZone %q: name an IANA time zone such as Europe/Berlin, not the controller's own", timeZone)
	}
	if timeZone != "" {
		if loc, err = time.LoadLocation(timeZone); err != nil {
			return Schedule{}, fmt.Errorf("timeZone %q: %w", timeZone, err)
		}
	}
	return Schedule{spec: spec, loc: loc, fixed: fixedTimes(schedule)}, nil
}

// fixedTimes tells whether a schedule's minute and hour fields name times of day, the jobs cron
// moves or leaves out when the clock changes ("jobs that run at a specific time"); a schedule
// whose minute or hour is a wildcard (*/15 * ..., 0 * ..., @hourly, @every) runs as the clock
// says, every hour that exists.
func fixedTimes(schedule string) bool {
	f := strings.Fields(schedule)
	if len(f) == 1 {
		switch f[0] {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight":
			return true
		}
		return false
	}
	wild := func(field string) bool { return strings.HasPrefix(field, "*") || strings.HasPrefix(field, "?") }
	return len(f) == 5 && !wild(f[0]) && !wild(f[1])
}

// Next is the first scheduled time after t. For a schedule at fixed times of day, a clock change
// of less than three hours is handled as cron does, not as github.com/robfig/cron (or a
// Kubernetes CronJob): a time of day that repeats when the clock goes back runs once, the first
// time; a time of day the clock skips when it goes forward runs at the moment of the change,
// instead of not at all that day. Zero if the schedule has no time in the next five years.
func (s Schedule) Next(t time.Time) time.Time {
	next := s.spec.Next(t.In(s.loc))
	if !s.fixed {
		return next
	}
	for !next.IsZero() && s.repeated(next) {
		next = s.spec.Next(next)
	}
	if change, _ := s.skipped(t, next); !change.IsZero() {
		return change
	}
	return next
}

// Location is the time zone the schedule is read in.
func (s Schedule) Location() *time.Location { return s.loc }

// Skipped tells, for a time Next returned, whether it is the moment of a clock change that skipped
// a scheduled time of day, and which (local, as the schedule reads it: "02:30").
func (s Schedule) Skipped(t time.Time) (string, bool) {
	if !s.fixed {
		return "", false
	}
	change, wall := s.skipped(t.Add(-time.Nanosecond), t)
	return wall, !change.IsZero() && change.Equal(t)
}

// repeated tells whether t, a time in s.loc, shows a time of day the clock showed already, less
// than maxClockChange before, when it went back.
func (s Schedule) repeated(t time.Time) bool {
	t = t.In(s.loc)
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, off := t.Zone()
	_, before := start.Add(-time.Nanosecond).Zone()
	back := time.Duration(before-off) * time.Second
	return back > 0 && back < maxClockChange && t.Sub(start) < back
}

// skipped finds the first clock change in (after, until] (until zero: within a year) that moved the
// clock forward over a time of day the schedule names, and returns its moment and that time of day.
func (s Schedule) skipped(after, until time.Time) (time.Time, string) {
	limit := until
	if limit.IsZero() {
		limit = after.AddDate(1, 0, 0)
	}
	for x := after.In(s.loc); ; {
		_, change := x.ZoneBounds()
		if change.IsZero() || change.After(limit) {
			return time.Time{}, ""
		}
		x = change.In(s.loc)
		_, before := change.Add(-time.Nanosecond).In(s.loc).Zone()
		_, off := x.Zone()
		if fwd := time.Duration(off-before) * time.Second; fwd <= 0 || fwd >= maxClockChange {
			continue
		}
		// The times of day skipped, as wall clocks in UTC (no clock changes there): the schedule
		// reads them the same way, since it takes the location of the time it is given.
		from := time.Unix(change.Unix()+int64(before), 0).UTC()
		to := time.Unix(change.Unix()+int64(off), 0).UTC()
		for w := from.Truncate(time.Minute); w.Before(to); w = w.Add(time.Minute) {
			if !w.Before(from) && s.spec.Next(w.Add(-time.Second)).Equal(w) {
				return change, w.Format("15:04")
			}
		}
	}
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
	// Skipped, when Time is the moment the clock went forward over a scheduled time of day, is
	// that time of day as the schedule reads it ("02:30"): its run is made then.
	Skipped string
}

// Decide finds what is due at now, given the last handled scheduled time (or the CronWorkflow's
// creation) and the starting deadline (nil for none). The rule, which docs/templates.md
// documents: whatever the outage, at most one run is due, for the most recent scheduled time; the
// ones before it are missed, and so is that one if it is older than the deadline.
func Decide(sched Schedule, last, now time.Time, deadline *time.Duration) Due {
	from := last
	if lb := now.Add(-maxLookback); from.Before(lb) {
		from = lb
	}
	var d Due
	for t := sched.Next(from); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		if !d.Time.IsZero() {
			d.Missed++
		}
		d.Time = t
	}
	if !d.Time.IsZero() && deadline != nil && now.Sub(d.Time) > *deadline {
		d.TooLate = true
	}
	if !d.Time.IsZero() {
		d.Skipped, _ = sched.Skipped(d.Time)
	}
	d.Next = sched.Next(now)
	return d
}

// RunName is the deterministic name of the run for a scheduled time: the CronWorkflow's name and
// the minutes since the epoch, so one scheduled time never makes two runs.
func RunName(cronName string, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cronName, scheduled.Unix()/60)
}
