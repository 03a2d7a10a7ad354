package api_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/store"
)

type callbackJSON struct {
	Recorded  int `json:"recorded"`
	Repeated  int `json:"repeated"`
	Unmatched int `json:"unmatched"`
}

func basicAuth(user, password string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
}

// callback posts body to path as a provider would: without an API key.
func (e *env) callback(path, body string, header map[string]string) response {
	e.t.Helper()
	return e.send(request{method: "POST", path: path, body: body, key: new(""), header: header})
}

// TestStatusCallback posts Postmark's webhook for a message a delivery
// sent: the delivery becomes delivered and the customer's event is emitted
// once, however often the webhook comes.
func TestStatusCallback(t *testing.T) {
	withChannels(t, true, func(t *testing.T, e *env, r *rig) {
		account := ok[providerJSON](e.do("POST", "/providers", postmarkAccount("pm")), http.StatusCreated)
		logs := ok[providerJSON](e.do("POST", "/providers", map[string]any{"name": "logs", "kind": "log"}), http.StatusCreated)
		j := e.createJourney("welcome", validGraph())
		ada := e.upsert("ada", map[string]any{"email": "ada@example.test"}, http.StatusCreated)
		in := e.seed(e.tenant.ID, store.Instance{JourneyID: j.ID, Version: 1, CustomerID: ada.ID, Status: store.InstanceWaiting, Nodes: []string{"wait_1"}}, nil,
			store.Delivery{Key: "k1", NodeID: "email_1", Channel: "email", Status: store.DeliverySent, Provider: account.ID, ProviderMessageID: "msg-1",
				Payload: json.RawMessage(`{}`)})
		ds := ids(e, "/deliveries?instance_id="+in.ID)
		if len(ds) != 1 {
			t.Fatalf("deliveries %v", ds)
		}

		path := account.CallbackURL[len("/api/v1"):]
		creds := basicAuth("hooks", webhookPassword)
		delivered := `{"RecordType":"Delivery","MessageID":"msg-1","Recipient":"ada@example.test","DeliveredAt":"2026-03-01T09:05:00Z"}`
		if got := ok[callbackJSON](e.callback(path, delivered, creds), http.StatusOK); got != (callbackJSON{Recorded: 1}) {
			t.Fatalf("first callback %+v", got)
		}
		d := ok[store.Delivery](e.do("GET", "/deliveries/"+ds[0], nil), http.StatusOK)
		if d.Status != store.DeliveryDelivered || d.DeliveredAt == nil || !d.DeliveredAt.Equal(time.Date(2026, 3, 1, 9, 5, 0, 0, time.UTC)) {
			t.Fatalf("delivery after the callback %+v", d)
		}
		if got := ok[callbackJSON](e.callback(path, delivered, creds), http.StatusOK); got != (callbackJSON{Repeated: 1}) {
			t.Fatalf("repeated callback %+v", got)
		}
		unknown := strings.Replace(delivered, "msg-1", "msg-2", 1)
		if got := ok[callbackJSON](e.callback(path, unknown, creds), http.StatusOK); got != (callbackJSON{Unmatched: 1}) {
			t.Fatalf("callback for another message %+v", got)
		}
		// The repeat is emitted again under the same id, which the event
		// store keeps once: its first emission may have failed.
		events := r.events()
		if len(events) != 2 || events[1].event.ID != events[0].event.ID {
			t.Fatalf("emitted %+v, want one event twice", events)
		}
		if ev := events[0]; ev.tenantID != e.tenant.ID || ev.externalID != "ada" || ev.event.Type != "email_delivered" ||
			ev.event.ID != "delivery:"+ds[0]+":delivered" || ev.event.Properties["provider_message_id"] != "msg-1" {
			t.Fatalf("emitted %+v", ev)
		}

		e.callback(path, `{"RecordType":`, creds).fails(http.StatusBadRequest, "invalid_callback")
		e.callback(path, `{"RecordType":"Delivery","MessageID":7}`, creds).fails(http.StatusBadRequest, "invalid_callback")

		// Only the account's credentials are accepted.
		for _, header := range []map[string]string{nil, basicAuth("hooks", "guess"), basicAuth("other", webhookPassword),
			{"Authorization": "Bearer " + e.key}} {
			e.callback(path, delivered, header).fails(http.StatusUnauthorized, "invalid_signature")
		}
		if n := len(r.events()); n != 2 {
			t.Fatalf("refused callbacks emitted %d events", n)
		}

		other, _ := e.newTenant("other")
		e.callback("/callbacks/"+e.tenant.ID+"/prv_nope", delivered, creds).fails(http.StatusNotFound, "provider_not_found")
		e.callback("/callbacks/"+other.ID+"/"+account.ID, delivered, creds).fails(http.StatusNotFound, "provider_not_found")
		e.callback("/callbacks/ten_nope/"+account.ID, delivered, creds).fails(http.StatusNotFound, "provider_not_found")
		e.callback("/callbacks/"+e.tenant.ID+"/"+logs.ID, delivered, creds).fails(http.StatusNotFound, "no_callbacks")
		e.send(request{method: "GET", path: path, key: new("")}).fails(http.StatusNotFound, "no_callbacks")
		e.send(request{method: "GET", path: "/callbacks/" + other.ID + "/" + account.ID, key: new("")}).fails(http.StatusNotFound, "provider_not_found")
	})
}

