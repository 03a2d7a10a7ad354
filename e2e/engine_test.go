package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

const day = 24 * time.Hour

func TestEventEnrolsWaitsAndCompletes(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		e.event("ada", "signed_up", nil)
		e.settle()
		in := e.status(j, store.InstanceWaiting)
		e.sent(in.ID, "welcome")

		e.advance(day - time.Second)
		e.status(j, store.InstanceWaiting)
		e.advance(time.Second)
		e.status(j, store.InstanceCompleted)
		e.sent(in.ID, "welcome", "follow_up")
	})
}

func TestEventsAreDeduplicatedByMessageID(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		first := e.event("ada", "signed_up", map[string]any{"message_id": "m-1"})
		second := e.event("ada", "signed_up", map[string]any{"message_id": "m-1"})
		if first.Duplicate || !second.Duplicate || second.EventID != first.EventID || second.CustomerID != "ada" {
			t.Fatalf("first %+v, second %+v", first, second)
		}
		e.settle()
		e.only(j)
	})
}

func TestEventBatchReportsEachInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		ok[map[string]any](e.do("PUT", "/customers/known", map[string]any{"email": "known@example.com"}), http.StatusCreated)
		ok[map[string]any](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": true}}), http.StatusOK)

		r := e.do("POST", "/events/batch", map[string]any{"events": []any{
			map[string]any{"customer_id": "known", "type": "signed_up", "message_id": "b-1"},
			map[string]any{"customer_id": "stranger", "type": "signed_up"},
			map[string]any{"customer_id": "known", "type": "signed_up", "message_id": "b-1"},
		}})
		results := ok[struct{ Results []eventResult }](r, http.StatusAccepted).Results
		if len(results) != 3 {
			t.Fatalf("results %s", r.body)
		}
		if res := results[0]; res.Error != nil || res.EventID == "" || res.Duplicate || res.CustomerID != "known" {
			t.Errorf("slot 0 %+v", res)
		}
		if res := results[1]; res.Error == nil || res.Error.Code != "unknown_customer" || res.EventID != "" {
			t.Errorf("slot 1 %+v", res)
		}
		if res := results[2]; !res.Duplicate || res.EventID != results[0].EventID {
			t.Errorf("slot 2 %+v, want a duplicate of slot 0", res)
		}
		e.settle()
		if in := e.only(j); in.Status != store.InstanceWaiting {
			t.Fatalf("instance %+v", in)
		}
		e.do("GET", "/customers/stranger?by=external_id", nil).fails(http.StatusNotFound, "customer_not_found")
	})
}

func TestSegmentIdentifyThenTrack(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		segment := func(path string, body map[string]any) {
			t.Helper()
			res := ok[struct{ Success bool }](e.do("POST", path, body), http.StatusOK)
			if !res.Success {
				t.Fatalf("%s answered success false", path)
			}
		}
		segment("/identify", map[string]any{
			"userId": "ada", "anonymousId": "anon-1", "messageId": "id-1", "timestamp": "2026-03-02T08:59:00Z",
			"traits":  map[string]any{"email": "ada@example.com", "name": "Ada", "timezone": "Europe/London", "plan": "pro"},
			"context": map[string]any{"library": map[string]any{"name": "analytics-node"}}, "integrations": map[string]any{},
		})
		segment("/track", map[string]any{"userId": "ada", "event": "signed_up", "messageId": "tr-1",
			"properties": map[string]any{"source": "ads"}, "sentAt": "2026-03-02T09:00:00Z"})
		e.settle()
		e.status(j, store.InstanceWaiting)

		c := ok[struct {
			Email, Name, Timezone string
			Properties            map[string]any
		}](e.do("GET", "/customers/ada?by=external_id", nil), http.StatusOK)
		if c.Email != "ada@example.com" || c.Name != "Ada" || c.Timezone != "Europe/London" || c.Properties["plan"] != "pro" {
			t.Fatalf("customer after identify %+v", c)
		}
		if _, ok := c.Properties["email"]; ok {
			t.Fatalf("profile traits leaked into properties: %+v", c.Properties)
		}

		segment("/batch", map[string]any{"batch": []any{
			map[string]any{"type": "identify", "userId": "bob", "traits": map[string]any{"email": "bob@example.com"}},
			map[string]any{"type": "track", "userId": "bob", "event": "signed_up"},
		}})
		e.settle()
		if n := len(e.instances(j)); n != 2 {
			t.Fatalf("%d instances after the batch, want 2", n)
		}
	})
}

