package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/store"
)

// postmark is a local server speaking Postmark's send API
// (https://postmarkapp.com/developer/api/email-api): it checks the server
// token and answers with a MessageID.
type postmark struct {
	mu   sync.Mutex
	sent []map[string]any
}

func (p *postmark) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/email" || r.Header.Get("X-Postmark-Server-Token") != "pm-token" {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"ErrorCode": 10, "Message": "Bad or missing Server API token."}`)
		return
	}
	var msg map[string]any
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, `{"ErrorCode": 402, "Message": "Invalid JSON"}`)
		return
	}
	p.mu.Lock()
	p.sent = append(p.sent, msg)
	id := fmt.Sprintf("pm-%d", len(p.sent))
	p.mu.Unlock()
	fmt.Fprintf(w, `{"To": %q, "SubmittedAt": "2026-03-01T09:00:00Z", "MessageID": %q, "ErrorCode": 0, "Message": "OK"}`, msg["To"], id)
}

// TestProviderStatusResumesTheJourney: a journey emails through a Postmark
// account, then waits for email_opened. Postmark's Open webhook, posted to
// the account's callback URL with its Basic credentials, marks the
// delivery delivered and opened and resumes the journey, once however
// often it is posted.
func TestProviderStatusResumesTheJourney(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			pm := &postmark{}
			server := httptest.NewTLSServer(pm)
			t.Cleanup(server.Close)
			e := newEnvWith(t, b.open, server.Client())
			acct := ok[struct {
				ID          string `json:"id"`
				CallbackURL string `json:"callback_url"`
			}](e.do("POST", "/providers", map[string]any{"name": "postmark", "kind": "postmark", "default_for": []string{"email"},
				"config": map[string]any{"server_token": "pm-token", "from": "shop@example.com", "base_url": server.URL,
					"webhook_username": "hook", "webhook_password": "pw"}}), http.StatusCreated)

			g := chain(eventEntry("signed_up"), email("hello"), node("wait_open", "wait_for_event",
				map[string]any{"event_type": "email_opened", "timeout": "3d"}))
			g["nodes"] = append(g["nodes"].([]any), email("thanks"), email("reminder"))
			g["edges"] = append(g["edges"].([]any), edge("wait_open", "thanks", "event_received"), edge("wait_open", "reminder", "timed_out"))
			j := e.publish(g)
			e.event("ada", "signed_up", nil)
			e.settle()
			in := e.status(j, store.InstanceWaiting)
			hello := e.allDeliveries("instance_id=" + in.ID)
			if len(hello) != 1 || hello[0].Status != store.DeliverySent || hello[0].ProviderMessageID != "pm-1" || hello[0].Provider != acct.ID {
				t.Fatalf("hello: %+v", hello)
			}

			open := `{"RecordType": "Open", "MessageID": "pm-1", "ReceivedAt": "2026-03-01T10:00:00Z", "Recipient": "ada@example.com"}`
			callback := func(password string) response {
				auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("hook:"+password))
				return e.send("POST", strings.TrimPrefix(acct.CallbackURL, api.BasePath), open, map[string]string{"Authorization": auth})
			}
			callback("wrong").fails(http.StatusUnauthorized, "invalid_signature")
			if got := ok[map[string]int](callback("pw"), http.StatusOK); got["recorded"] != 1 {
				t.Fatalf("callback: %v", got)
			}
			if got := ok[map[string]int](callback("pw"), http.StatusOK); got["repeated"] != 1 {
				t.Fatalf("repeated callback: %v", got)
			}
			e.settle()
			e.status(j, store.InstanceCompleted)
			d := e.allDeliveries("instance_id=" + in.ID)
			if nodes := nodesOf(d); !slices.Equal(nodes, []string{"hello", "thanks"}) {
				t.Fatalf("deliveries from %v, want hello and thanks", nodes)
			}
			for _, dl := range d {
				if dl.NodeID == "hello" && (dl.Status != store.DeliveryDelivered || dl.OpenedAt == nil) {
					t.Fatalf("hello after the open: %+v", dl)
				}
				if dl.NodeID == "thanks" && (dl.Status != store.DeliverySent || dl.ProviderMessageID != "pm-2") {
					t.Fatalf("thanks: %+v", dl)
				}
			}
			events := ok[struct{ Data []map[string]any }](e.do("GET", "/customers/"+hello[0].CustomerID+"/events", nil), http.StatusOK).Data
			opened := 0
			for _, ev := range events {
				if ev["type"] == "email_opened" {
					opened++
				}
			}
			if opened != 1 {
				t.Fatalf("%d email_opened events, want 1: %v", opened, events)
			}
			pm.mu.Lock()
			defer pm.mu.Unlock()
			if len(pm.sent) != 2 || pm.sent[0]["To"] != "ada@example.com" || pm.sent[0]["From"] != "shop@example.com" {
				t.Fatalf("postmark received %v", pm.sent)
			}
		})
	}
}
