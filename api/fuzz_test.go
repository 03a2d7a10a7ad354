package api_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kalcifer/kalcifer/store"
)

// FuzzCreateJourney posts arbitrary bytes where JSON is expected: every
// answer is well-formed JSON and none is a server error.
func FuzzCreateJourney(f *testing.F) {
	for _, seed := range []string{
		`{"name":"welcome"}`,
		`{"name":"w","description":"d","graph":{"nodes":[],"edges":[]}}`,
		`{"graph":{"nodes":[{"id":"a","type":"event_entry","config":{"event_type":"x"}}],"edges":[{"id":"e","source":"a","target":"a"}]}}`,
		`{"name":"x","graph":{"nodes":[{"id":"w","type":"wait","config":{"duration":"99999999999999999999d"}}]}}`,
		`{"name":"\u0000","graph":null}`,
		`{"name":1e999}`,
		`[`, `null`, ``, `{"name":"a"}garbage`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	e := newEnv(f, openSQLite(f))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/journeys", "/validate"} {
			r := e.with(t).do("POST", path, body)
			if r.status >= http.StatusInternalServerError {
				t.Fatalf("POST %s %q: %d %s", path, body, r.status, r.body)
			}
			if !json.Valid(r.body) {
				t.Fatalf("POST %s %q: response is not JSON: %s", path, body, r.body)
			}
		}
	})
}

// FuzzCustomers upserts arbitrary bodies under arbitrary external ids on
// both stores: every answer is JSON, none is a server error, and every
// customer answered can be read back.
func FuzzCustomers(f *testing.F) {
	for _, seed := range []struct{ id, body string }{
		{"u1", `{"email":"a@b.c","timezone":"Europe/Paris","properties":{"plan":"pro","n":null},"tags":["vip"],"preferences":{"sms":false},"push_tokens":["t"]}`},
		{"u1", `{"properties":{"deep":{"a":[1,2,{"b":null}]}},"tags":[" x "]}`},
		{"a/b c", `{"timezone":"Local"}`},
		{"x", `{"timezone":"../../../etc/passwd"}`},
		{"\x00", `{}`},
		{"\xff", `{"name":"\ud800"}`},
		{"n", `{"name":"a\u0000b"}`},
		{"p", `{"properties":{"\u0000":1}}`},
		{"q", `{"properties":{"big":1e400,"exact":12345678901234567890}}`},
		{"r", `{"preferences":{"fax":true}}`},
		{"s", `{"tags":null,"push_tokens":null,"properties":null,"preferences":null}`},
		{"t", `{"properties":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}`},
		{"", `{}`},
		{"u", `[`}, {"v", `null`}, {"w", ``}, {"y", "\xff\xfe"},
	} {
		f.Add(seed.id, []byte(seed.body))
	}
	envs := []*env{newEnv(f, openSQLite(f)), newEnv(f, openPostgres(f))}
	f.Fuzz(func(t *testing.T, externalID string, body []byte) {
		for _, e := range envs {
			e := e.with(t)
			path := "/customers/" + url.PathEscape(externalID)
			r := e.do("PUT", path, body)
			if r.status >= http.StatusInternalServerError || !json.Valid(r.body) {
				t.Fatalf("%s PUT %s %q: %d %s", e.store.Driver(), path, body, r.status, r.body)
			}
			if r.status != http.StatusOK && r.status != http.StatusCreated {
				continue
			}
			var answered struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(r.body, &answered); err != nil {
				t.Fatal(err)
			}
			got := e.do("GET", "/customers/"+answered.ID, nil)
			if got.status != http.StatusOK {
				t.Fatalf("%s: customer %s answered but not stored: %d %s", e.store.Driver(), answered.ID, got.status, got.body)
			}
		}
	})
}

