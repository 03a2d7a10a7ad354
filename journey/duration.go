package journey

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

var durationPattern = regexp.MustCompile(`^(\d+)(s|m|h|d|w)$`)

var durationUnits = map[string]time.Duration{
	"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour,
}

// maxDuration keeps parsed durations far from time.Duration overflow (about
// 292 years); no journey waits longer than a century.
const maxDuration = 100 * 365 * 24 * time.Hour

// ParseDuration parses a journey duration: a whole number and one unit of
// s, m, h, d or w ("90m", "3d", "0s"). A day is 24 hours.
func ParseDuration(s string) (time.Duration, error) {
	m := durationPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("duration %q: want a whole number followed by s, m, h, d or w, such as 30m or 3d", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := durationUnits[m[2]]
	if err != nil || n > int64(maxDuration/unit) {
		return 0, fmt.Errorf("duration %q: longer than 100 years", s)
	}
	return time.Duration(n) * unit, nil
}