// TestCallbackVerification answers Meta's check of the callback URL.
func TestCallbackVerification(t *testing.T) {
	withChannels(t, true, func(t *testing.T, e *env, _ *rig) {
		account := ok[providerJSON](e.do("POST", "/providers", map[string]any{"name": "wa", "kind": "whatsapp_cloud",
			"config": map[string]any{"phone_number_id": "123", "access_token": "meta-token", "verify_token": "meta-verify",
				"app_secret": "meta-app-secret"}}), http.StatusCreated)
		if account.CallbackURL == "" {
			t.Fatal("a meta account has no callback URL")
		}
		path := account.CallbackURL[len("/api/v1"):]
		query := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {"meta-verify"}, "hub.challenge": {"1158201444"}}
		r := e.send(request{method: "GET", path: path + "?" + query.Encode(), key: new("")})
		if r.status != http.StatusOK || string(r.body) != "1158201444" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("verification answered %d %q (%s)", r.status, r.body, r.header.Get("Content-Type"))
		}
		query.Set("hub.verify_token", "guess")
		e.send(request{method: "GET", path: path + "?" + query.Encode(), key: new("")}).fails(http.StatusForbidden, "invalid_signature")
		// Meta signs its posts with the app secret.
		e.callback(path, `{"object":"whatsapp_business_account","entry":[]}`, map[string]string{"X-Hub-Signature-256": "sha256=00"}).
			fails(http.StatusUnauthorized, "invalid_signature")
	})
}

func TestCallbackBodyLimit(t *testing.T) {
	t.Parallel()
	r := &rig{}
	e := newEnv(t, openSQLite(t), channelsOn(r, true), func(o *api.Options) { o.BodyLimit = 1024 })
	account := ok[providerJSON](e.do("POST", "/providers", postmarkAccount("pm")), http.StatusCreated)
	body := `{"RecordType":"Delivery","MessageID":"` + strings.Repeat("m", 2048) + `"}`
	e.callback(account.CallbackURL[len("/api/v1"):], body, basicAuth("hooks", webhookPassword)).fails(http.StatusRequestEntityTooLarge, "body_too_large")
}

// TestFormCallback posts Twilio's form-encoded callback, signed over the
// URL with its query and the form's fields: the intake sees the request
// as the provider sent it.
func TestFormCallback(t *testing.T) {
	withChannels(t, true, func(t *testing.T, e *env, r *rig) {
		account := ok[providerJSON](e.do("POST", "/providers", map[string]any{"name": "tw", "kind": "twilio",
			"config": map[string]any{"account_sid": "AC1", "auth_token": "twilio-token", "from": "+15550000"}}), http.StatusCreated)
		j := e.createJourney("welcome", validGraph())
		ada := e.upsert("ada", map[string]any{"phone": "+15550100"}, http.StatusCreated)
		in := e.seed(e.tenant.ID, store.Instance{JourneyID: j.ID, Version: 1, CustomerID: ada.ID, Status: store.InstanceWaiting, Nodes: []string{"wait_1"}}, nil,
			store.Delivery{Key: "k1", NodeID: "sms_1", Channel: "sms", Status: store.DeliverySent, Provider: account.ID, ProviderMessageID: "SM1",
				Payload: json.RawMessage(`{}`)})
		d := ids(e, "/deliveries?instance_id="+in.ID)[0]

		path := account.CallbackURL[len("/api/v1"):] + "?kalcifer_delivery_id=" + d
		form := url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "To": {"+15550100"}}
		sign := func(token string) map[string]string {
			mac := hmac.New(sha1.New, []byte(token))
			mac.Write([]byte(e.url + path))
			for _, k := range slices.Sorted(maps.Keys(form)) {
				mac.Write([]byte(k + form.Get(k)))
			}
			return map[string]string{"Content-Type": "application/x-www-form-urlencoded",
				"X-Twilio-Signature": base64.StdEncoding.EncodeToString(mac.Sum(nil))}
		}
		e.callback(path, form.Encode(), sign("guess")).fails(http.StatusUnauthorized, "invalid_signature")
		if got := ok[callbackJSON](e.callback(path, form.Encode(), sign("twilio-token")), http.StatusOK); got != (callbackJSON{Recorded: 1}) {
			t.Fatalf("callback %+v", got)
		}
		if got := ok[store.Delivery](e.do("GET", "/deliveries/"+d, nil), http.StatusOK); got.Status != store.DeliveryDelivered {
			t.Fatalf("delivery %+v", got)
		}
		if events := r.events(); len(events) != 1 || events[0].event.Type != "sms_delivered" {
			t.Fatalf("emitted %+v", events)
		}
	})
}