// FuzzChannelBodies sends arbitrary bytes to the routes that take
// templates, previews, provider accounts, quiet hours and status callbacks:
// every answer is JSON and none is a server error.
func FuzzChannelBodies(f *testing.F) {
	for _, seed := range []string{
		`{"name":"welcome","channel":"email","content":{"subject":"Hi {{ customer.name }}","html":"<p>x</p>","from":"a@b.test"}}`,
		`{"name":"s","channel":"sms","content":{"body":"{% if %}","subject":1}}`,
		`{"name":"p","channel":"push","content":{"title":"t","data":{"k":"{{ x | nosuch }}"}}}`,
		`{"name":"w","channel":"whatsapp","content":{"template":"t","language":"fr","params":["{{ customer.first_name }}"]}}`,
		`{"channel":"sms","content":{"body":"{{ customer.name | shout }}"},"customer_id":"ada","event":{"type":"t","properties":{"x":1}},"context":{"y":[]}}`,
		`{"channel":"email","content":{"subject":"{% for i in (1..100000000) %}xxxxxxxx{% endfor %}","text":"t"},"customer_id":"ada"}`,
		`{"customer_id":"ada","version":1}`,
		`{"name":"pm","kind":"postmark","default_for":["email"],"config":{"server_token":"t","from":"a@b.test","webhook_username":"u","webhook_password":"p"}}`,
		`{"name":"logs","kind":"log","rate":1e308,"burst":9223372036854775807,"config":{"x":null}}`,
		`{"name":"x","kind":"twilio","config":{"account_sid":"AC","auth_token":"t","status_callback_url":"::"}}`,
		`{"settings":{"quiet_hours":{"start":"22:00","end":"07:00","channels":["sms"]}}}`,
		`{"settings":{"quiet_hours":{"start":"99:99","end":"-1:00","channels":["webhook"]}}}`,
		`{"settings":{"quiet_hours":null,"reject_unknown_customers":true}}`,
		`{"RecordType":"Delivery","MessageID":"m","DeliveredAt":"yesterday","Metadata":{"kalcifer_delivery_id":"dlv_1"}}`,
		`[`, `null`, ``, `{"name":"\u0000"}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	r := &rig{}
	e := newEnv(f, openSQLite(f), channelsOn(r, true))
	e.upsert("ada", map[string]any{"name": "Ada", "email": "ada@example.test", "phone": "+15550100", "push_tokens": []string{"t"}}, http.StatusCreated)
	tpl := ok[struct{ ID string }](e.do("POST", "/templates", `{"name":"t","channel":"sms","content":{"body":"hi"}}`), http.StatusCreated)
	pm := ok[struct{ ID string }](e.do("POST", "/providers", `{"name":"hooks","kind":"postmark","config":{"server_token":"t","from":"a@b.test","webhook_username":"u","webhook_password":"p"}}`), http.StatusCreated)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p"))
	f.Fuzz(func(t *testing.T, body []byte) {
		e := e.with(t)
		for _, r := range []request{
			{method: "POST", path: "/templates"},
			{method: "PUT", path: "/templates/" + tpl.ID},
			{method: "POST", path: "/templates/preview"},
			{method: "POST", path: "/templates/" + tpl.ID + "/preview"},
			{method: "POST", path: "/providers"},
			{method: "PUT", path: "/providers/" + pm.ID},
			{method: "PATCH", path: "/tenant"},
			{method: "POST", path: "/callbacks/" + e.tenant.ID + "/" + pm.ID, key: new(""), header: map[string]string{"Authorization": basic}},
		} {
			r.body = body
			got := e.send(r)
			if got.status >= http.StatusInternalServerError || !json.Valid(got.body) {
				t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, got.status, got.body)
			}
		}
	})
}

// FuzzMigrationBodies sends arbitrary bytes as the options of a publish's
// and a rollback's dry run, with customers in flight on two versions:
// every answer is JSON and none is a server error.
func FuzzMigrationBodies(f *testing.F) {
	for _, seed := range []string{
		`{"strategy":"migrate_all","removed_node_policy":"skip_to_next","node_mapping":{"wait_1":"email_1"}}`,
		`{"strategy":"gradual","rollout_percent":50,"batch_size":10}`,
		`{"strategy":"gradual","rollout_percent":1e999}`,
		`{"node_mapping":{"wait_1":"wait_1","nope":"entry_1"},"removed_node_policy":"teleport"}`,
		`{"node_mapping":[],"batch_size":-1}`,
		`[`, `null`, ``, `{"strategy":"\u0000"}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	e := newEnv(f, openSQLite(f))
	j := e.createJourney("welcome", validGraph())
	ok[map[string]any](e.do("POST", versionPath(j.ID, 1, "")+"/publish", nil), http.StatusOK)
	ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/versions", map[string]any{"from_version": 1}), http.StatusCreated)
	ok[map[string]any](e.do("POST", versionPath(j.ID, 2, "")+"/publish", nil), http.StatusOK)
	ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/versions", map[string]any{"from_version": 1}), http.StatusCreated)
	for i, at := range []struct {
		version int
		node    string
	}{{1, "wait_1"}, {2, "email_1"}, {2, "wait_1"}} {
		c := e.upsert(string(rune('a'+i)), map[string]any{}, http.StatusCreated)
		e.seed(e.tenant.ID, store.Instance{JourneyID: j.ID, Version: at.version, CustomerID: c.ID, Status: store.InstanceWaiting, Nodes: []string{at.node}}, nil)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{versionPath(j.ID, 3, "") + "/publish?dry_run=true", versionPath(j.ID, 1, "") + "/rollback?dry_run=true"} {
			r := e.with(t).do("POST", path, body)
			if r.status >= http.StatusInternalServerError || !json.Valid(r.body) {
				t.Fatalf("POST %s %q: %d %s", path, body, r.status, r.body)
			}
		}
	})
}