// waitForOpen waits up to 3 days for email_opened and thanks or reminds.
func waitForOpen() map[string]any {
	g := chain(eventEntry("signed_up"), node("wait_open", "wait_for_event",
		map[string]any{"event_type": "email_opened", "timeout": "3d"}))
	g["nodes"] = append(g["nodes"].([]any), email("thanks"), email("reminder"))
	g["edges"] = append(g["edges"].([]any), edge("wait_open", "thanks", "event_received"), edge("wait_open", "reminder", "timed_out"))
	return g
}

func TestWaitForEvent(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		t.Run("received", func(t *testing.T) {
			e := e.with(t)
			j := e.publish(waitForOpen())
			e.event("ada", "signed_up", nil)
			e.settle()
			in := e.status(j, store.InstanceWaiting)
			e.advance(day)
			e.event("ada", "email_opened", nil)
			e.settle()
			e.status(j, store.InstanceCompleted)
			e.advance(3 * day)
			e.sent(in.ID, "thanks")
		})
		t.Run("timed out", func(t *testing.T) {
			e := e.with(t)
			j := e.publish(waitForOpen())
			e.event("bob", "signed_up", nil)
			e.settle()
			in := e.status(j, store.InstanceWaiting)
			e.advance(3 * day)
			e.status(j, store.InstanceCompleted)
			e.event("bob", "email_opened", nil)
			e.settle()
			e.sent(in.ID, "reminder")
		})
	})
}

func TestExitCriteriaEndsTheInstance(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g := welcome()
		g["exit_criteria"] = map[string]any{"event_type": "unsubscribed"}
		j := e.publish(g)
		e.event("ada", "signed_up", nil)
		e.settle()
		in := e.status(j, store.InstanceWaiting)
		e.event("ada", "unsubscribed", nil)
		e.settle()
		e.status(j, store.InstanceExited)
		e.advance(day)
		e.sent(in.ID, "welcome")
	})
}

func TestTriggerWithIdempotencyKeyEnrolsOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		key := map[string]string{"Idempotency-Key": "order-42"}
		first := e.trigger(j, key, "ada")
		if first[0].Error != nil || first[0].InstanceID == "" || first[0].Status != store.InstanceWaiting || first[0].CustomerID != "ada" {
			t.Fatalf("first trigger %+v", first[0])
		}
		second := e.trigger(j, key, "ada")
		if second[0].Error == nil || second[0].InstanceID != "" {
			t.Fatalf("retried trigger %+v, want a refusal", second[0])
		}
		in := e.only(j)
		if in.ID != first[0].InstanceID {
			t.Fatalf("instance %s, trigger said %s", in.ID, first[0].InstanceID)
		}
	})
}

func TestTriggerRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		t.Run("paused journey", func(t *testing.T) {
			e := e.with(t)
			j := e.publish(welcome())
			ok[map[string]any](e.do("POST", "/journeys/"+j+"/pause", nil), http.StatusOK)
			res := e.trigger(j, nil, "ada")
			if res[0].Error == nil || res[0].Error.Code != "journey_not_active" {
				t.Fatalf("trigger on a paused journey %+v", res[0])
			}
			if n := len(e.instances(j)); n != 0 {
				t.Fatalf("%d instances", n)
			}
			ok[map[string]any](e.do("POST", "/journeys/"+j+"/resume", nil), http.StatusOK)
			if res := e.trigger(j, nil, "ada"); res[0].Error != nil {
				t.Fatalf("trigger after resume %+v", res[0])
			}
		})
		t.Run("re-entry never", func(t *testing.T) {
			e := e.with(t)
			g := chain(eventEntry("signed_up"), email("hello"))
			g["re_entry"] = "never"
			j := e.publish(g)
			if res := e.trigger(j, nil, "ada"); res[0].Status != store.InstanceCompleted {
				t.Fatalf("first trigger %+v", res[0])
			}
			res := e.trigger(j, nil, "ada", "bob")
			if res[0].Error == nil || res[0].Error.Code != "already_entered" || res[1].Error != nil {
				t.Fatalf("second trigger %+v", res)
			}
		})
		t.Run("unknown journey", func(t *testing.T) {
			e := e.with(t)
			e.do("POST", "/journeys/jrn_missing/trigger", map[string]any{"customer_id": "ada"}).fails(http.StatusNotFound, "journey_not_found")
		})
	})
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestWebhookEntry(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const secret = "a-secret-of-sixteen-bytes"
		signed := e.publish(chain(node("hook", "webhook_entry", map[string]any{"secret": secret}), email("hello")))
		body := []byte(`{"customer_id":"ada","data":{"order":42},"message_id":"wh-1"}`)
		path := "/webhooks/" + signed

		e.send("POST", path, body, nil).fails(http.StatusUnauthorized, "invalid_signature")
		e.send("POST", path, body, map[string]string{"X-Kalcifer-Signature": sign("another-secret-entirely", body)}).
			fails(http.StatusUnauthorized, "invalid_signature")
		e.send("POST", path, body, map[string]string{"X-Kalcifer-Signature": sign(secret, body)[:20]}).
			fails(http.StatusUnauthorized, "invalid_signature")
		if n := len(e.instances(signed)); n != 0 {
			t.Fatalf("%d instances after unsigned calls", n)
		}
		res := ok[enrolment](e.send("POST", path, body, map[string]string{"X-Kalcifer-Signature": sign(secret, body)}), http.StatusAccepted)
		if res.InstanceID == "" || res.CustomerID != "ada" || res.Status != store.InstanceCompleted {
			t.Fatalf("signed webhook %+v", res)
		}
		// The same message id again is the same enrolment, replayed.
		e.send("POST", path, body, map[string]string{"X-Kalcifer-Signature": sign(secret, body)}).
			fails(http.StatusConflict, "duplicate_entry")
		e.only(signed)

		open := e.publish(chain(node("hook", "webhook_entry", nil), email("hello")))
		res = ok[enrolment](e.do("POST", "/webhooks/"+open, map[string]any{"customer_id": "bob"}), http.StatusAccepted)
		if res.InstanceID == "" {
			t.Fatalf("webhook without a secret %+v", res)
		}
		e.do("POST", "/webhooks/jrn_missing", map[string]any{"customer_id": "bob"}).fails(http.StatusNotFound, "journey_not_found")
	})
}

