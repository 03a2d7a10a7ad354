package outbox

import (
	"fmt"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// clock reads "HH:MM" as minutes after midnight.
func clock(s string) (int, error) {
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || n != 2 || len(s) != 5 || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day such as 21:30", s)
	}
	return h*60 + m, nil
}

// CheckQuietHours returns what is wrong with q, if anything.
func CheckQuietHours(q store.QuietHours) error {
	start, err := clock(q.Start)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	end, err := clock(q.End)
	if err != nil {
		return fmt.Errorf("end: %w", err)
	}
	if start == end {
		return fmt.Errorf("start and end are both %s: the window would be empty", q.Start)
	}
	return nil
}

// QuietUntil says whether now falls in the quiet hours q for a customer in
// the time zone tz (UTC when tz is empty or unknown), and if so when they
// end: the next End in that zone. Days are counted in the zone, so a
// window keeps its local times across daylight-saving changes.
func QuietUntil(q *store.QuietHours, channel, tz string, now time.Time) (time.Time, bool) {
	if q == nil || !slices.Contains(q.Channels, channel) {
		return time.Time{}, false
	}
	start, err1 := clock(q.Start)
	end, err2 := clock(q.End)
	if err1 != nil || err2 != nil || start == end {
		return time.Time{}, false
	}
	loc, err := time.LoadLocation(tz)
	if tz == "" || err != nil {
		loc = time.UTC
	}
	local := now.In(loc)
	minute := local.Hour()*60 + local.Minute()
	var inside bool
	if start < end {
		inside = minute >= start && minute < end
	} else {
		inside = minute >= start || minute < end
	}
	if !inside {
		return time.Time{}, false
	}
	day := local.Day()
	if minute >= end {
		day++ // a window past midnight ends tomorrow
	}
	until := time.Date(local.Year(), local.Month(), day, end/60, end%60, 0, 0, loc)
	if !until.After(now) {
		// A daylight-saving gap swallowed the end's local time.
		until = now.Add(time.Minute)
	}
	return until, true
}
