package api_test

import (
	"encoding/json"
	"net/http"
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
