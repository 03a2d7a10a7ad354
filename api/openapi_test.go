package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

// newSQLiteServer builds a server on a fresh SQLite store, for tests that
// need the server's internals.
func newSQLiteServer(t *testing.T, logs io.Writer) *Server {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kalcifer.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Store: st, Nodes: nodes.Default(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var echoParam = regexp.MustCompile(`:([a-z_]+)`)

// TestOpenAPICoversEveryRoute checks the hand-written document against the
// routing table in both directions, so neither can drift from the other.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Servers []struct{ URL string }                `json:"servers"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Servers) != 1 || doc.Servers[0].URL != BasePath {
		t.Fatalf("openapi %q servers %+v", doc.OpenAPI, doc.Servers)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			var o struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || len(o.Responses) == 0 {
				t.Errorf("%s %s has no responses", method, path)
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}

	registered := map[string]bool{}
	for _, r := range newSQLiteServer(t, io.Discard).echo.Routes() {
		path, ok := strings.CutPrefix(r.Path, BasePath)
		if !ok {
			t.Errorf("route %s %s is outside %s", r.Method, r.Path, BasePath)
			continue
		}
		registered[r.Method+" "+echoParam.ReplaceAllString(path, "{$1}")] = true
	}
	for route := range registered {
		if !documented[route] {
			t.Errorf("route %s is not in openapi.json", route)
		}
	}
	for route := range documented {
		if !registered[route] {
			t.Errorf("openapi.json documents %s, which is not registered", route)
		}
	}
	if len(registered) < 25 {
		t.Fatalf("only %d routes registered", len(registered))
	}
}

// TestOpenAPIReferencesResolve catches a $ref to a component that does not exist.
func TestOpenAPIReferencesResolve(t *testing.T) {
	t.Parallel()
	var doc map[string]any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	components := doc["components"].(map[string]any)
	var refs []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs = append(refs, ref)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	slices.Sort(refs)
	for _, ref := range slices.Compact(refs) {
		parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
		section, _ := components[parts[0]].(map[string]any)
		if len(parts) != 2 || section[parts[1]] == nil {
			t.Errorf("unresolved $ref %s", ref)
		}
	}
}

// TestPanicIsRecovered registers a route that panics: the client gets a
// uniform 500, the panic is logged with its stack, and the server goes on.
func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	logs := &LogBuffer{}
	s := newSQLiteServer(t, logs)
	s.echo.GET(BasePath+"/boom", func(echo.Context) error { panic("boom") })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	for range 2 {
		res, err := http.Get(srv.URL + BasePath + "/boom")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code, Message string }
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusInternalServerError || body.Error.Code != "internal_error" {
			t.Fatalf("panic answered %d %+v (%v)", res.StatusCode, body, err)
		}
	}
	res, err := http.Get(srv.URL + BasePath + "/health")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("server stopped serving after a panic: %v", err)
	}
	res.Body.Close()
	if got := strings.Count(logs.String(), `"msg":"panic in handler"`); got != 2 || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("panics logged %d times, want 2 with stacks:\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), `"msg":"request failed"`) {
		t.Fatalf("panic logged twice")
	}
}
