package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kalcifer/kalcifer/api"
)

// TestBadInput sends malformed, misspelt, mistyped and oversized bodies:
// each is a 4xx with its code, and the server keeps serving.
func TestBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name, path, body string
			status           int
			code, field      string
		}{
			{"malformed", "/journeys", `{"name":`, 400, "invalid_json", ""},
			{"not json", "/journeys", `name=x`, 400, "invalid_json", ""},
			{"empty", "/journeys", ``, 400, "invalid_json", ""},
			{"whitespace", "/journeys", "  \n", 400, "invalid_json", ""},
			{"array", "/journeys", `[]`, 400, "invalid_json", ""},
			{"trailing data", "/journeys", `{"name":"a"} {"name":"b"}`, 400, "invalid_json", ""},
			{"unknown field", "/journeys", `{"name":"a","nmae":"b"}`, 400, "unknown_field", "nmae"},
			{"wrong type", "/journeys", `{"name":42}`, 400, "invalid_field", "name"},
			{"wrong nested type", "/api-keys", `{"name":["a"]}`, 400, "invalid_field", "name"},
			{"wrong type for a pointer", "/journeys", `{"name":"a","description":false}`, 400, "invalid_field", "description"},
			{"long description", "/journeys", `{"name":"a","description":"` + strings.Repeat("d", 2001) + `"}`, 400, "invalid_field", "description"},
			{"missing name", "/journeys", `{"description":"x"}`, 400, "missing_field", "name"},
			{"null name", "/journeys", `{"name":null}`, 400, "missing_field", "name"},
			{"long name", "/journeys", `{"name":"` + strings.Repeat("n", 201) + `"}`, 400, "invalid_field", "name"},
			{"graph not an object", "/journeys", `{"name":"a","graph":[1]}`, 400, "invalid_graph_json", "graph"},
			{"graph with unknown field", "/validate", `{"graph":{"nodes":[],"edges":[],"exits":1}}`, 400, "invalid_graph_json", "graph"},
			{"oversized", "/journeys", `{"name":"` + strings.Repeat("x", 4096) + `"}`, 413, "body_too_large", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				got := e.do("POST", tc.path, tc.body).fails(tc.status, tc.code)
				if tc.field != "" {
					var d struct{ Field string }
					if err := json.Unmarshal(got.Error.Details, &d); err != nil || d.Field != tc.field {
						t.Fatalf("details %s do not name field %q", got.Error.Details, tc.field)
					}
				}
				e.assertServing()
			})
		}

		// A body of unknown length is cut off while it is read.
		req, err := http.NewRequestWithContext(t.Context(), "POST", e.url+"/journeys",
			io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(strings.Repeat("x", 8192)), strings.NewReader(`"}`)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if req.ContentLength != 0 || res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "body_too_large") {
			t.Fatalf("streamed oversized body: %d %s", res.StatusCode, body)
		}
		e.assertServing()
	}, func(o *api.Options) { o.BodyLimit = 2048 })
}

func TestRoutingErrors(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.do("GET", "/nope", nil).fails(http.StatusNotFound, "route_not_found")
		e.send(request{method: "GET", path: "/journeys/x/versions/1/nope", key: new("")}).fails(http.StatusNotFound, "route_not_found")
		e.do("PUT", "/journeys", nil).fails(http.StatusMethodNotAllowed, "method_not_allowed")
		e.do("DELETE", "/health", nil).fails(http.StatusMethodNotAllowed, "method_not_allowed")
	})
}
