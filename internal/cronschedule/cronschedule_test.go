package cronschedule

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, schedule, tz string) func(last, now time.Time, deadline *time.Duration) Due {
	t.Helper()
	sched, err := Parse(schedule, tz)
	if err != nil {
		t.Fatal(err)
	}
	return func(last, now time.Time, deadline *time.Duration) Due { return Decide(sched, last, now, deadline) }
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDecide(t *testing.T) {
	every5 := mustParse(t, "*/5 * * * *", "")
	minute := time.Minute
	for _, tc := range []struct {
		name      string
		decide    func(last, now time.Time, deadline *time.Duration) Due
		last, now string
		deadline  *time.Duration
		want      string // zero when nothing is due
		missed    int
		tooLate   bool
		next      string
	}{
		{"nothing due yet", every5, "2026-11-29T10:00:00Z", "2026-11-29T10:04:59Z", nil, "", 0, false, "2026-11-29T10:05:00Z"},
		{"due exactly on time", every5, "2026-11-29T10:00:00Z", "2026-11-29T10:05:00Z", nil, "2026-11-29T10:05:00Z", 0, false, "2026-11-29T10:10:00Z"},
		{"handled already", every5, "2026-11-29T10:05:00Z", "2026-11-29T10:06:00Z", nil, "", 0, false, "2026-11-29T10:10:00Z"},
		{"three hours down: one run, 35 missed", every5, "2026-11-29T10:00:00Z", "2026-11-29T13:02:00Z", nil, "2026-11-29T13:00:00Z", 35, false, "2026-11-29T13:05:00Z"},
		{"late within the deadline", every5, "2026-11-29T10:00:00Z", "2026-11-29T10:05:50Z", &minute, "2026-11-29T10:05:00Z", 0, false, "2026-11-29T10:10:00Z"},
		{"later than the deadline", every5, "2026-11-29T10:00:00Z", "2026-11-29T10:07:00Z", &minute, "2026-11-29T10:05:00Z", 0, true, "2026-11-29T10:10:00Z"},
		{"time zone", mustParse(t, "0 9 * * *", "Asia/Tokyo"), "2026-11-28T01:00:00Z", "2026-11-29T00:30:00Z", nil, "2026-11-29T00:00:00Z", 0, false, "2026-11-30T00:00:00Z"},
		{"descriptor", mustParse(t, "@hourly", ""), "2026-11-29T10:00:00Z", "2026-11-29T11:00:01Z", nil, "2026-11-29T11:00:00Z", 0, false, "2026-11-29T12:00:00Z"},
		{"a year down is bounded", every5, "2020-01-01T00:00:00Z", "2026-11-29T10:01:00Z", nil, "2026-11-29T10:00:00Z", int(maxLookback / (5 * time.Minute)), false, "2026-11-29T10:05:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.decide(at(tc.last), at(tc.now), tc.deadline)
			if (tc.want == "") != d.Time.IsZero() || (tc.want != "" && !d.Time.Equal(at(tc.want))) {
				t.Errorf("due = %v, want %q", d.Time, tc.want)
			}
			missedOK := d.Missed == tc.missed
			if strings.HasPrefix(tc.name, "a year") { // the lookback's start may fall between two times
				missedOK = d.Missed >= tc.missed-1 && d.Missed <= tc.missed
			}
			if !missedOK {
				t.Errorf("missed = %d, want %d", d.Missed, tc.missed)
			}
			if d.TooLate != tc.tooLate {
				t.Errorf("tooLate = %v, want %v", d.TooLate, tc.tooLate)
			}
			if !d.Next.Equal(at(tc.next)) {
				t.Errorf("next = %v, want %s", d.Next, tc.next)
			}
		})
	}
}

