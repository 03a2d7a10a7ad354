package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/kalcifer/kalcifer/store"
)

func TestTenantQuietHours(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		set := ok[store.Tenant](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": true,
			"quiet_hours": map[string]any{"start": "22:00", "end": "07:30", "channels": []string{"sms", "email", "sms"}}}}), http.StatusOK)
		q := set.Settings.QuietHours
		if q == nil || q.Start != "22:00" || q.End != "07:30" || !slices.Equal(q.Channels, []string{"email", "sms"}) || !set.Settings.RejectUnknownCustomers {
			t.Fatalf("settings %+v quiet hours %+v", set.Settings, q)
		}
		// Settings not sent keep their value, the quiet hours too.
		kept := ok[store.Tenant](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": false}}), http.StatusOK)
		if kept.Settings.QuietHours == nil || kept.Settings.QuietHours.Start != "22:00" || kept.Settings.RejectUnknownCustomers {
			t.Fatalf("settings %+v", kept.Settings)
		}
		replaced := ok[store.Tenant](e.do("PATCH", "/tenant", `{"settings":{"quiet_hours":{"start":"08:00","end":"09:00","channels":["push"]}}}`), http.StatusOK)
		if q := replaced.Settings.QuietHours; q == nil || q.Start != "08:00" || !slices.Equal(q.Channels, []string{"push"}) {
			t.Fatalf("replaced %+v", q)
		}
		if stored, err := e.store.Tenants().GetTenant(t.Context(), e.tenant.ID); err != nil || stored.Settings.QuietHours == nil || stored.Settings.QuietHours.End != "09:00" {
			t.Fatalf("stored %+v (%v)", stored.Settings, err)
		}

		for _, tc := range []struct {
			name, quiet string
			code, field string
		}{
			{"bad start", `{"start":"25:00","end":"07:00","channels":["sms"]}`, "invalid_field", "settings.quiet_hours.start"},
			{"bad end", `{"start":"22:00","end":"7:00","channels":["sms"]}`, "invalid_field", "settings.quiet_hours.end"},
			{"empty window", `{"start":"22:00","end":"22:00","channels":["sms"]}`, "invalid_field", "settings.quiet_hours"},
			{"webhook", `{"start":"22:00","end":"07:00","channels":["sms","webhook"]}`, "invalid_field", "settings.quiet_hours.channels[1]"},
			{"no channels", `{"start":"22:00","end":"07:00","channels":[]}`, "invalid_field", "settings.quiet_hours.channels"},
			{"missing channels", `{"start":"22:00","end":"07:00"}`, "missing_field", "settings.quiet_hours.channels"},
			{"missing start", `{"end":"07:00","channels":["sms"]}`, "missing_field", "settings.quiet_hours.start"},
			{"start of a wrong type", `{"start":2200,"end":"07:00","channels":["sms"]}`, "invalid_field", "settings.quiet_hours.start"},
			{"unknown field", `{"start":"22:00","end":"07:00","channels":["sms"],"days":[1]}`, "unknown_field", "settings.quiet_hours.days"},
			{"not an object", `"22:00-07:00"`, "invalid_field", "settings.quiet_hours"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				if got := e.do("PATCH", "/tenant", `{"settings":{"quiet_hours":`+tc.quiet+`}}`).fails(http.StatusBadRequest, tc.code); got.field() != tc.field {
					t.Fatalf("error names %q, want %q", got.field(), tc.field)
				}
			})
		}

		removed := e.do("PATCH", "/tenant", `{"settings":{"quiet_hours":null}}`)
		var raw struct {
			Settings map[string]json.RawMessage `json:"settings"`
		}
		if err := json.Unmarshal(ok[json.RawMessage](removed, http.StatusOK), &raw); err != nil || raw.Settings["quiet_hours"] != nil {
			t.Fatalf("quiet hours not removed: %s", removed.body)
		}
		if got := ok[store.Tenant](e.do("GET", "/tenant", nil), http.StatusOK); got.Settings.QuietHours != nil {
			t.Fatalf("quiet hours still stored: %+v", got.Settings.QuietHours)
		}
	})
}
