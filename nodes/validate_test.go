package nodes

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// configCase is one config of one type; fields lists the JSON pointers of
// the expected problems in the order returned, none for a valid config.
type configCase struct {
	name   string
	config string
	fields []string
}

var configCases = map[string][]configCase{
	"event_entry": {
		{"minimal", `{"event_type":"signed_up"}`, nil},
		{"filter", `{"event_type":"signed_up","filter":{"plan":"premium","trial":false,"seats":3,"ref":null}}`, nil},
		{"missing event type", `{}`, []string{"/event_type"}},
		{"empty event type", `{"event_type":""}`, []string{"/event_type"}},
		{"nested filter value", `{"event_type":"x","filter":{"plan":{"eq":"premium"}}}`, []string{"/filter/plan"}},
		{"unknown field", `{"event_type":"x","segment_id":"s"}`, []string{"/segment_id"}},
	},
	"segment_entry": {
		{"minimal", `{"segment_id":"vip"}`, nil},
		{"schedule", `{"segment_id":"vip","schedule":"0 9 * * 1-5"}`, nil},
		{"step schedule", `{"segment_id":"vip","schedule":"*/15 * * * *"}`, nil},
		{"missing segment", `{"schedule":"0 9 * * *"}`, []string{"/segment_id"}},
		{"out of range", `{"segment_id":"vip","schedule":"61 * * * *"}`, []string{"/schedule"}},
		{"six fields", `{"segment_id":"vip","schedule":"0 0 9 * * *"}`, []string{"/schedule"}},
		{"descriptor", `{"segment_id":"vip","schedule":"@daily"}`, []string{"/schedule"}},
		{"timezone prefix", `{"segment_id":"vip","schedule":"CRON_TZ=UTC 0 9 * *"}`, []string{"/schedule"}},
		{"not a string", `{"segment_id":"vip","schedule":5}`, []string{"/schedule"}},
	},
	"webhook_entry": {
		{"no secret", `{}`, nil},
		{"secret", `{"secret":"0123456789abcdef"}`, nil},
		{"short secret", `{"secret":"0123456789abcde"}`, []string{"/secret"}},
		{"unknown field", `{"secret":"0123456789abcdef","url":"x"}`, []string{"/url"}},
	},
	"send_email": {
		{"template", `{"template_id":"welcome"}`, nil},
		{"inline", `{"subject":"Hi {{ profile.name }}","body":"<p>Welcome</p>","from":"Acme <hi@acme.com>","reply_to":"help@acme.com","provider":"ses"}`, nil},
		{"template and inline", `{"template_id":"welcome","subject":"s","body":"b"}`, nil},
		{"empty", `{}`, []string{"/body", "/subject"}},
		{"subject only", `{"subject":"Hi"}`, []string{"/body"}},
		{"empty template", `{"template_id":"","body":"b","subject":"s"}`, []string{"/template_id"}},
		{"bad from", `{"template_id":"t","from":"not an address"}`, []string{"/from"}},
		{"bad reply to", `{"template_id":"t","reply_to":"@"}`, []string{"/reply_to"}},
		{"wrong type", `{"template_id":7}`, []string{"/body", "/subject", "/template_id"}},
	},
	"send_sms": {
		{"template", `{"template_id":"otp"}`, nil},
		{"inline", `{"body":"Your code is {{ context.code }}","provider":"twilio"}`, nil},
		{"empty", `{}`, []string{"/body"}},
		{"subject not allowed", `{"body":"b","subject":"s"}`, []string{"/subject"}},
		{"too long", `{"body":"` + strings.Repeat("x", 1601) + `"}`, []string{"/body"}},
	},
	"send_push": {
		{"template", `{"template_id":"promo"}`, nil},
		{"inline", `{"title":"Sale","body":"50% off","data":{"deep_link":"app://sale"}}`, nil},
		{"title only", `{"title":"Sale"}`, []string{"/body"}},
		{"empty", `{}`, []string{"/body", "/title"}},
		{"data not strings", `{"template_id":"p","data":{"n":1,"ok":"y"}}`, []string{"/data/n"}},
	},
	"send_whatsapp": {
		{"template", `{"template_id":"order_update","language":"pt_BR"}`, nil},
		{"inline", `{"body":"Hello"}`, nil},
		{"empty", `{}`, []string{"/body"}},
		{"bad language", `{"template_id":"t","language":"english"}`, []string{"/language"}},
	},
	"call_webhook": {
		{"minimal", `{"url":"https://example.com/hook"}`, nil},
		{"full", `{"url":"http://example.com/u/{{ profile.id }}","method":"PUT","headers":{"X-Api-Key":"k"},"body":{"a":[1,2]},"timeout":"60s"}`, nil},
		{"string body", `{"url":"https://example.com","body":"raw"}`, nil},
		{"missing url", `{"method":"GET"}`, []string{"/url"}},
		{"relative url", `{"url":"/hook"}`, []string{"/url"}},
		{"ftp url", `{"url":"ftp://example.com/x"}`, []string{"/url"}},
		{"no host", `{"url":"https:///x"}`, []string{"/url"}},
		{"templated host", `{"url":"https://{{ profile.domain }}/x"}`, []string{"/url"}},
		{"lowercase method", `{"url":"https://example.com","method":"post"}`, []string{"/method"}},
		{"bad header name", `{"url":"https://example.com","headers":{"X Key":"v"}}`, []string{"/headers/X Key"}},
		{"header with slash", `{"url":"https://example.com","headers":{"a/b":"v"}}`, []string{"/headers/a~1b"}},
		{"header value not string", `{"url":"https://example.com","headers":{"X-N":1}}`, []string{"/headers/X-N"}},
		{"timeout too long", `{"url":"https://example.com","timeout":"61s"}`, []string{"/timeout"}},
		{"timeout in minutes", `{"url":"https://example.com","timeout":"2m"}`, []string{"/timeout"}},
		{"zero timeout", `{"url":"https://example.com","timeout":"0s"}`, []string{"/timeout"}},
		{"bad timeout", `{"url":"https://example.com","timeout":"1.5s"}`, []string{"/timeout"}},
	},
	"wait": {
		{"days", `{"duration":"3d"}`, nil},
		{"zero", `{"duration":"0s"}`, nil},
		{"missing", `{}`, []string{"/duration"}},
		{"bad unit", `{"duration":"3y"}`, []string{"/duration"}},
		{"number", `{"duration":3}`, []string{"/duration"}},
		{"overflow", `{"duration":"99999999999w"}`, []string{"/duration"}},
	},
	"wait_until": {
		{"datetime", `{"datetime":"2030-01-31T09:00:00+01:00"}`, nil},
		{"time of day", `{"time_of_day":"09:30"}`, nil},
		{"weekdays", `{"time_of_day":"18:00","days_of_week":["mon","fri"],"timezone":"Europe/Paris"}`, nil},
		{"empty", `{}`, []string{"/time_of_day"}},
		{"both", `{"datetime":"2030-01-31T09:00:00Z","time_of_day":"09:00","timezone":"UTC"}`, []string{"/time_of_day", "/timezone"}},
		{"days with datetime", `{"datetime":"2030-01-31T09:00:00Z","days_of_week":["mon"]}`, []string{"/days_of_week"}},
		{"date only", `{"datetime":"2030-01-31"}`, []string{"/datetime"}},
		{"24:00", `{"time_of_day":"24:00"}`, []string{"/time_of_day"}},
		{"no leading zero", `{"time_of_day":"9:00"}`, []string{"/time_of_day"}},
		{"no days", `{"time_of_day":"09:00","days_of_week":[]}`, []string{"/days_of_week"}},
		{"repeated day", `{"time_of_day":"09:00","days_of_week":["mon","mon"]}`, []string{"/days_of_week"}},
		{"unknown day", `{"time_of_day":"09:00","days_of_week":["monday"]}`, []string{"/days_of_week/0"}},
		{"unknown zone", `{"time_of_day":"09:00","timezone":"Mars/Olympus"}`, []string{"/timezone"}},
		{"local zone", `{"time_of_day":"09:00","timezone":"Local"}`, []string{"/timezone"}},
	},
	"wait_for_event": {
		{"minimal", `{"event_type":"email_opened"}`, nil},
		{"timeout", `{"event_type":"email_opened","timeout":"3d"}`, nil},
		{"full", `{"event_type":"order_paid","timeout":"1h","filter":{"currency":"EUR"},"match":{"order_id":"context.order_id","email":"profile.email"},"branches":{"event_received":"paid","timed_out":"unpaid"}}`, nil},
		{"missing event type", `{"timeout":"1d"}`, []string{"/event_type"}},
		{"timed out without timeout", `{"event_type":"x","branches":{"timed_out":"late"}}`, []string{"/branches/timed_out"}},
		{"same names", `{"event_type":"x","timeout":"1d","branches":{"event_received":"done","timed_out":"done"}}`, []string{"/branches"}},
		{"renamed onto default", `{"event_type":"x","timeout":"1d","branches":{"event_received":"timed_out"}}`, []string{"/branches"}},
		{"bad branch name", `{"event_type":"x","branches":{"event_received":"Got It"}}`, []string{"/branches/event_received"}},
		{"unknown branch", `{"event_type":"x","branches":{"maybe":"m"}}`, []string{"/branches/maybe"}},
		{"zero timeout", `{"event_type":"x","timeout":"0s"}`, []string{"/timeout"}},
		{"bad timeout", `{"event_type":"x","timeout":"soon"}`, []string{"/timeout"}},
		{"bad match path", `{"event_type":"x","match":{"order_id":"order_id"}}`, []string{"/match/order_id"}},
		{"match not string", `{"event_type":"x","match":{"order_id":1}}`, []string{"/match/order_id"}},
	},
	"condition": {
		{"comparison", `{"expression":"profile.plan == \"premium\" && event.amount > 100"}`, nil},
		{"context", `{"expression":"context.order_total >= 50 or \"vip\" in profile.tags"}`, nil},
		{"missing", `{}`, []string{"/expression"}},
		{"syntax error", `{"expression":"profile.plan =="}`, []string{"/expression"}},
		{"not boolean", `{"expression":"1 + 2"}`, []string{"/expression"}},
		{"map is not boolean", `{"expression":"profile"}`, []string{"/expression"}},
	},
	"ab_split": {
		{"two", `{"variants":[{"key":"a","weight":50},{"key":"b","weight":50}]}`, nil},
		{"five with holdout", `{"variants":[{"key":"v1","weight":1},{"key":"v2","weight":1.5},{"key":"v-3","weight":1},{"key":"v_4","weight":1},{"key":"control","weight":10}],"holdout_percent":99.5}`, nil},
		{"missing", `{}`, []string{"/variants"}},
		{"one variant", `{"variants":[{"key":"a","weight":1}]}`, []string{"/variants"}},
		{"six variants", `{"variants":[{"key":"a","weight":1},{"key":"b","weight":1},{"key":"c","weight":1},{"key":"d","weight":1},{"key":"e","weight":1},{"key":"f","weight":1}]}`, []string{"/variants"}},
		{"duplicate key", `{"variants":[{"key":"a","weight":1},{"key":"b","weight":1},{"key":"a","weight":2}]}`, []string{"/variants/2/key"}},
		{"zero weight", `{"variants":[{"key":"a","weight":0},{"key":"b","weight":1}]}`, []string{"/variants/0/weight"}},
		{"missing weight", `{"variants":[{"key":"a"},{"key":"b","weight":1}]}`, []string{"/variants/0/weight"}},
		{"bad key", `{"variants":[{"key":"A","weight":1},{"key":"b","weight":1}]}`, []string{"/variants/0/key"}},
		{"holdout 100", `{"variants":[{"key":"a","weight":1},{"key":"b","weight":1}],"holdout_percent":100}`, []string{"/holdout_percent"}},
		{"negative holdout", `{"variants":[{"key":"a","weight":1},{"key":"b","weight":1}],"holdout_percent":-1}`, []string{"/holdout_percent"}},
	},
	"frequency_cap": {
		{"minimal", `{"max_messages":3,"time_window":"1w"}`, nil},
		{"channel", `{"max_messages":1,"time_window":"12h","channel":"sms"}`, nil},
		{"missing", `{}`, []string{"/max_messages", "/time_window"}},
		{"zero messages", `{"max_messages":0,"time_window":"1d"}`, []string{"/max_messages"}},
		{"fraction", `{"max_messages":1.5,"time_window":"1d"}`, []string{"/max_messages"}},
		{"zero window", `{"max_messages":1,"time_window":"0s"}`, []string{"/time_window"}},
		{"unknown channel", `{"max_messages":1,"time_window":"1d","channel":"fax"}`, []string{"/channel"}},
	},
	"update_profile": {
		{"fields", `{"fields":{"plan":"premium","score":{"a":1},"tags":null}}`, nil},
		{"missing", `{}`, []string{"/fields"}},
		{"empty fields", `{"fields":{}}`, []string{"/fields"}},
		{"empty name", `{"fields":{"":1}}`, []string{"/fields/"}},
		{"not an object", `{"fields":["plan"]}`, []string{"/fields"}},
	},
	"add_tag": {
		{"tag", `{"tag":"vip"}`, nil},
		{"missing", `{}`, []string{"/tag"}},
		{"space", `{"tag":"big spender"}`, []string{"/tag"}},
		{"too long", `{"tag":"` + strings.Repeat("t", 65) + `"}`, []string{"/tag"}},
	},
	"remove_tag": {
		{"tag", `{"tag":"trial"}`, nil},
		{"missing", `{}`, []string{"/tag"}},
		{"empty", `{"tag":""}`, []string{"/tag"}},
	},
	"custom_code": {
		{"minimal", `{"code":"return {context: {n: 1}}"}`, nil},
		{"full", `{"code":"return {branch: 'hi'}","language":"javascript","timeout_ms":5000,"memory_mb":64,"branches":["hi","lo"]}`, nil},
		{"missing", `{}`, []string{"/code"}},
		{"empty code", `{"code":""}`, []string{"/code"}},
		{"python", `{"code":"x","language":"python"}`, []string{"/language"}},
		{"slow", `{"code":"x","timeout_ms":5001}`, []string{"/timeout_ms"}},
		{"no memory", `{"code":"x","memory_mb":0}`, []string{"/memory_mb"}},
		{"one branch", `{"code":"x","branches":["a"]}`, []string{"/branches"}},
		{"repeated branch", `{"code":"x","branches":["a","a"]}`, []string{"/branches"}},
		{"bad branch", `{"code":"x","branches":["a","B c"]}`, []string{"/branches/1"}},
	},
	"goal_reached": {
		{"minimal", `{"goal_name":"activated"}`, nil},
		{"exit", `{"goal_name":"activated","exit_after_goal":true}`, nil},
		{"missing", `{"exit_after_goal":true}`, []string{"/goal_name"}},
		{"exit not bool", `{"goal_name":"g","exit_after_goal":"yes"}`, []string{"/exit_after_goal"}},
	},
	"journey_exit": {
		{"empty", `{}`, nil},
		{"reason", `{"reason":"unsubscribed"}`, nil},
		{"reason not string", `{"reason":1}`, []string{"/reason"}},
	},
}

