package cronschedule

import (
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, schedule, tz string) func(last, now time.Time, deadline *time.Duration) Due {
	t.Helper()
	sched, loc, err := Parse(schedule, tz)
	if err != nil {
		t.Fatal(err)
	}
	return func(last, now time.Time, deadline *time.Duration) Due { return Decide(sched, loc, last, now, deadline) }
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

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ schedule, tz, want string }{
		{"every day", "", "expected exactly 5 fields"},
		{"61 * * * *", "", "end of range (61) above maximum (59)"},
		{"* * * * * *", "", "expected exactly 5 fields"},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", "", "set the time zone in spec.timeZone"},
		{"0 0 30 2 *", "", "never fires"},
		{"0 9 * * *", "Mars/Olympus", "unknown time zone Mars/Olympus"},
	} {
		if _, _, err := Parse(tc.schedule, tc.tz); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error with %q", tc.schedule, tc.tz, err, tc.want)
		}
	}
}

func TestRunName(t *testing.T) {
	if got := RunName("nightly", at("2026-11-29T10:05:00Z")); got != "nightly-29932445" {
		t.Errorf("RunName = %s", got)
	}
}
