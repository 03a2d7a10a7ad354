package sendgrid

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
)

func config(base string, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"api_key":"SG.test-key","from":"Shop <shop@example.com>","base_url":%q%s}`, base, extra))
}

var target = providertest.Target{New: New, Config: func(base string) json.RawMessage { return config(base, "") }}

// fakeSendGrid checks each request against the Mail Send contract and
// answers with r.
func fakeSendGrid(t *testing.T, r providertest.Reply) *providertest.Server {
	t.Helper()
	return providertest.NewServer(t, r, func(req providertest.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v3/mail/send" {
			t.Errorf("request %s %s, want POST /v3/mail/send", req.Method, req.URL.Path)
		}
		if got := req.Header.Get("Authorization"); got != "Bearer SG.test-key" {
			t.Errorf("Authorization %q", got)
		}
		if got := req.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q", got)
		}
		req.JSON(t)
	})
}

func TestSend(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*channels.Message)
		want string
	}{
		{"text and html", func(*channels.Message) {}, `{
			"personalizations":[{"to":[{"email":"joerg@example.org","name":"Jörg Müller"}]}],
			"from":{"email":"shop@example.com","name":"Shop"},
			"reply_to":{"email":"support@example.com"},
			"subject":"Grüße",
			"content":[{"type":"text/plain","value":"Hallo"},{"type":"text/html","value":"<p>Hallo</p>"}],
			"custom_args":{"kalcifer_delivery_id":"dlv_1"}}`},
		{"html only with own sender", func(m *channels.Message) {
			m.Email.Text, m.Email.ReplyTo, m.Email.From = "", "", "news@example.com"
		}, `{
			"personalizations":[{"to":[{"email":"joerg@example.org","name":"Jörg Müller"}]}],
			"from":{"email":"news@example.com"},
			"subject":"Grüße",
			"content":[{"type":"text/html","value":"<p>Hallo</p>"}],
			"custom_args":{"kalcifer_delivery_id":"dlv_1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeSendGrid(t, providertest.Reply{Status: http.StatusAccepted, Header: map[string]string{"X-Message-Id": "W6A3hTQ6TXOm8xvhB5TTmg"}})
			p, err := New(config(srv.URL, ""), providertest.Deps(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			m := providertest.Email()
			tc.edit(&m)
			id, err := p.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if id != "W6A3hTQ6TXOm8xvhB5TTmg" {
				t.Errorf("message id %q", id)
			}
			if bodies := srv.Bodies(); len(bodies) != 1 || !reflect.DeepEqual(providertest.JSON(t, bodies[0]), providertest.JSON(t, tc.want)) {
				t.Errorf("bodies %s\nwant %s", bodies, tc.want)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reply      providertest.Reply
		code       string
		retryable  bool
		retryAfter time.Duration
		msg        string
	}{
		{"bad request", providertest.Reply{Status: 400, Body: `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":"http://sendgrid.com/docs"}]}`},
			"400", false, 0, "from: The from address does not match"},
		{"unauthorized", providertest.Reply{Status: 401, Body: `{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]}`},
			"401", false, 0, "authorization grant is invalid"},
		{"forbidden", providertest.Reply{Status: 403, Body: `{"errors":[{"field":null,"message":"access forbidden"}]}`}, "403", false, 0, "access forbidden"},
		{"too large", providertest.Reply{Status: 413, Body: `{"errors":[{"field":null,"message":"too big"}]}`}, "413", false, 0, "too big"},
		{"rate limited", providertest.Reply{Status: 429,
			Header: map[string]string{"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": fmt.Sprint(providertest.Now.Add(42 * time.Second).Unix())},
			Body:   `{"errors":[{"field":null,"message":"too many requests"}]}`},
			"429", true, 42 * time.Second, "too many requests"},
		{"rate limited with retry-after", providertest.Reply{Status: 429, Header: map[string]string{"Retry-After": "7"}, Body: `{"errors":[{"message":"too many requests"}]}`},
			"429", true, 7 * time.Second, "too many requests"},
		{"server error", providertest.Reply{Status: 500, Body: `{"errors":[{"field":null,"message":"internal error"}]}`}, "500", true, 0, "internal error"},
		{"unavailable", providertest.Reply{Status: 503, Body: `upstream connect error`}, "503", true, 0, "upstream connect error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := target.Send(t, fakeSendGrid(t, tc.reply), providertest.Email())
			providertest.CheckError(t, err, providertest.Want{Code: tc.code, Retryable: tc.retryable, RetryAfter: tc.retryAfter, Says: tc.msg})
		})
	}
}

func TestSendTransportFailure(t *testing.T) {
	target.CheckTransportFailure(t, providertest.Email())
}

func TestSendBadMessage(t *testing.T) {
	p := target.Build(t, "https://api.sendgrid.com", providertest.NoRequests(t))
	providertest.CheckUnsendable(t, p, map[string]channels.Message{
		"no email":   {DeliveryID: "d"},
		"bad to":     {Email: &channels.EmailMessage{To: "nope", Text: "x"}},
		"bad from":   {Email: &channels.EmailMessage{From: "nope", To: "a@example.com", Text: "x"}},
		"no content": {Email: &channels.EmailMessage{To: "a@example.com"}},
	})
}

func TestNewValidates(t *testing.T) {
	providertest.CheckNew(t, New, providertest.Deps(http.DefaultClient), []providertest.ConfigCase{
		{`{"from":"a@example.com"}`, "api_key is required"},
		{`{"api_key":"k"}`, "from is required"},
		{`{"api_key":"k","from":"nope"}`, "from must be"},
		{`{"api_key":"k","from":"a@example.com","base_url":"http://api.sendgrid.com"}`, "base_url"},
		{`{"api_key":"k","from":"a@example.com","base_url":"https://u:p@api.sendgrid.com"}`, "base_url"},
		{`{"api_key":"k","from":"a@example.com","webhook_public_key":"not base64!"}`, "webhook_public_key"},
		{`{"api_key":"k","from":"a@example.com","webhook_public_key":"AAAA"}`, "webhook_public_key"},
		{`{"api_key":"k","from":"a@example.com","apikey":"k"}`, "unknown field"},
	})
}

// signer is a Signed Event Webhook key pair.
type signer struct {
	key    *ecdsa.PrivateKey
	public string // base64 DER, as SendGrid shows it
}

func newSigner(t *testing.T) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return signer{key: key, public: base64.StdEncoding.EncodeToString(der)}
}

func (s signer) request(t *testing.T, timestamp string, body []byte) *http.Request {
	t.Helper()
	sum := sha256.Sum256(append([]byte(timestamp), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/hooks/sendgrid", strings.NewReader(string(body)))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(SignatureHeader, base64.StdEncoding.EncodeToString(sig))
	r.Header.Set(TimestampHeader, timestamp)
	return r
}

const events = `[
 {"email":"joerg@example.org","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"processed","sg_event_id":"ev-0","sg_message_id":"W6A3hTQ6TXOm8xvhB5TTmg.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","kalcifer_delivery_id":"dlv_1"},
 {"email":"joerg@example.org","timestamp":1513299570,"event":"delivered","ip":"168.1.1.1","response":"250 OK","sg_event_id":"ev-1","sg_message_id":"W6A3hTQ6TXOm8xvhB5TTmg.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","kalcifer_delivery_id":"dlv_1"},
 {"email":"joerg@example.org","timestamp":1513299571,"event":"open","useragent":"Mozilla/4.0","sg_event_id":"ev-2","sg_message_id":"W6A3hTQ6TXOm8xvhB5TTmg.filter","kalcifer_delivery_id":"dlv_1"},
 {"email":"joerg@example.org","timestamp":1513299572,"event":"click","url":"https://example.com","sg_event_id":"ev-3","sg_message_id":"W6A3hTQ6TXOm8xvhB5TTmg.filter","kalcifer_delivery_id":"dlv_1"},
 {"email":"x@example.org","timestamp":1513299573,"event":"bounce","type":"bounce","status":"5.0.0","reason":"500 unknown recipient","sg_event_id":"ev-4","sg_message_id":"AbC.filter","kalcifer_delivery_id":"dlv_2"},
 {"email":"y@example.org","timestamp":1513299574,"event":"bounce","type":"blocked","reason":"550 blocked by policy","sg_event_id":"ev-5","sg_message_id":"DeF.filter"},
 {"email":"z@example.org","timestamp":1513299575,"event":"dropped","reason":"Bounced Address","sg_event_id":"ev-6","sg_message_id":"GhI.filter","unique_args":{"kalcifer_delivery_id":"dlv_3"}},
 {"email":"z@example.org","timestamp":1513299576,"event":"spamreport","sg_event_id":"ev-7","sg_message_id":"GhI.filter"},
 {"email":"z@example.org","timestamp":1513299577,"event":"bounce","reason":"async bounce without ids","sg_event_id":"ev-8"}
]`

func TestStatuses(t *testing.T) {
	s := newSigner(t)
	cfg := config("https://api.sendgrid.com", fmt.Sprintf(`,"webhook_public_key":%q`, s.public))
	got, err := Kind.Statuses(s.request(t, "1600112502", []byte(events)), []byte(events), cfg, providertest.Deps(nil))
	if err != nil {
		t.Fatalf("Statuses: %v", err)
	}
	at := func(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
	want := []channels.Status{
		{MessageID: "W6A3hTQ6TXOm8xvhB5TTmg", DeliveryID: "dlv_1", Type: channels.StatusDelivered, At: at(1513299570), EventID: "ev-1"},
		{MessageID: "W6A3hTQ6TXOm8xvhB5TTmg", DeliveryID: "dlv_1", Type: channels.StatusOpened, At: at(1513299571), EventID: "ev-2"},
		{MessageID: "W6A3hTQ6TXOm8xvhB5TTmg", DeliveryID: "dlv_1", Type: channels.StatusClicked, At: at(1513299572), EventID: "ev-3"},
		{MessageID: "AbC", DeliveryID: "dlv_2", Type: channels.StatusBounced, At: at(1513299573), EventID: "ev-4", Reason: "500 unknown recipient"},
		{MessageID: "DeF", Type: channels.StatusBounced, At: at(1513299574), EventID: "ev-5", Reason: "blocked: 550 blocked by policy"},
		{MessageID: "GhI", DeliveryID: "dlv_3", Type: channels.StatusFailed, At: at(1513299575), EventID: "ev-6", Reason: "Bounced Address"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("statuses\n%+v\nwant\n%+v", got, want)
	}

	// A PEM key works as well.
	der, _ := base64.StdEncoding.DecodeString(s.public)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	cfgPEM := config("https://api.sendgrid.com", fmt.Sprintf(`,"webhook_public_key":%q`, pemKey))
	if _, err := Kind.Statuses(s.request(t, "1600112502", []byte(events)), []byte(events), cfgPEM, providertest.Deps(nil)); err != nil {
		t.Errorf("PEM key: %v", err)
	}
}

func TestStatusesRejects(t *testing.T) {
	s := newSigner(t)
	other := newSigner(t)
	body := []byte(events)
	withKey := func(k string) json.RawMessage {
		return config("https://api.sendgrid.com", fmt.Sprintf(`,"webhook_public_key":%q`, k))
	}
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		body []byte
		cfg  json.RawMessage
	}{
		{"tampered body", func() *http.Request { return s.request(t, "1600112502", body) },
			[]byte(strings.Replace(events, "dlv_2", "dlv_9", 1)), withKey(s.public)},
		{"tampered timestamp", func() *http.Request {
			r := s.request(t, "1600112502", body)
			r.Header.Set(TimestampHeader, "1600112503")
			return r
		}, body, withKey(s.public)},
		{"wrong key", func() *http.Request { return s.request(t, "1600112502", body) }, body, withKey(other.public)},
		{"no signature", func() *http.Request {
			r := s.request(t, "1600112502", body)
			r.Header.Del(SignatureHeader)
			return r
		}, body, withKey(s.public)},
		{"signature not base64", func() *http.Request {
			r := s.request(t, "1600112502", body)
			r.Header.Set(SignatureHeader, "%%%")
			return r
		}, body, withKey(s.public)},
		{"no key configured", func() *http.Request { return s.request(t, "1600112502", body) }, body, config("https://api.sendgrid.com", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Kind.Statuses(tc.req(), tc.body, tc.cfg, providertest.Deps(nil))
			providertest.WantBadSignature(t, got, err)
		})
	}
}

func TestParseEventsDefaultsTime(t *testing.T) {
	got, err := parseEvents([]byte(`[{"event":"delivered","sg_message_id":"a.b"},{"event":"open","timestamp":"x","sg_message_id":"a"}]`),
		func() time.Time { return providertest.Now })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].At.Equal(providertest.Now) || got[0].MessageID != "a" {
		t.Errorf("statuses %+v, want one delivered dated now", got)
	}
	if _, err := parseEvents([]byte(`{"event":"delivered"}`), nil); err == nil {
		t.Error("an object rather than an array was accepted")
	}
}

func FuzzParseEvents(f *testing.F) {
	f.Add([]byte(events))
	f.Add([]byte(`[{"event":"bounce","timestamp":1e300,"unique_args":{"kalcifer_delivery_id":5}}]`))
	f.Add([]byte(`[null,1,"x",{"event":"click","timestamp":-1,"kalcifer_delivery_id":"d"}]`))
	valid := map[string]bool{channels.StatusDelivered: true, channels.StatusBounced: true, channels.StatusFailed: true,
		channels.StatusOpened: true, channels.StatusClicked: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseEvents(body, func() time.Time { return providertest.Now })
		if err != nil {
			return
		}
		for _, s := range got {
			if !valid[s.Type] {
				t.Fatalf("status type %q", s.Type)
			}
			if s.MessageID == "" && s.DeliveryID == "" {
				t.Fatalf("status %+v names no message", s)
			}
			if s.At.IsZero() || strings.Contains(s.MessageID, ".") {
				t.Fatalf("status %+v", s)
			}
		}
	})
}