func TestValidateConfig(t *testing.T) {
	for _, info := range Default().Catalog() {
		cases := configCases[info.Type]
		if len(cases) < 3 {
			t.Errorf("%s: want valid and invalid cases, have %d", info.Type, len(cases))
		}
		typ, _ := Default().Get(info.Type)
		for _, c := range cases {
			t.Run(info.Type+"/"+c.name, func(t *testing.T) {
				problems := typ.ValidateConfig(json.RawMessage(c.config))
				var fields []string
				for _, p := range problems {
					fields = append(fields, p.Field)
					if p.Code != "invalid_config" || p.Message == "" || p.NodeID != "" {
						t.Errorf("bad problem %+v", p)
					}
				}
				if !slices.Equal(fields, c.fields) {
					t.Errorf("problem fields = %q, want %q; problems: %+v", fields, c.fields, problems)
				}
			})
		}
	}
}

func TestValidateConfigDocument(t *testing.T) {
	typ, _ := Default().Get("journey_exit")
	for _, config := range []string{"", "  \n", "{}"} {
		if p := typ.ValidateConfig(json.RawMessage(config)); len(p) != 0 {
			t.Errorf("config %q: %+v, want none", config, p)
		}
	}
	if p := typ.ValidateConfig(nil); len(p) != 0 {
		t.Errorf("nil config: %+v, want none", p)
	}
	wait, _ := Default().Get("wait")
	if p := wait.ValidateConfig(nil); len(p) != 1 || p[0].Field != "/duration" {
		t.Errorf("nil config of wait: %+v, want /duration required", p)
	}
	for _, config := range []string{`[]`, `"3d"`, `null`, `42`, `{"duration":`, `{"duration":"1d"} {}`, `{"duration":"1d"}x`} {
		p := wait.ValidateConfig(json.RawMessage(config))
		if len(p) != 1 || p[0].Field != "" || p[0].Code != "invalid_config" {
			t.Errorf("config %q: %+v, want one root problem", config, p)
		}
	}
}

