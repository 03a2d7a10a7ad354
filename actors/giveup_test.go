package actors

// Starts Proto.Actor in-process: run without -race (see the Makefile's NORACE_PKGS).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite/sqlitetest"
)

// TestGiveUpFailsTheInstanceAndPausesTheJourney drives what the instance
// supervisor calls once an instance exceeds its restart intensity: the
// instance becomes failed with the crash reason, and the fifth such instance
// of one journey within the window pauses the journey.
func TestGiveUpFailsTheInstanceAndPausesTheJourney(t *testing.T) {
	ctx := context.Background()
	st := sqlitetest.Open(t)
	rt, err := Start(ctx, Options{Store: st, Nodes: nodes.Default(), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Stop(ctx)
	ten, _ := st.Tenants().CreateTenant(ctx, "acme", time.Now())
	graph := `{"nodes":[{"id":"in","type":"webhook_entry"},{"id":"w","type":"wait","config":{"duration":"1d"}}],
	 "edges":[{"id":"e","source":"in","target":"w"}],"re_entry":"after_exit"}`
	j, err := st.Journeys().CreateJourney(ctx, store.Journey{TenantID: ten.ID, Name: "j"}, []byte(graph))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Journeys().PublishVersion(ctx, ten.ID, j.ID, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		res, err := rt.Enrol(ctx, ten, j.ID, "", []Target{{ExternalID: fmt.Sprintf("c%d", i)}})
		if err != nil || res[0].Error != nil {
			t.Fatalf("enrol: %v %+v", err, res)
		}
		if got, _ := st.Journeys().GetJourney(ctx, ten.ID, j.ID); got.Status != store.JourneyActive {
			t.Fatalf("journey paused after only %d crashed instances", i)
		}
		enrolled, err := st.Instances().GetInstance(ctx, ten.ID, res[0].InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		rt.giveUp(instanceIdentity(ten.ID, enrolled.CustomerID, enrolled.ID), "boom")
		in, err := st.Instances().GetInstance(ctx, ten.ID, res[0].InstanceID)
		if err != nil || in.Status != store.InstanceFailed || in.Error != "crashed repeatedly: boom" {
			t.Fatalf("instance after give-up: %+v %v", in, err)
		}
	}
	if got, _ := st.Journeys().GetJourney(ctx, ten.ID, j.ID); got.Status != store.JourneyPaused {
		t.Fatalf("journey status %s, want paused after five crashed instances", got.Status)
	}
	res, err := rt.Enrol(ctx, ten, j.ID, "", []Target{{ExternalID: "late"}})
	if err != nil || res[0].Error == nil || res[0].Error.Code != codeJourneyNotActive {
		t.Fatalf("a paused journey admits nobody: %v %+v", err, res)
	}
}
