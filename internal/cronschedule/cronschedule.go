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
	loc, err := Location(timeZone)
	if err != nil {
		return Schedule{}, err
	}
	return Schedule{spec: spec, loc: loc, fixed: fixedTimes(schedule)}, nil
}

// Location reads a CronWorkflow's timeZone: an IANA name, empty for UTC. Local is refused:
// time.LoadLocation would give the zone of the machine reading it (the controller's, or the
// laptop's of whoever runs lint).
func Location(timeZone string) (*time.Location, error) {
	switch {
	case timeZone == "":
		return time.UTC, nil
	case strings.EqualFold(timeZone, "Local"):
		return nil, fmt.Errorf("timeZone %q: name an IANA time zone such as Europe/Berlin, not the controller's own", timeZone)
	}
	loc, err := time.LoadLocation(timeZone)
	if err != nil {
		return nil, fmt.Errorf("timeZone %q: %w", timeZone, err)
	}
	return loc, nil
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

// Next is the first scheduled time after t, zero if the schedule has none in the next five years.
//
// The schedule names wall-clock times in s.loc. They are found where robfig/cron is exact, in UTC
// (no clock changes), and mapped to instants zone by zone (a zone being a span of one UTC offset),
// because robfig/cron's own arithmetic in a zone skips, repeats or shifts times around clock
// changes (a 30-minute change, as in Australia/Lord_Howe, gives it times the schedule does not
// name). Where the clock changes by less than three hours, a schedule at fixed times of day runs as
// cron (ISC, Vixie) does: a time of day the clock goes back over runs once, the first time; one
// it jumps over runs at the moment of the jump. Any other schedule runs at every instant whose
// wall clock it names: both times in a repeated hour, none in a skipped one. @every schedules
// count real time and are left to robfig/cron.
func (s Schedule) Next(t time.Time) time.Time {
	if _, ok := s.spec.(*cron.SpecSchedule); !ok {
		return s.spec.Next(t)
	}
	at := t.In(s.loc)
	lower, inclusive := wallOf(at), false
	if start, back := s.lastChange(at); back < 0 && s.handled(back) {
		// t is in the hour the clock repeats: its scheduled times ran before the clock went back.
		if first := wallAt(start, offsetBefore(start, s.loc)); lower.Before(first) {
			lower, inclusive = first, true
		}
	}
	for range 10000 { // a few zones a year; robfig/cron looks five years ahead
		_, off := at.Zone()
		_, end := at.ZoneBounds()
		w := s.nextWall(lower, inclusive)
		if w.IsZero() {
			return time.Time{}
		}
		if next := time.Unix(w.Unix()-int64(off), 0).In(s.loc); end.IsZero() || next.Before(end) {
			return next
		}
		// The next wall-clock time named comes after this zone ends: go on in the next one.
		at = end.In(s.loc)
		_, newOff := at.Zone()
		change := time.Duration(newOff-off) * time.Second
		oldWall, newWall := wallAt(end, off), wallAt(end, newOff)
		if change > 0 && s.handled(change) {
			if g := s.nextWall(oldWall, true); !g.IsZero() && g.Before(newWall) {
				return at // a time of day the clock jumped over
			}
		}
		lower, inclusive = newWall, true
		if change < 0 && s.handled(change) {
			lower = oldWall // the times of day the clock repeats ran before it went back
		}
	}
	return time.Time{}
}

// Skipped tells, for a time Next returned, whether it is the moment the clock jumped over a time
// of day the schedule names, and which (as the schedule reads it: "02:30").
func (s Schedule) Skipped(t time.Time) (string, bool) {
	if _, ok := s.spec.(*cron.SpecSchedule); !ok {
		return "", false
	}
	start, change := s.lastChange(t.In(s.loc))
	if change <= 0 || !s.handled(change) || !start.Equal(t) {
		return "", false
	}
	g := s.nextWall(wallAt(start, offsetBefore(start, s.loc)), true)
	if g.IsZero() || !g.Before(wallOf(t.In(s.loc))) {
		return "", false
	}
	return g.Format("15:04"), true
}

// handled tells whether a clock change is one Next treats as cron does, for this schedule.
func (s Schedule) handled(change time.Duration) bool {
	return s.fixed && change != 0 && change.Abs() < maxClockChange
}

// lastChange returns the start of the zone in effect at t (a time in s.loc) and by how much the
// clock changed then (zero if the zone has no start).
func (s Schedule) lastChange(t time.Time) (time.Time, time.Duration) {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return start, 0
	}
	_, off := t.Zone()
	return start, time.Duration(off-offsetBefore(start, s.loc)) * time.Second
}

// nextWall is the first wall-clock time the schedule names after lower (or at it, if inclusive);
// wall clocks are times in UTC.
func (s Schedule) nextWall(lower time.Time, inclusive bool) time.Time {
	if inclusive {
		lower = lower.Add(-time.Nanosecond)
	}
	return s.spec.Next(lower)
}

// wallOf is the wall clock t shows in its location, as a time in UTC.
func wallOf(t time.Time) time.Time {
	_, off := t.Zone()
	return time.Unix(t.Unix()+int64(off), int64(t.Nanosecond())).UTC()
}

// wallAt is the wall clock an offset shows at the instant t, as a time in UTC.
func wallAt(t time.Time, off int) time.Time { return time.Unix(t.Unix()+int64(off), 0).UTC() }

// offsetBefore is the offset in effect just before the instant t.
func offsetBefore(t time.Time, loc *time.Location) int {
	_, off := t.Add(-time.Nanosecond).In(loc).Zone()
	return off
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
