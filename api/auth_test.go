package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type keyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Secret     string     `json:"secret"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func TestAuthentication(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name, header, code string
		}{
			{"missing", "", "missing_api_key"},
			{"not bearer", "Basic " + e.key, "missing_api_key"},
			{"bearer without key", "Bearer ", "missing_api_key"},
			{"unknown key", "Bearer kal_0000", "invalid_api_key"},
			{"not a kalcifer key", "Bearer hunter2", "invalid_api_key"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				r := e.send(request{method: "GET", path: "/journeys", key: new(""), header: map[string]string{"Authorization": tc.header}})
				r.fails(http.StatusUnauthorized, tc.code)
			})
		}
		if r := e.send(request{method: "GET", path: "/tenant", key: new(""), header: map[string]string{"Authorization": "bearer " + e.key}}); r.status != http.StatusOK {
			t.Fatalf("lower-case scheme: %d %s", r.status, r.body)
		}
	})
}

func TestAPIKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		tenant := ok[struct{ ID, Name string }](e.do("GET", "/tenant", nil), http.StatusOK)
		if tenant.ID != e.tenant.ID || tenant.Name != "acme" {
			t.Fatalf("tenant %+v, want %+v", tenant, e.tenant)
		}

		second := ok[keyJSON](e.do("POST", "/api-keys", map[string]string{"name": " ci "}), http.StatusCreated)
		if !strings.HasPrefix(second.Secret, "kal_") || second.Name != "ci" || !strings.HasPrefix(second.Secret, second.Prefix) {
			t.Fatalf("issued key %+v", second)
		}
		keys := ok[struct{ Data []keyJSON }](e.as(second.Secret, "GET", "/api-keys", nil), http.StatusOK)
		if len(keys.Data) != 2 {
			t.Fatalf("%d keys, want 2", len(keys.Data))
		}
		for _, k := range keys.Data {
			if k.Secret != "" {
				t.Fatalf("list shows a secret: %+v", k)
			}
		}
		var first keyJSON
		for _, k := range keys.Data {
			if k.ID != second.ID {
				first = k
			}
		}

		e.do("POST", "/api-keys", map[string]any{}).fails(http.StatusBadRequest, "missing_field")
		e.do("POST", "/api-keys", map[string]any{"name": "  "}).fails(http.StatusBadRequest, "invalid_field")

		revoked := ok[keyJSON](e.as(second.Secret, "DELETE", "/api-keys/"+first.ID, nil), http.StatusOK)
		if revoked.RevokedAt == nil {
			t.Fatalf("revoked key has no revoked_at: %+v", revoked)
		}
		e.do("GET", "/tenant", nil).fails(http.StatusUnauthorized, "revoked_api_key")
		e.as(second.Secret, "DELETE", "/api-keys/"+second.ID, nil).fails(http.StatusConflict, "last_api_key")
		again := ok[keyJSON](e.as(second.Secret, "DELETE", "/api-keys/"+first.ID, nil), http.StatusOK)
		if !again.RevokedAt.Equal(*revoked.RevokedAt) {
			t.Fatalf("revoking twice moved revoked_at from %v to %v", revoked.RevokedAt, again.RevokedAt)
		}
		e.as(second.Secret, "DELETE", "/api-keys/nope", nil).fails(http.StatusNotFound, "api_key_not_found")
	})
}

// TestKeyUsageIsThrottled checks last_used_at is written at most once a
// minute per key, not on every request.
func TestKeyUsageIsThrottled(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		lastUsed := func() time.Time {
			t.Helper()
			keys := ok[struct{ Data []keyJSON }](e.do("GET", "/api-keys", nil), http.StatusOK)
			if len(keys.Data) != 1 || keys.Data[0].LastUsedAt == nil {
				t.Fatalf("keys %+v: want one used key", keys.Data)
			}
			return keys.Data[0].LastUsedAt.UTC()
		}
		if got := lastUsed(); !got.Equal(start) {
			t.Fatalf("last_used_at %v, want %v", got, start)
		}
		e.clock.Advance(59 * time.Second)
		if got := lastUsed(); !got.Equal(start) {
			t.Fatalf("last_used_at written again within a minute: %v", got)
		}
		e.clock.Advance(2 * time.Second)
		if got, want := lastUsed(), start.Add(61*time.Second); !got.Equal(want) {
			t.Fatalf("last_used_at %v, want %v", got, want)
		}
	})
}

// TestTenantIsolation checks that another tenant's resources are not found,
// by every route that names one, and that no response carries their data.
func TestTenantIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		_, otherKey := e.newTenant("rival")
		theirs := ok[journeyJSON](e.as(otherKey, "POST", "/journeys", map[string]any{"name": "secret plan", "graph": validGraph()}), http.StatusCreated)
		theirKey := ok[keyJSON](e.as(otherKey, "POST", "/api-keys", map[string]string{"name": "rival key"}), http.StatusCreated)
		mine := e.createJourney("mine", validGraph())

		j := "/journeys/" + theirs.ID
		for _, tc := range []struct {
			method, path string
			body         any
			code         string
		}{
			{"GET", j, nil, "journey_not_found"},
			{"PATCH", j, map[string]string{"name": "stolen"}, "journey_not_found"},
			{"DELETE", j, nil, "journey_not_found"},
			{"POST", j + "/activate", nil, "journey_not_found"},
			{"POST", j + "/archive", nil, "journey_not_found"},
			{"GET", j + "/versions", nil, "journey_not_found"},
			{"POST", j + "/versions", map[string]any{}, "journey_not_found"},
			{"GET", j + "/versions/1", nil, "journey_not_found"},
			{"PUT", j + "/versions/1", map[string]any{"graph": validGraph()}, "journey_not_found"},
			{"POST", j + "/versions/1/validate", nil, "journey_not_found"},
			{"GET", j + "/versions/1/diff/1", nil, "journey_not_found"},
			{"POST", j + "/versions/1/publish", nil, "journey_not_found"},
			{"DELETE", "/api-keys/" + theirKey.ID, nil, "api_key_not_found"},
		} {
			t.Run(tc.method+" "+tc.path, func(t *testing.T) {
				e := e.with(t)
				r := e.do(tc.method, tc.path, tc.body)
				r.fails(http.StatusNotFound, tc.code)
				if strings.Contains(string(r.body), "secret plan") || strings.Contains(string(r.body), "rival") {
					t.Fatalf("response leaks the other tenant's data: %s", r.body)
				}
			})
		}
		list := ok[struct{ Data []journeyJSON }](e.do("GET", "/journeys", nil), http.StatusOK)
		for _, jj := range list.Data {
			if jj.ID == theirs.ID {
				t.Fatalf("list shows the other tenant's journey")
			}
		}
		after := ok[journeyJSON](e.as(otherKey, "GET", j, nil), http.StatusOK)
		if after.Name != "secret plan" || after.Status != "draft" {
			t.Fatalf("other tenant's journey changed: %+v", after)
		}
		keys := ok[struct{ Data []keyJSON }](e.as(otherKey, "GET", "/api-keys", nil), http.StatusOK)
		for _, k := range keys.Data {
			if k.RevokedAt != nil {
				t.Fatalf("other tenant's key %s was revoked", k.ID)
			}
		}
		// A version number of our own journey that does not exist is a version error.
		e.do("GET", fmt.Sprintf("/journeys/%s/versions/9", mine.ID), nil).fails(http.StatusNotFound, "version_not_found")
	})
}
