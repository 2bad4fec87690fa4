package cronschedule

import (
	"testing"
	"time"
)

// FuzzDecide: for any schedule that parses, any last handled time and any now, Decide never
// panics, never makes a time due that is not after the last handled one or is after now, and
// always offers a next time after now, and a schedule at fixed times of day never runs twice at one
// time of day across a clock change, and in UTC times are robfig/cron's; RunName is a valid Workflow name for a 52-character
// CronWorkflow name.
func FuzzDecide(f *testing.F) {
	f.Add("*/5 * * * *", "", int64(1795946700), int64(3*3600), int64(-1))
	f.Add("0 9 * * 1-5", "Asia/Tokyo", int64(1795946700), int64(86400*9), int64(60))
	f.Add("@hourly", "Europe/Berlin", int64(0), int64(86400*400), int64(0))
	f.Add("30 2 * * *", "America/New_York", int64(1773468000), int64(86400), int64(-1))      // across a DST change
	f.Add("30 2 * * *", "Europe/Berlin", int64(1824847200), int64(3600*10), int64(-1))       // the clock goes back (2027-10-31)
	f.Add("0 0 * * *", "America/Sao_Paulo", int64(1541260800), int64(3600*20), int64(-1))    // midnight skipped (2018-11-04)
	f.Add("30 1 * * *", "Australia/Lord_Howe", int64(1538740800), int64(86400*2), int64(-1)) // a 30-minute change
	f.Add("@every 90m", "Europe/Berlin", int64(1824847200), int64(3600*10), int64(-1))
	f.Fuzz(func(t *testing.T, schedule, tz string, lastUnix, ahead, deadlineSeconds int64) {
		sched, err := Parse(schedule, tz)
		if err != nil {
			return
		}
		if lastUnix < 0 || lastUnix > 4102444800 || ahead < 0 || ahead > 86400*800 {
			return // 1970 to 2100, outages up to 800 days
		}
		last := time.Unix(lastUnix, 0).UTC()
		now := last.Add(time.Duration(ahead) * time.Second)
		var deadline *time.Duration
		if deadlineSeconds >= 0 {
			d := time.Duration(deadlineSeconds) * time.Second
			deadline = &d
		}
		d := Decide(sched, last, now, deadline)
		if !d.Time.IsZero() && (!d.Time.After(last) || d.Time.After(now)) {
			t.Fatalf("due %v is not in (%v, %v]", d.Time, last, now)
		}
		if d.Time.IsZero() && (d.Missed != 0 || d.TooLate) {
			t.Fatalf("nothing due but missed %d, tooLate %v", d.Missed, d.TooLate)
		}
		if d.TooLate && (deadline == nil || now.Sub(d.Time) <= *deadline) {
			t.Fatalf("tooLate with deadline %v, due %v, now %v", deadline, d.Time, now)
		}
		if !d.Next.IsZero() && !d.Next.After(now) {
			t.Fatalf("next %v is not after now %v", d.Next, now)
		}
		if n := sched.Next(d.Next); !d.Next.IsZero() && !n.IsZero() {
			checkClockChange(t, sched, d.Next, n)
		}
		if sched.loc == time.UTC && !sched.Next(now).Equal(sched.spec.Next(now)) {
			t.Fatalf("in UTC, next after %v is %v; robfig/cron says %v", now, sched.Next(now), sched.spec.Next(now))
		}
		if name := RunName("a-cron-workflow-named-with-exactly-fifty-two-chars-x", d.Next); len(name) > 63 {
			t.Fatalf("run name %q is longer than 63", name)
		}
	})
}

// checkClockChange: two consecutive times of a schedule are in order, and for a schedule at fixed
// times of day less than maxClockChange apart, do not show the same time of day.
func checkClockChange(t *testing.T, sched Schedule, a, b time.Time) {
	t.Helper()
	if !b.After(a) {
		t.Fatalf("next after %v is %v", a, b)
	}
	wall := func(x time.Time) string { return x.In(sched.loc).Format("2006-01-02 15:04") }
	if sched.fixed && b.Sub(a) < maxClockChange && wall(a) == wall(b) {
		t.Fatalf("%v and %v are both %s in %s", a, b, wall(a), sched.loc)
	}
}
