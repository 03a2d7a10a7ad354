package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// TestEventBeforeTimeoutWins commits an event that arrives before a
// wait_for_event's timeout but reaches no instance before the timeout fires
// (routing delayed, as around a restart). Whichever came first wins: the
// instance takes the event branch, not the timeout, and the event arriving
// later changes nothing.
func TestEventBeforeTimeoutWins(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g := chain(triggerEntry(), node("wait", "wait_for_event", map[string]any{"event_type": "paid", "timeout": "1h"}))
		g["nodes"] = append(g["nodes"].([]any), node("thanks", "send_email", map[string]any{"template_id": "thanks"}),
			node("nudge", "send_email", map[string]any{"template_id": "nudge"}))
		g["edges"] = append(g["edges"].([]any), edge("wait", "thanks", "event_received"), edge("wait", "nudge", "timed_out"))
		j := e.publish(g)
		res := e.enrolOne(j, "ada", nil)
		e.settle()

		e.clock.Advance(30 * time.Minute)
		// Committed, but not handed to the router: only the sweep or the
		// timeout's look-up can find it.
		paid, _ := json.Marshal(map[string]any{"amount": 10})
		if _, _, err := e.store.Events().AppendEvents(context.Background(), e.tenant.ID, []store.Event{{
			TenantID: e.tenant.ID, CustomerID: e.instances(j)[0].CustomerID, MessageID: "late-paid",
			Type: "paid", Properties: paid, ReceivedAt: e.clock.Now(),
		}}); err != nil {
			t.Fatal(err)
		}
		e.advance(31 * time.Minute) // the timeout fires before the event is routed

		v := e.view(res.InstanceID)
		if v.Status != store.InstanceCompleted {
			t.Fatalf("instance %s, want completed", v.Status)
		}
		var sent []string
		for _, d := range e.allDeliveries("instance_id=" + res.InstanceID) {
			sent = append(sent, d.NodeID)
		}
		if len(sent) != 1 || sent[0] != "thanks" {
			t.Fatalf("deliveries %v, want only the event branch's thanks", sent)
		}
	})
}