func TestProblemMessages(t *testing.T) {
	tests := []struct {
		typ, config, want string
	}{
		{"wait", `{}`, "duration: is required"},
		{"wait", `{"duration":"3y"}`, "duration: must be a whole number followed by s, m, h, d or w, such as 30m or 3d"},
		{"wait", `{"duration":3}`, "duration: must be string, not number"},
		{"wait", `{"duration":"1d","until":"x"}`, "until: is not a known field"},
		{"call_webhook", `{"url":"https://x.io","timeout":"61s"}`, "timeout: must be at most 60s"},
		{"ab_split", `{"variants":[{"key":"a","weight":1},{"key":"a","weight":1}]}`, `variants/1/key: "a" is used more than once`},
		{"wait", `[1]`, "config: must be a JSON object, not an array"},
	}
	for _, tt := range tests {
		typ, _ := Default().Get(tt.typ)
		p := typ.ValidateConfig(json.RawMessage(tt.config))
		if len(p) == 0 || p[0].Message != tt.want {
			t.Errorf("%s %s: %+v, want message %q", tt.typ, tt.config, p, tt.want)
		}
	}
}

// A field the schema rejects gets one problem, not a second one from the
// semantic check that runs on the same field.
func TestNoDuplicateProblemPerField(t *testing.T) {
	for _, info := range Default().Catalog() {
		typ, _ := Default().Get(info.Type)
		for _, c := range configCases[info.Type] {
			seen := map[string]bool{}
			for _, p := range typ.ValidateConfig(json.RawMessage(c.config)) {
				if seen[p.Field] {
					t.Errorf("%s %s: two problems on %q", info.Type, c.name, p.Field)
				}
				seen[p.Field] = true
			}
		}
	}
}

func TestPointerEscaping(t *testing.T) {
	if got := pointer([]string{"headers", "a/b~c"}); got != "/headers/a~1b~0c" {
		t.Errorf("pointer = %q", got)
	}
	if got := pointer(nil); got != "" {
		t.Errorf("root pointer = %q", got)
	}
}
