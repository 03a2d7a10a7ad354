package nodes

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestBranchesAndTerminal(t *testing.T) {
	tests := []struct {
		typ, config string
		branches    []string
		terminal    bool
	}{
		{"event_entry", `{"event_type":"x"}`, nil, false},
		{"segment_entry", `{"segment_id":"s"}`, nil, false},
		{"webhook_entry", `{}`, nil, false},
		{"send_email", `{"template_id":"t"}`, nil, false},
		{"send_sms", `{"body":"b"}`, nil, false},
		{"send_push", `{"template_id":"t"}`, nil, false},
		{"send_whatsapp", `{"template_id":"t"}`, nil, false},
		{"call_webhook", `{"url":"https://example.com"}`, nil, false},
		{"wait", `{"duration":"1d"}`, nil, false},
		{"wait_until", `{"time_of_day":"09:00"}`, nil, false},
		{"wait_for_event", `{"event_type":"x"}`, []string{"event_received"}, false},
		{"wait_for_event", `{"event_type":"x","timeout":"3d"}`, []string{"event_received", "timed_out"}, false},
		{"wait_for_event", `{"event_type":"x","timeout":"3d","branches":{"event_received":"paid","timed_out":"unpaid"}}`, []string{"paid", "unpaid"}, false},
		{"wait_for_event", `{"event_type":"x","timeout":"3d","branches":{"timed_out":"late"}}`, []string{"event_received", "late"}, false},
		{"wait_for_event", `{"event_type":"x","branches":{"event_received":"opened"}}`, []string{"opened"}, false},
		{"condition", `{"expression":"true"}`, []string{"true", "false"}, false},
		{"ab_split", `{"variants":[{"key":"control","weight":1},{"key":"new_copy","weight":3}]}`, []string{"control", "new_copy"}, false},
		{"ab_split", `{"variants":[{"key":"b","weight":1},{"key":"a","weight":1},{"key":"c","weight":1}],"holdout_percent":10}`, []string{"b", "a", "c"}, false},
		{"frequency_cap", `{"max_messages":1,"time_window":"1d"}`, []string{"allowed", "capped"}, false},
		{"update_profile", `{"fields":{"a":1}}`, nil, false},
		{"add_tag", `{"tag":"t"}`, nil, false},
		{"remove_tag", `{"tag":"t"}`, nil, false},
		{"custom_code", `{"code":"x"}`, nil, false},
		{"custom_code", `{"code":"x","branches":["hot","cold","warm"]}`, []string{"hot", "cold", "warm"}, false},
		{"goal_reached", `{"goal_name":"g"}`, nil, false},
		{"goal_reached", `{"goal_name":"g","exit_after_goal":false}`, nil, false},
		{"goal_reached", `{"goal_name":"g","exit_after_goal":true}`, nil, true},
		{"journey_exit", `{}`, nil, true},
		{"journey_exit", `{"reason":"done"}`, nil, true},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		typ, ok := Default().Get(tt.typ)
		if !ok {
			t.Fatalf("unknown type %s", tt.typ)
		}
		covered[tt.typ] = true
		config := json.RawMessage(tt.config)
		if p := typ.ValidateConfig(config); len(p) != 0 {
			t.Errorf("%s %s is invalid: %+v", tt.typ, tt.config, p)
		}
		if got := typ.Branches(config); !slices.Equal(got, tt.branches) {
			t.Errorf("%s %s: Branches = %q, want %q", tt.typ, tt.config, got, tt.branches)
		}
		if got := typ.Terminal(config); got != tt.terminal {
			t.Errorf("%s %s: Terminal = %v, want %v", tt.typ, tt.config, got, tt.terminal)
		}
	}
	if len(covered) != 20 {
		t.Errorf("covered %d types, want 20", len(covered))
	}
}

// The graph validator owns the returned slice; changing it must not change
// what the type reports next time.
func TestBranchesAreFreshSlices(t *testing.T) {
	for _, name := range []string{"condition", "frequency_cap", "wait_for_event"} {
		typ, _ := Default().Get(name)
		config := json.RawMessage(`{"event_type":"x","timeout":"1d","expression":"true","max_messages":1,"time_window":"1d"}`)
		typ.Branches(config)[0] = "changed"
		typ.BranchKeys()[0] = "changed"
		if typ.Branches(config)[0] == "changed" || typ.BranchKeys()[0] == "changed" {
			t.Errorf("%s shares its branch slice", name)
		}
	}
}

func TestBranchesOnInvalidConfig(t *testing.T) {
	for _, info := range Default().Catalog() {
		typ, _ := Default().Get(info.Type)
		for _, config := range []string{``, `null`, `[]`, `{"variants":"x","branches":7,"timeout":5,"exit_after_goal":"yes"}`, `{`} {
			typ.Branches(json.RawMessage(config))
			typ.Terminal(json.RawMessage(config))
		}
	}
	wfe, _ := Default().Get("wait_for_event")
	if got := wfe.Branches(json.RawMessage(`{"branches":"x"}`)); !slices.Equal(got, []string{"event_received"}) {
		t.Errorf("wait_for_event with broken branches = %q, want the default", got)
	}
	je, _ := Default().Get("journey_exit")
	if !je.Terminal(json.RawMessage(`{`)) {
		t.Error("journey_exit is not terminal on a broken config")
	}
}