func TestInstanceActions(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		in := e.trigger(j, nil, "ada")[0]
		path := "/instances/" + in.InstanceID + "/"

		act := func(action string, body any, want string) {
			t.Helper()
			got := ok[instance](e.do("POST", path+action, body), http.StatusOK)
			if got.Status != want || got.ID != in.InstanceID {
				t.Fatalf("%s: instance %+v, want %s", action, got, want)
			}
		}
		act("pause", nil, store.InstancePaused)
		e.do("POST", path+"pause", nil).fails(http.StatusConflict, "invalid_transition")
		act("resume", nil, store.InstanceWaiting)
		e.do("POST", path+"resume", nil).fails(http.StatusConflict, "invalid_transition")
		act("cancel", map[string]any{"reason": "asked to stop"}, store.InstanceExited)
		e.do("POST", path+"cancel", nil).fails(http.StatusConflict, "invalid_transition")

		e.advance(2 * day)
		e.status(j, store.InstanceExited)
		e.sent(in.InstanceID, "welcome")

		e.do("POST", "/instances/ins_missing/pause", nil).fails(http.StatusNotFound, "instance_not_found")
		e.do("POST", path+"cancel", map[string]any{"why": "typo"}).fails(http.StatusBadRequest, "unknown_field")
	})
}

func TestUnknownCustomersRejectedWhenTheTenantSaysSo(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		e.reachable.Store("ghost", true) // the harness must not create ghost
		ok[map[string]any](e.do("PATCH", "/tenant", map[string]any{"settings": map[string]any{"reject_unknown_customers": true}}), http.StatusOK)
		e.do("POST", "/events", map[string]any{"customer_id": "ghost", "type": "signed_up"}).fails(http.StatusUnprocessableEntity, "unknown_customer")
		e.do("POST", "/track", map[string]any{"userId": "ghost", "event": "signed_up"}).fails(http.StatusUnprocessableEntity, "unknown_customer")
		if res := e.trigger(j, nil, "ghost"); res[0].Error == nil || res[0].Error.Code != "unknown_customer" {
			t.Fatalf("trigger for an unknown customer %+v", res[0])
		}
		e.settle()
		if n := len(e.instances(j)); n != 0 {
			t.Fatalf("%d instances for unknown customers", n)
		}
		// identify is how customers become known.
		ok[map[string]any](e.do("POST", "/identify", map[string]any{"userId": "ghost"}), http.StatusOK)
		e.event("ghost", "signed_up", nil)
		e.settle()
		e.status(j, store.InstanceWaiting)
	})
}

func TestConcurrentTriggersEnrolOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(welcome())
		const n = 10
		results := make([]json.RawMessage, n)
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				r := e.send("POST", "/journeys/"+j+"/trigger", map[string]any{"customer_id": "ada"}, nil)
				statuses[i], results[i] = r.status, r.body
			})
		}
		wg.Wait()
		entered := 0
		for i := range n {
			if statuses[i] != http.StatusOK {
				t.Fatalf("trigger %d answered %d: %s", i, statuses[i], results[i])
			}
			var body struct{ Results []enrolment }
			if err := json.Unmarshal(results[i], &body); err != nil {
				t.Fatal(err)
			}
			if body.Results[0].Error == nil {
				entered++
			}
		}
		if entered != 1 {
			t.Fatalf("%d triggers entered, want 1", entered)
		}
		e.only(j)
	})
}
