package api_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestJourneyCRUD(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		created := ok[journeyJSON](e.do("POST", "/journeys", map[string]any{"name": "Welcome", "description": "new users"}), http.StatusCreated)
		if created.Status != "draft" || created.ActiveVersion != 0 || created.Name != "Welcome" || created.TenantID != e.tenant.ID || !created.CreatedAt.Equal(start) {
			t.Fatalf("created %+v", created)
		}
		versions := ok[struct{ Data []versionJSON }](e.do("GET", "/journeys/"+created.ID+"/versions", nil), http.StatusOK)
		if len(versions.Data) != 0 {
			t.Fatalf("journey without graph has versions: %+v", versions.Data)
		}

		path := "/journeys/" + created.ID
		renamed := ok[journeyJSON](e.do("PATCH", path, map[string]any{"name": "Onboarding"}), http.StatusOK)
		if renamed.Name != "Onboarding" || renamed.Description != "new users" {
			t.Fatalf("patched %+v", renamed)
		}
		described := ok[journeyJSON](e.do("PATCH", path, map[string]any{"description": ""}), http.StatusOK)
		if described.Name != "Onboarding" || described.Description != "" {
			t.Fatalf("patched %+v", described)
		}
		e.do("PATCH", path, map[string]any{"name": ""}).fails(http.StatusBadRequest, "invalid_field")
		got := ok[journeyJSON](e.do("GET", path, nil), http.StatusOK)
		if got != described {
			t.Fatalf("get %+v, want %+v", got, described)
		}

		if r := e.do("DELETE", path, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete draft: %d %s", r.status, r.body)
		}
		e.do("GET", path, nil).fails(http.StatusNotFound, "journey_not_found")
		e.do("DELETE", path, nil).fails(http.StatusNotFound, "journey_not_found")
		e.do("PATCH", path, map[string]any{"name": "x"}).fails(http.StatusNotFound, "journey_not_found")
	})
}

// TestLifecycle walks every status through every action: the allowed ones
// move the journey, the others are 409 invalid_transition and change nothing.
func TestLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.createJourney("lifecycle", validGraph())
		path := "/journeys/" + j.ID
		act := func(action string) response { return e.do("POST", path+"/"+action, nil) }
		expectStatus := func(status string, activeVersion int) {
			t.Helper()
			got := ok[journeyJSON](e.do("GET", path, nil), http.StatusOK)
			if got.Status != status || got.ActiveVersion != activeVersion {
				t.Fatalf("journey is %s on version %d, want %s on %d", got.Status, got.ActiveVersion, status, activeVersion)
			}
		}
		invalid := func(actions ...string) {
			t.Helper()
			before := ok[journeyJSON](e.do("GET", path, nil), http.StatusOK)
			for _, a := range actions {
				act(a).fails(http.StatusConflict, "invalid_transition")
			}
			expectStatus(before.Status, before.ActiveVersion)
		}

		act("activate").fails(http.StatusUnprocessableEntity, "no_published_version")
		invalid("pause", "resume")
		expectStatus("draft", 0)

		published := ok[struct{ Journey journeyJSON }](e.do("POST", versionPath(j.ID, 1, "/publish"), nil), http.StatusOK)
		if published.Journey.Status != "active" || published.Journey.ActiveVersion != 1 {
			t.Fatalf("after publish %+v", published.Journey)
		}
		invalid("activate", "resume")
		e.do("DELETE", path, nil).fails(http.StatusConflict, "journey_not_deletable")

		if got := ok[journeyJSON](act("pause"), http.StatusOK); got.Status != "paused" {
			t.Fatalf("pause: %+v", got)
		}
		invalid("pause", "activate")
		e.do("DELETE", path, nil).fails(http.StatusConflict, "journey_not_deletable")

		if got := ok[journeyJSON](act("resume"), http.StatusOK); got.Status != "active" || got.ActiveVersion != 1 {
			t.Fatalf("resume: %+v", got)
		}
		if got := ok[journeyJSON](act("archive"), http.StatusOK); got.Status != "archived" {
			t.Fatalf("archive: %+v", got)
		}
		invalid("activate", "pause", "resume", "archive")
		e.do("POST", versionPath(j.ID, 1, "/publish"), nil).fails(http.StatusConflict, "journey_archived")
		if r := e.do("DELETE", path, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete archived: %d %s", r.status, r.body)
		}

		draft := e.createJourney("archived as draft", nil)
		if got := ok[journeyJSON](e.do("POST", "/journeys/"+draft.ID+"/archive", nil), http.StatusOK); got.Status != "archived" {
			t.Fatalf("archive draft: %+v", got)
		}
		e.do("POST", "/journeys/nope/pause", nil).fails(http.StatusNotFound, "journey_not_found")
	})
}

func TestPagination(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		var ids []string
		for i := range 5 {
			// Ids sort by creation time, to the millisecond.
			e.clock.Advance(time.Millisecond)
			ids = append(ids, e.createJourney(fmt.Sprintf("j%d", i), nil).ID)
		}
		e.do("POST", "/journeys/"+ids[1]+"/archive", nil)

		type page struct {
			Data      []journeyJSON `json:"data"`
			NextAfter string        `json:"next_after"`
		}
		var seen []string
		after := ""
		for range 3 {
			p := ok[page](e.do("GET", "/journeys?limit=2&after="+after, nil), http.StatusOK)
			for _, j := range p.Data {
				seen = append(seen, j.ID)
			}
			after = p.NextAfter
			if after == "" {
				break
			}
		}
		if fmt.Sprint(seen) != fmt.Sprint(ids) || after != "" {
			t.Fatalf("paged %v (next %q), want %v", seen, after, ids)
		}

		exact := ok[page](e.do("GET", "/journeys?limit=5", nil), http.StatusOK)
		if len(exact.Data) != 5 || exact.NextAfter != "" {
			t.Fatalf("a full last page must not promise another: %d, %q", len(exact.Data), exact.NextAfter)
		}
		archived := ok[page](e.do("GET", "/journeys?status=archived", nil), http.StatusOK)
		if len(archived.Data) != 1 || archived.Data[0].ID != ids[1] {
			t.Fatalf("status filter: %+v", archived.Data)
		}
		empty := ok[page](e.do("GET", "/journeys?status=paused", nil), http.StatusOK)
		if empty.Data == nil || len(empty.Data) != 0 {
			t.Fatalf("empty page must be [], got %+v", empty.Data)
		}
		for _, q := range []string{"limit=0", "limit=201", "limit=x", "status=running"} {
			e.do("GET", "/journeys?"+q, nil).fails(http.StatusBadRequest, "invalid_parameter")
		}
	})
}

// TestConcurrentTransitions races one action from many clients: the status
// compare-and-swap lets exactly one win; the others get a 409.
func TestConcurrentTransitions(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.createJourney("raced", validGraph())
		ok[struct{ Journey journeyJSON }](e.do("POST", versionPath(j.ID, 1, "/publish"), nil), http.StatusOK)

		const clients = 8
		results := make(chan response, clients)
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() { results <- e.with(t).do("POST", "/journeys/"+j.ID+"/pause", nil) })
		}
		wg.Wait()
		close(results)
		won := 0
		for r := range results {
			if r.status == http.StatusOK {
				won++
				continue
			}
			code := ok[apiError](r, http.StatusConflict).Error.Code
			if code != "conflict" && code != "invalid_transition" {
				t.Errorf("losing client got %s", code)
			}
		}
		if won != 1 {
			t.Fatalf("%d clients paused the journey, want exactly 1", won)
		}
	})
}
