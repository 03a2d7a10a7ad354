package journey

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0s": 0, "45s": 45 * time.Second, "90m": 90 * time.Minute, "12h": 12 * time.Hour,
		"3d": 72 * time.Hour, "2w": 14 * 24 * time.Hour, "36500d": 36500 * 24 * time.Hour,
	}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1", "d", "1.5h", "-1d", "1y", "1d2h", " 1d", "1D", "99999999999999999999s", "5300w"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"3d", "0s", "9223372036854775807s", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && (d < 0 || d > maxDuration) {
			t.Fatalf("ParseDuration(%q) = %v outside [0, 100y]", s, d)
		}
	})
}
