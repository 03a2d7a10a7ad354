package nodes

import (
	"encoding/json"
	"fmt"
	"time"
	// Timezones are checked against the embedded database so that validation
	// gives the same answer in containers without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/kalcifer/kalcifer/journey"
)

const waitUntilSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Wait until",
  "description": "Pauses the customer until a moment: either an exact datetime, or the next time_of_day on one of days_of_week in the customer's timezone.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "datetime": {
      "type": "string",
      "title": "Date and time",
      "description": "Exact RFC 3339 moment to resume at, such as 2030-01-31T09:00:00Z; a moment already past resumes at once. Leave empty to use time_of_day.",
      "format": "date-time"
    },
    "time_of_day": {
      "type": "string",
      "title": "Time of day",
      "description": "24-hour HH:MM in the customer's timezone; required unless datetime is set.",
      "pattern": "^([01]\\d|2[0-3]):[0-5]\\d$",
      "examples": ["09:00", "18:30"]
    },
    "days_of_week": {
      "type": "array",
      "title": "Days of week",
      "description": "Days on which time_of_day may be reached.",
      "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
      "minItems": 1,
      "uniqueItems": true,
      "default": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    },
    "timezone": {
      "type": "string",
      "title": "Fallback timezone",
      "description": "IANA timezone used for customers whose profile has none; UTC when empty.",
      "minLength": 1,
      "examples": ["Europe/Paris", "America/New_York"]
    }
  }
}`

type waitUntilConfig struct {
	Datetime   string   `json:"datetime"`
	TimeOfDay  string   `json:"time_of_day"`
	DaysOfWeek []string `json:"days_of_week"`
	Timezone   string   `json:"timezone"`
}

type waitUntil struct{ base }

func newWaitUntil() Type {
	return waitUntil{newBase("wait_until", journey.CategoryLogic,
		"Pauses the customer until a given datetime or the next chosen time of day in their timezone.", waitUntilSchema)}
}

func (t waitUntil) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c waitUntilConfig
	return t.validate(config, &c, func(ch *checks) {
		if c.Datetime != "" {
			if _, err := time.Parse(time.RFC3339, c.Datetime); err != nil {
				ch.add("/datetime", "must be an RFC 3339 timestamp such as 2030-01-31T09:00:00Z")
			}
			for field, set := range map[string]bool{
				"/time_of_day": c.TimeOfDay != "", "/days_of_week": c.DaysOfWeek != nil, "/timezone": c.Timezone != "",
			} {
				if set {
					ch.add(field, "cannot be combined with datetime")
				}
			}
			return
		}
		if c.TimeOfDay == "" {
			ch.add("/time_of_day", "is required unless datetime is set")
		}
		if c.Timezone != "" {
			// LoadLocation also accepts "Local", the server's own zone, which
			// says nothing about where a customer is.
			if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "Local" {
				ch.add("/timezone", "must be an IANA timezone such as Europe/Paris")
			}
		}
	})
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func (waitUntil) Execute(x *Exec) Result {
	c := config[waitUntilConfig](x.Node)
	if c.Datetime != "" {
		at, err := time.Parse(time.RFC3339, c.Datetime)
		if err != nil {
			return failed("datetime", err)
		}
		return parkUntil(x, at)
	}
	at, err := c.next(x.Now, c.location(x.Customer.Timezone))
	if err != nil {
		return failed("time_of_day", err)
	}
	return parkUntil(x, at)
}

func (waitUntil) Resume(*Exec, Wait, Resume) Result { return Result{Outcome: Completed} }

// location is the customer's timezone, else the node's, else UTC; a
// customer's zone that does not load falls back rather than failing, since
// profiles are written by integrations the journey author does not control.
func (c waitUntilConfig) location(customerZone string) *time.Location {
	for _, name := range []string{customerZone, c.Timezone} {
		if name == "" || name == "Local" {
			continue
		}
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	return time.UTC
}

// next finds the first time_of_day on an allowed weekday at or after now.
// Each candidate is built from the local calendar date, so a DST change
// between now and then moves the instant, not the wall-clock time.
func (c waitUntilConfig) next(now time.Time, loc *time.Location) (time.Time, error) {
	tod, err := time.Parse("15:04", c.TimeOfDay)
	if err != nil {
		return time.Time{}, err
	}
	allowed := map[time.Weekday]bool{}
	for _, d := range c.DaysOfWeek {
		allowed[weekdays[d]] = true
	}
	local := now.In(loc)
	for day := 0; day <= 7; day++ {
		at := time.Date(local.Year(), local.Month(), local.Day()+day, tod.Hour(), tod.Minute(), 0, 0, loc)
		at = pastGap(at, local.Year(), local.Month(), local.Day()+day, tod)
		if (len(allowed) == 0 || allowed[at.Weekday()]) && !at.Before(now) {
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("no allowed day in days_of_week %v", c.DaysOfWeek)
}

// pastGap moves a wall-clock time that does not exist (a spring-forward gap)
// to as far after the gap as it was into it, 02:30 becoming 03:30, as cron
// does; time.Date alone may land before the gap, earlier than asked.
func pastGap(at time.Time, year int, month time.Month, day int, tod time.Time) time.Time {
	want := time.Date(year, month, day, tod.Hour(), tod.Minute(), 0, 0, time.UTC)
	got := time.Date(at.Year(), at.Month(), at.Day(), at.Hour(), at.Minute(), 0, 0, time.UTC)
	if got.Before(want) {
		return at.Add(want.Sub(got))
	}
	return at
}
