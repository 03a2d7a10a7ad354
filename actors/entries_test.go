package actors

import (
	"context"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// invalidatingJourneys lists no journeys, and meanwhile the tenant's journeys change: an invalidation
// lands while the index is being built from what the store said before it.
type invalidatingJourneys struct {
	store.Journeys
	e *entries
}

func (j invalidatingJourneys) ListJourneys(context.Context, string, store.JourneyFilter) ([]store.Journey, error) {
	j.e.invalidate("ten_1")
	return nil, nil
}

// TestEntriesDropAnIndexBuiltBeforeAnInvalidation: the next event rebuilds it instead of using, for the
// whole ttl, an index that misses the change.
func TestEntriesDropAnIndexBuiltBeforeAnInvalidation(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	e := newEntries(nil, nil, func() time.Time { return now }, time.Minute)
	e.journeys = invalidatingJourneys{e: e}
	if _, err := e.forEvent(context.Background(), "ten_1", "signed_up"); err != nil {
		t.Fatal(err)
	}
	if _, cached := e.byTenant["ten_1"]; cached {
		t.Fatal("an index built across an invalidation was kept")
	}
}
