package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
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
