package api_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/nodes"
)

func TestHealth(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		noKey := new("")
		if got := ok[map[string]string](e.send(request{method: "GET", path: "/health", key: noKey}), http.StatusOK); got["status"] != "ok" || len(got) != 1 {
			t.Fatalf("health %v", got)
		}
		ready := ok[map[string]string](e.send(request{method: "GET", path: "/health/ready", key: noKey}), http.StatusOK)
		if ready["status"] != "ready" || ready["store"] != e.store.Driver() {
			t.Fatalf("ready %v", ready)
		}
		doc := ok[map[string]any](e.send(request{method: "GET", path: "/openapi.json", key: noKey}), http.StatusOK)
		if doc["openapi"] != "3.1.0" {
			t.Fatalf("openapi document %v", doc["openapi"])
		}

		if err := e.store.Close(); err != nil {
			t.Fatal(err)
		}
		e.send(request{method: "GET", path: "/health/ready", key: noKey}).fails(http.StatusServiceUnavailable, "not_ready")
		// A store failure behind a route is a logged 500 without internals.
		failed := e.do("GET", "/journeys", nil).fails(http.StatusInternalServerError, "internal_error")
		if failed.Error.Message != "internal server error" {
			t.Fatalf("500 leaks internals: %q", failed.Error.Message)
		}
		if !strings.Contains(e.logs.String(), `"msg":"request failed"`) {
			t.Fatalf("500 not logged:\n%s", e.logs)
		}
		if r := e.send(request{method: "GET", path: "/health", key: noKey}); r.status != http.StatusOK {
			t.Fatalf("server stopped serving after a store failure: %d", r.status)
		}
	})
}

// TestRateLimit drives the token bucket with the fake clock: two requests
// fit the burst, the third is refused until a second has passed, and each
// tenant has its own bucket.
func TestRateLimit(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		headers := func(r response, remaining, reset string) {
			t.Helper()
			if r.status != http.StatusOK && r.status != http.StatusTooManyRequests {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if got := r.header.Get("X-RateLimit-Limit"); got != "2" {
				t.Errorf("X-RateLimit-Limit %q, want 2", got)
			}
			if got := r.header.Get("X-RateLimit-Remaining"); got != remaining {
				t.Errorf("X-RateLimit-Remaining %q, want %s", got, remaining)
			}
			if got := r.header.Get("X-RateLimit-Reset"); got != reset {
				t.Errorf("X-RateLimit-Reset %q, want %s", got, reset)
			}
		}
		headers(e.do("GET", "/tenant", nil), "1", "1")
		headers(e.do("GET", "/tenant", nil), "0", "2")

		limited := e.do("GET", "/tenant", nil)
		limited.fails(http.StatusTooManyRequests, "rate_limited")
		headers(limited, "0", "2")
		if got := limited.header.Get("Retry-After"); got != "1" {
			t.Fatalf("Retry-After %q, want 1", got)
		}
		// The limit applies before anything else about the request is looked at.
		e.do("POST", "/journeys", `{`).fails(http.StatusTooManyRequests, "rate_limited")

		_, otherKey := e.newTenant("other")
		if r := e.as(otherKey, "GET", "/tenant", nil); r.status != http.StatusOK {
			t.Fatalf("another tenant is limited by this one's bucket: %d", r.status)
		}

		e.clock.Advance(500 * time.Millisecond)
		e.do("GET", "/tenant", nil).fails(http.StatusTooManyRequests, "rate_limited")
		e.clock.Advance(500 * time.Millisecond)
		headers(e.do("GET", "/tenant", nil), "0", "2")
		e.clock.Advance(time.Hour)
		headers(e.do("GET", "/tenant", nil), "1", "1")

		if r := e.send(request{method: "GET", path: "/health", key: new("")}); r.header.Get("X-RateLimit-Limit") != "" {
			t.Fatalf("unauthenticated route carries rate-limit headers")
		}
	}, func(o *api.Options) { o.RateLimit = 1; o.RateBurst = 2 })
}

func TestRequestIDAndAccessLog(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		echoed := e.send(request{method: "GET", path: "/tenant", header: map[string]string{"X-Request-Id": "req-abc-123"}})
		if got := echoed.header.Get("X-Request-Id"); got != "req-abc-123" {
			t.Fatalf("X-Request-Id %q, want the incoming one", got)
		}
		generated := e.do("GET", "/journeys/nope", nil)
		id := generated.header.Get("X-Request-Id")
		if len(id) < 16 {
			t.Fatalf("generated request id %q", id)
		}
		unsafe := e.send(request{method: "GET", path: "/tenant", header: map[string]string{"X-Request-Id": strings.Repeat("a", 500)}})
		if got := unsafe.header.Get("X-Request-Id"); len(got) > 128 || got == "" {
			t.Fatalf("an oversized incoming id was kept: %d bytes", len(got))
		}

		var line map[string]any
		scanner := bufio.NewScanner(strings.NewReader(e.logs.String()))
		scanner.Buffer(nil, 1<<20)
		for scanner.Scan() {
			var l map[string]any
			if err := json.Unmarshal(scanner.Bytes(), &l); err != nil {
				t.Fatalf("log line is not JSON: %s", scanner.Bytes())
			}
			if l["msg"] == "http request" && l["request_id"] == id {
				line = l
			}
		}
		if line == nil {
			t.Fatalf("no access log line for request %s:\n%s", id, e.logs)
		}
		for k, want := range map[string]any{"method": "GET", "route": "/api/v1/journeys/:id", "status": float64(404), "tenant_id": e.tenant.ID} {
			if line[k] != want {
				t.Errorf("log %s = %v, want %v", k, line[k], want)
			}
		}
		if _, ok := line["duration_ms"].(float64); !ok {
			t.Errorf("log line has no duration: %v", line)
		}
	})
}

func TestMetrics(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.createJourney("measured", nil)
		e.do("GET", "/journeys/"+j.ID, nil)
		e.do("GET", "/journeys/"+j.ID, nil)
		r := e.send(request{method: "GET", path: "/metrics", key: new("")})
		if r.status != http.StatusOK {
			t.Fatalf("metrics: %d", r.status)
		}
		text := string(r.body)
		for _, want := range []string{
			`kalcifer_http_requests_total{method="GET",route="/api/v1/journeys/:id",status="200"} 2`,
			`kalcifer_http_requests_total{method="POST",route="/api/v1/journeys",status="201"} 1`,
			`kalcifer_http_request_duration_seconds_bucket{method="GET",route="/api/v1/journeys/:id",le="+Inf"} 2`,
			`kalcifer_build_info{version="test"} 1`,
			"go_goroutines",
			"process_start_time_seconds",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	st := openSQLite(t)
	for name, opts := range map[string]api.Options{
		"no store":             {},
		"no nodes":             {Store: st},
		"negative limit":       {Store: st, Nodes: nodes.Default(), RateLimit: -1},
		"negative body":        {Store: st, Nodes: nodes.Default(), BodyLimit: -1},
		"negative event burst": {Store: st, Nodes: nodes.Default(), EventRateBurst: -1},
	} {
		if _, err := api.New(opts); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
}
