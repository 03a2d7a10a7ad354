package meta_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/meta"
	"github.com/kalcifer/kalcifer/channels/providertest"
)

const (
	phoneID   = "106540352242922"
	token     = "EAAJB-access-token"
	appSecret = "app-secret-123"
)

func config(base, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"phone_number_id":%q,"access_token":%q,"app_secret":%q,"base_url":%q%s}`, phoneID, token, appSecret, base, extra))
}

const sent = `{"messaging_product":"whatsapp","contacts":[{"input":"+1 (555) 867-5310","wa_id":"15558675310"}],"messages":[{"id":"wamid.HBgLMTU1NTg2NzUzMTAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}]}`

var target = providertest.Target{New: meta.New, Config: func(base string) json.RawMessage { return config(base, "") }}

func TestSend(t *testing.T) {
	tests := []struct {
		name, extra, path string
		msg               channels.WhatsAppMessage
		want              string
	}{
		{"text", "", "/v21.0/" + phoneID + "/messages",
			channels.WhatsAppMessage{To: "+1 (555) 867-5310", Body: "Hello https://example.com"},
			`{"messaging_product":"whatsapp","recipient_type":"individual","to":"15558675310","type":"text","text":{"body":"Hello https://example.com","preview_url":false},"biz_opaque_callback_data":"dlv_1"}`},
		{"template", `,"api_version":"v22.0"`, "/v22.0/" + phoneID + "/messages",
			channels.WhatsAppMessage{To: "+15558675310", Template: "order_update", Language: "en_US", Params: []string{"Ada", "#42"}},
			`{"messaging_product":"whatsapp","recipient_type":"individual","to":"15558675310","type":"template","template":{"name":"order_update","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","text":"Ada"},{"type":"text","text":"#42"}]}]},"biz_opaque_callback_data":"dlv_1"}`},
		{"template without params", "", "/v21.0/" + phoneID + "/messages",
			channels.WhatsAppMessage{To: "15558675310", Template: "hello_world", Language: "en_US"},
			`{"messaging_product":"whatsapp","recipient_type":"individual","to":"15558675310","type":"template","template":{"name":"hello_world","language":{"code":"en_US"}},"biz_opaque_callback_data":"dlv_1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := providertest.NewServer(t, providertest.Reply{Status: 200, Body: sent}, nil)
			p, err := meta.New(config(srv.URL, tt.extra), providertest.Deps(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			m := tt.msg
			id, err := p.Send(context.Background(), channels.Message{DeliveryID: "dlv_1", Channel: channels.WhatsApp, WhatsApp: &m})
			if err != nil {
				t.Fatal(err)
			}
			if id != "wamid.HBgLMTU1NTg2NzUzMTAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA" {
				t.Errorf("id = %q", id)
			}
			got := srv.Last(t)
			if ct, auth := got.Header.Get("Content-Type"), got.Header.Get("Authorization"); got.Method != http.MethodPost || got.URL.Path != tt.path || ct != "application/json" || auth != "Bearer "+token {
				t.Errorf("request %s %s %s %q", got.Method, got.URL.Path, ct, auth)
			}
			if body, want := got.JSON(t), providertest.JSON(t, tt.want); !reflect.DeepEqual(body, want) {
				t.Errorf("body\n got %v\nwant %v", body, want)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	errBody := func(code int, typ, msg string) string {
		return fmt.Sprintf(`{"error":{"message":%q,"type":%q,"code":%d,"error_data":{"messaging_product":"whatsapp","details":"details here"},"error_subcode":2494010,"fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}`, msg, typ, code)
	}
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		retryable  bool
		code       string
		retryAfter time.Duration
	}{
		{"app rate limit", 400, nil, errBody(4, "OAuthException", "(#4) Application request limit reached"), true, "4", 0},
		{"waba rate limit", 400, nil, errBody(80007, "OAuthException", "(#80007) Rate limit issues"), true, "80007", 0},
		{"throughput", 400, nil, errBody(130429, "OAuthException", "(#130429) Rate limit hit"), true, "130429", 0},
		{"spam rate", 400, nil, errBody(131048, "OAuthException", "(#131048) Spam rate limit hit"), true, "131048", 0},
		{"pair rate", 400, nil, errBody(131056, "OAuthException", "(#131056) (Business Account, Consumer Account) pair rate limit hit"), true, "131056", 0},
		{"429", 429, map[string]string{"Retry-After": "5"}, errBody(130429, "OAuthException", "Rate limit hit"), true, "130429", 5 * time.Second},
		{"undeliverable", 400, nil, errBody(131026, "OAuthException", "(#131026) Message Undeliverable."), false, "131026", 0},
		{"re-engagement", 400, nil, errBody(131047, "OAuthException", "(#131047) Re-engagement message"), false, "131047", 0},
		{"template params", 400, nil, errBody(132000, "OAuthException", "(#132000) Number of parameters does not match"), false, "132000", 0},
		{"template missing", 404, nil, errBody(132001, "OAuthException", "(#132001) Template name does not exist in the translation"), false, "132001", 0},
		{"invalid parameter", 400, nil, errBody(100, "OAuthException", "(#100) Invalid parameter"), false, "100", 0},
		{"token", 401, nil, errBody(190, "OAuthException", "Error validating access token: Session has expired"), false, "190", 0},
		{"unknown 500", 500, nil, errBody(1, "OAuthException", "An unknown error occurred"), true, "1", 0},
		{"service 503", 503, nil, errBody(2, "OAuthException", "Service temporarily unavailable"), true, "2", 0},
		{"generic 500", 500, nil, errBody(131000, "OAuthException", "Something went wrong"), true, "131000", 0},
		{"bare 502", 502, nil, "<html>Bad Gateway</html>", true, "502", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := providertest.NewServer(t, providertest.Reply{Status: tt.status, Header: tt.header, Body: tt.body}, nil)
			_, err := target.Send(t, srv, channels.Message{WhatsApp: &channels.WhatsAppMessage{To: "+15558675310", Body: "Hi"}})
			providertest.CheckError(t, err, providertest.Want{Code: tt.code, Retryable: tt.retryable, RetryAfter: tt.retryAfter})
		})
	}
}

func TestSendTransportFailure(t *testing.T) {
	target.CheckTransportFailure(t, channels.Message{WhatsApp: &channels.WhatsAppMessage{To: "+15558675310", Body: "Hi"}})
}

func TestSendUnusableMessage(t *testing.T) {
	p := target.Build(t, "https://graph.facebook.com", http.DefaultClient)
	providertest.CheckUnsendable(t, p, map[string]channels.Message{
		"sms":                  {SMS: &channels.TextMessage{To: "+1555", Body: "x"}},
		"no recipient":         {WhatsApp: &channels.WhatsAppMessage{To: "+", Body: "x"}},
		"empty":                {WhatsApp: &channels.WhatsAppMessage{To: "+1555"}},
		"template no language": {WhatsApp: &channels.WhatsAppMessage{To: "+1555", Template: "t"}},
	})
}

func TestNewConfig(t *testing.T) {
	providertest.CheckNew(t, meta.New, providertest.Deps(http.DefaultClient), []providertest.ConfigCase{
		{`{"access_token":"t"}`, "phone_number_id is required"},
		{`{"phone_number_id":"1"}`, "access_token is required"},
		{`{"phone_number_id":"1/../2","access_token":"t"}`, "phone_number_id"},
		{`{"phone_number_id":"1","access_token":"t","api_version":"21"}`, "api_version"},
		{`{"phone_number_id":"1","access_token":"t","base_url":"http://graph.facebook.com"}`, "base_url"},
		{`{"phone_number_id":"1","access_token":"t","token":"x"}`, "unknown field"},
		{`{"phone_number_id":"1","access_token":"t"}`, ""},
		{`{"phone_number_id":"1","access_token":"t","api_version":"v23.0","app_secret":"s","verify_token":"v","base_url":"https://graph.example.com/"}`, ""},
	})
	if k := meta.Kind; k.Name != "whatsapp_cloud" || k.Idempotent || !reflect.DeepEqual(k.Channels, []string{channels.WhatsApp}) ||
		!reflect.DeepEqual(k.Secrets, []string{"access_token", "app_secret", "verify_token"}) {
		t.Errorf("Kind = %+v", k)
	}
}

func TestVerifySubscription(t *testing.T) {
	cfg := config("https://graph.facebook.com", `,"verify_token":"vt-123"`)
	q := func(mode, tok, challenge string) url.Values {
		return url.Values{"hub.mode": {mode}, "hub.verify_token": {tok}, "hub.challenge": {challenge}}
	}
	if c, ok := meta.VerifySubscription(q("subscribe", "vt-123", "1158201444"), cfg); !ok || c != "1158201444" {
		t.Errorf("valid handshake = %q, %v", c, ok)
	}
	for name, tt := range map[string]struct {
		q   url.Values
		cfg json.RawMessage
	}{
		"wrong token":     {q("subscribe", "vt-124", "1"), cfg},
		"wrong mode":      {q("unsubscribe", "vt-123", "1"), cfg},
		"no challenge":    {q("subscribe", "vt-123", ""), cfg},
		"no verify_token": {q("subscribe", "", "1"), config("https://graph.facebook.com", "")},
		"bad config":      {q("subscribe", "vt-123", "1"), json.RawMessage(`{"verify_token":"vt-123"}`)},
	} {
		if c, ok := meta.VerifySubscription(tt.q, tt.cfg); ok || c != "" {
			t.Errorf("%s: = %q, %v", name, c, ok)
		}
	}
}

func signed(body []byte, secret string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/whatsapp", strings.NewReader(string(body)))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	r.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return r
}

const statusWebhook = `{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [
          {"id": "wamid.A", "status": "sent", "timestamp": "1772600000", "recipient_id": "15558675310", "biz_opaque_callback_data": "dlv_1"},
          {"id": "wamid.A", "status": "delivered", "timestamp": "1772600001", "recipient_id": "15558675310", "biz_opaque_callback_data": "dlv_1",
           "conversation": {"id": "c1", "origin": {"type": "utility"}}, "pricing": {"billable": true, "pricing_model": "CBP", "category": "utility"}},
          {"id": "wamid.A", "status": "read", "timestamp": "1772600002", "recipient_id": "15558675310", "biz_opaque_callback_data": "dlv_1"}
        ]
      },
      "field": "messages"
    }, {
      "value": {
        "messaging_product": "whatsapp",
        "statuses": [
          {"id": "wamid.B", "status": "failed", "timestamp": "1772600003", "recipient_id": "15558675311",
           "errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message", "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]}
        ]
      },
      "field": "messages"
    }]
  }]
}`

func TestStatuses(t *testing.T) {
	cfg := config("https://graph.facebook.com", "")
	body := []byte(statusWebhook)
	got, err := meta.Statuses(signed(body, appSecret), body, cfg, providertest.Deps(http.DefaultClient))
	if err != nil {
		t.Fatal(err)
	}
	want := []channels.Status{
		{MessageID: "wamid.A", DeliveryID: "dlv_1", Type: channels.StatusDelivered, At: time.Unix(1772600001, 0).UTC(), EventID: "wamid.A:delivered"},
		{MessageID: "wamid.A", DeliveryID: "dlv_1", Type: channels.StatusOpened, At: time.Unix(1772600002, 0).UTC(), EventID: "wamid.A:read"},
		{MessageID: "wamid.B", Type: channels.StatusFailed, At: time.Unix(1772600003, 0).UTC(), EventID: "wamid.B:failed",
			Reason: "131047 Re-engagement message: Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statuses\n got %+v\nwant %+v", got, want)
	}

	// Inbound messages and other objects carry no statuses.
	other := []byte(`{"object":"page","entry":[]}`)
	if got, err := meta.Statuses(signed(other, appSecret), other, cfg, providertest.Deps(http.DefaultClient)); err != nil || got != nil {
		t.Errorf("other object: %v, %v", got, err)
	}
}

func TestStatusesBadSignature(t *testing.T) {
	cfg := config("https://graph.facebook.com", "")
	body := []byte(statusWebhook)
	tampered := []byte(strings.Replace(statusWebhook, "wamid.B", "wamid.C", 1))
	noHeader := signed(body, appSecret)
	noHeader.Header.Del("X-Hub-Signature-256")
	sha1Header := signed(body, appSecret)
	sha1Header.Header.Set("X-Hub-Signature-256", strings.Replace(sha1Header.Header.Get("X-Hub-Signature-256"), "sha256=", "sha1=", 1))
	for name, tt := range map[string]struct {
		r    *http.Request
		body []byte
	}{
		"tampered":   {signed(body, appSecret), tampered},
		"wrong key":  {signed(body, "other-secret"), body},
		"no header":  {noHeader, body},
		"wrong algo": {sha1Header, body},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := meta.Statuses(tt.r, tt.body, cfg, providertest.Deps(http.DefaultClient))
			providertest.WantBadSignature(t, got, err)
		})
	}
	noSecret := json.RawMessage(`{"phone_number_id":"1","access_token":"t"}`)
	if _, err := meta.Statuses(signed(body, ""), body, noSecret, providertest.Deps(http.DefaultClient)); err == nil {
		t.Error("Statuses without app_secret succeeded")
	}
}

func FuzzStatuses(f *testing.F) {
	f.Add([]byte(statusWebhook))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"status":"failed","errors":[{}]}]}}]}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"x","status":"read","timestamp":"-99999999999999"}]}}]}]}`))
	f.Add([]byte(`[]`))
	cfg := config("https://graph.facebook.com", "")
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := meta.Statuses(signed(body, appSecret), body, cfg, providertest.Deps(http.DefaultClient))
		if err != nil {
			return
		}
		for _, s := range got {
			switch s.Type {
			case channels.StatusDelivered, channels.StatusOpened, channels.StatusFailed:
			default:
				t.Errorf("status type %q", s.Type)
			}
			if s.MessageID == "" || s.EventID != s.MessageID+":"+map[string]string{"delivered": "delivered", "opened": "read", "failed": "failed"}[s.Type] {
				t.Errorf("status %+v", s)
			}
		}
	})
}