// TestClockChanges: a schedule at fixed times of day runs once when the clock goes back and, when
// it goes forward over a scheduled time, at the moment of the change; a schedule with a wildcard
// hour or minute runs every hour the clock shows.
func TestClockChanges(t *testing.T) {
	for _, tc := range []struct {
		name, schedule, tz, from string
		want                     []string // the next scheduled times from `from`, in UTC
		skipped                  string   // the time of day the first of them stands for, if skipped
	}{
		{"forward over 02:30 in Berlin: at 03:00 CEST", "30 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"}, "02:30"},
		{"back over 02:30 in Berlin: once, the first time", "30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00Z",
			[]string{"2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"}, ""},
		{"back over 01:30 in New York: once", "30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z",
			[]string{"2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z"}, ""},
		{"forward over 02:00 and 02:45 in New York: one run at 03:00 EDT", "0,45 2 * * *", "America/New_York", "2027-03-13T12:00:00Z",
			[]string{"2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z", "2027-03-15T06:45:00Z"}, "02:00"},
		{"@daily where midnight is skipped (Sao Paulo 2018)", "@daily", "America/Sao_Paulo", "2018-11-03T12:00:00Z",
			[]string{"2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z"}, "00:00"},
		{"a time the change does not touch", "30 4 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T02:30:00Z", "2027-03-29T02:30:00Z"}, ""},
		{"wildcard hour: both 02:30s when the clock goes back", "30 * * * *", "Europe/Berlin", "2027-10-30T23:45:00Z",
			[]string{"2027-10-31T00:30:00Z", "2027-10-31T01:30:00Z", "2027-10-31T02:30:00Z"}, ""},
		{"wildcard minute: no 02:xx when the clock goes forward", "*/30 2-3 * * *", "Europe/Berlin", "2027-03-28T00:45:00Z",
			[]string{"2027-03-28T01:00:00Z", "2027-03-28T01:30:00Z", "2027-03-29T00:00:00Z"}, ""},
		{"UTC has no changes", "30 2 * * *", "", "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T02:30:00Z", "2027-03-29T02:30:00Z"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sched, err := Parse(tc.schedule, tc.tz)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for x := at(tc.from); len(got) < len(tc.want); {
				x = sched.Next(x)
				got = append(got, x.UTC().Format(time.RFC3339))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("next times\n got %v\nwant %v", got, tc.want)
			}
			wall, skipped := sched.Skipped(at(tc.want[0]))
			if skipped != (tc.skipped != "") || wall != tc.skipped {
				t.Errorf("Skipped(%s) = %q, %v; want %q", tc.want[0], wall, skipped, tc.skipped)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ schedule, tz, want string }{
		{"every day", "", "expected exactly 5 fields"},
		{"61 * * * *", "", "end of range (61) above maximum (59)"},
		{"* * * * * *", "", "expected exactly 5 fields"},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", "", "set the time zone in spec.timeZone"},
		{"0 0 30 2 *", "", "never fires"},
		{"0 9 * * *", "Mars/Olympus", "unknown time zone Mars/Olympus"},
		{"0 9 * * *", "Local", `timeZone "Local": name an IANA time zone such as Europe/Berlin, not the controller's own`},
	} {
		if _, err := Parse(tc.schedule, tc.tz); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error with %q", tc.schedule, tc.tz, err, tc.want)
		}
	}
}

func TestRunName(t *testing.T) {
	if got := RunName("nightly", at("2026-11-29T10:05:00Z")); got != "nightly-29932445" {
		t.Errorf("RunName = %s", got)
	}
}

// TestDailyRunsOncePerDay: a schedule at a fixed time of day runs exactly once on every local day,
// at every hour and half hour of the day, in zones with daylight saving changes of an hour (at
// 02:00, 03:00, midnight, or in the evening), of half an hour (Lord Howe), and with several changes
// a year (Morocco, Chile), over nine years.
func TestDailyRunsOncePerDay(t *testing.T) {
	zones := []string{"Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Australia/Lord_Howe", "Africa/Casablanca",
		"America/Santiago", "Asia/Gaza", "America/Havana", "Pacific/Chatham", "Australia/Sydney"}
	from, to := at("2018-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")
	for _, zone := range zones {
		for minutes := 0; minutes < 24*60; minutes += 30 {
			schedule := fmt.Sprintf("%d %d * * *", minutes%60, minutes/60)
			sched, err := Parse(schedule, zone)
			if err != nil {
				t.Fatal(err)
			}
			days := map[string]int{}
			for x := sched.Next(from); x.Before(to); x = sched.Next(x) {
				days[x.In(sched.loc).Format(time.DateOnly)]++
			}
			for d := from.In(sched.loc).AddDate(0, 0, 1); d.Before(to.In(sched.loc).AddDate(0, 0, -1)); d = d.AddDate(0, 0, 1) {
				if n := days[d.Format(time.DateOnly)]; n != 1 {
					t.Errorf("%q in %s ran %d times on %s", schedule, zone, n, d.Format(time.DateOnly))
				}
			}
		}
	}
}
