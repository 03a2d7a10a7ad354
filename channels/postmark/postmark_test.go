package postmark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
)

var fixedNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func deps(client *http.Client) channels.Deps {
	return channels.Deps{HTTP: client, Now: func() time.Time { return fixedNow }}
}

func config(base, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"server_token":"pm-server-token","from":"Shop <shop@example.com>","base_url":%q%s}`, base, extra))
}

type reply struct {
	status int
	header map[string]string
	body   string
}

// fakePostmark checks each request against the Email API contract and
// answers with r; it records the decoded bodies.
func fakePostmark(t *testing.T, r reply, bodies *[]any) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/email" {
			t.Errorf("request %s %s, want POST /email", req.Method, req.URL.Path)
		}
		if got := req.Header.Get("X-Postmark-Server-Token"); got != "pm-server-token" {
			t.Errorf("X-Postmark-Server-Token %q", got)
		}
		if got := req.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type %q", got)
		}
		if got := req.Header.Get("Accept"); got != "application/json" {
			t.Errorf("Accept %q", got)
		}
		raw, _ := io.ReadAll(req.Body)
		var body any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("body is not JSON: %v: %s", err, raw)
		}
		*bodies = append(*bodies, body)
		for k, v := range r.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(r.status)
		io.WriteString(w, r.body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func message() channels.Message {
	return channels.Message{
		DeliveryID: "dlv_1",
		TenantID:   "tnt_1",
		Key:        "key-1",
		Channel:    channels.Email,
		Email: &channels.EmailMessage{
			To:      "Jörg Müller <joerg@example.org>",
			ReplyTo: "support@example.com",
			Subject: "Grüße",
			Text:    "Hallo",
			HTML:    "<p>Hallo</p>",
		},
	}
}

func jsonOf(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

const okBody = `{"To":"joerg@example.org","SubmittedAt":"2025-03-14T15:09:26.1234567Z","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","ErrorCode":0,"Message":"OK"}`

func TestSend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		edit  func(*channels.Message)
		want  string
	}{
		{"text and html", "", func(*channels.Message) {}, `{
			"From":"Shop <shop@example.com>","To":"Jörg Müller <joerg@example.org>","ReplyTo":"support@example.com",
			"Subject":"Grüße","HtmlBody":"<p>Hallo</p>","TextBody":"Hallo","MessageStream":"outbound",
			"Metadata":{"kalcifer_delivery_id":"dlv_1"}}`},
		{"html only, own sender and stream", `,"message_stream":"broadcast"`, func(m *channels.Message) {
			m.Email.Text, m.Email.ReplyTo, m.Email.From = "", "", "news@example.com"
		}, `{
			"From":"news@example.com","To":"Jörg Müller <joerg@example.org>",
			"Subject":"Grüße","HtmlBody":"<p>Hallo</p>","MessageStream":"broadcast",
			"Metadata":{"kalcifer_delivery_id":"dlv_1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bodies []any
			srv := fakePostmark(t, reply{status: 200, body: okBody}, &bodies)
			p, err := New(config(srv.URL, tc.extra), deps(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			m := message()
			tc.edit(&m)
			id, err := p.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if id != "b7bc2f4a-e38e-4336-af7d-e6c392c2f817" {
				t.Errorf("message id %q", id)
			}
			if len(bodies) != 1 || !reflect.DeepEqual(bodies[0], jsonOf(t, tc.want)) {
				got, _ := json.Marshal(bodies)
				t.Errorf("body %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reply      reply
		code       string
		retryable  bool
		retryAfter time.Duration
		msg        string
	}{
		{"invalid email", reply{status: 422, body: `{"ErrorCode":300,"Message":"Invalid 'To' address: 'nope'."}`}, "300", false, 0, "Invalid 'To' address"},
		{"inactive recipient", reply{status: 422, body: `{"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive."}`}, "406", false, 0, "marked as inactive"},
		{"bad token", reply{status: 401, body: `{"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}`}, "10", false, 0, "Server Token"},
		{"maintenance", reply{status: 422, body: `{"ErrorCode":100,"Message":"Maintenance"}`}, "100", true, 0, "Maintenance"},
		{"rate limited", reply{status: 429, header: map[string]string{"Retry-After": "3"}, body: `{"ErrorCode":429,"Message":"Rate limit exceeded"}`}, "429", true, 3 * time.Second, "Rate limit"},
		{"server error", reply{status: 500, body: `{"ErrorCode":0,"Message":"Internal server error"}`}, "500", true, 0, "HTTP 500"},
		{"unavailable", reply{status: 503, body: `<html>Service Unavailable</html>`}, "503", true, 0, "Service Unavailable"},
		{"error code on 200", reply{status: 200, body: `{"ErrorCode":300,"Message":"Invalid email request"}`}, "300", false, 0, "Invalid email request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bodies []any
			srv := fakePostmark(t, tc.reply, &bodies)
			p, err := New(config(srv.URL, ""), deps(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Send(context.Background(), message())
			var e *channels.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want *channels.Error", err)
			}
			if e.Code != tc.code || e.Retryable != tc.retryable || e.Unsure || e.RetryAfter != tc.retryAfter {
				t.Errorf("got code %q retryable %v unsure %v after %v, want %q %v false %v (%v)", e.Code, e.Retryable, e.Unsure, e.RetryAfter, tc.code, tc.retryable, tc.retryAfter, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestSendTransportFailure(t *testing.T) {
	var bodies []any
	srv := fakePostmark(t, reply{status: 200, body: okBody}, &bodies)
	p, err := New(config(srv.URL, ""), deps(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err = p.Send(context.Background(), message())
	var e *channels.Error
	if !errors.As(err, &e) || !e.Retryable {
		t.Fatalf("error %v, want retryable", err)
	}
}

type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	f.t.Error("request sent for a message that cannot be sent")
	return nil, errors.New("no")
}

func TestSendBadMessage(t *testing.T) {
	p, err := New(config("https://api.postmarkapp.com", ""), deps(&http.Client{Transport: failTransport{t}}))
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]channels.Message{
		"no email":     {DeliveryID: "d"},
		"bad to":       {Email: &channels.EmailMessage{To: "nope", Text: "x"}},
		"bad from":     {Email: &channels.EmailMessage{From: "nope", To: "a@example.com", Text: "x"}},
		"bad reply to": {Email: &channels.EmailMessage{ReplyTo: "nope", To: "a@example.com", Text: "x"}},
		"no content":   {Email: &channels.EmailMessage{To: "a@example.com"}},
	} {
		_, err := p.Send(context.Background(), m)
		var e *channels.Error
		if !errors.As(err, &e) || e.Retryable {
			t.Errorf("%s: error %v, want permanent", name, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{`{"from":"a@example.com"}`, "server_token is required"},
		{`{"server_token":"t"}`, "from is required"},
		{`{"server_token":"t","from":"nope"}`, "from must be"},
		{`{"server_token":"t","from":"a@example.com","base_url":"http://api.postmarkapp.com"}`, "base_url"},
		{`{"server_token":"t","from":"a@example.com","webhook_username":"u"}`, "webhook_password is required"},
		{`{"server_token":"t","from":"a@example.com","webhook_password":"p"}`, "webhook_username is required"},
		{`{"server_token":"t","from":"a@example.com","webhook_username":"a:b","webhook_password":"p"}`, "webhook_username must not"},
		{`{"server_token":"t","from":"a@example.com","token":"t"}`, "unknown field"},
	} {
		_, err := New(json.RawMessage(tc.config), deps(http.DefaultClient))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s) = %v, want error containing %q", tc.config, err, tc.want)
		}
	}
}

const hookConfig = `,"webhook_username":"pmhook","webhook_password":"hook-secret"`

func hookRequest(body, user, pass string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/postmark", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if user != "" || pass != "" {
		r.SetBasicAuth(user, pass)
	}
	return r
}

// Payloads as the webhook docs show them.
const (
	deliveryHook = `{"RecordType":"Delivery","ServerID":23,"MessageStream":"outbound","MessageID":"00000000-0000-0000-0000-000000000000","Recipient":"john@example.com","Tag":"welcome-email","DeliveredAt":"2019-11-05T16:33:54.9070259Z","Details":"Test delivery webhook details","Metadata":{"kalcifer_delivery_id":"dlv_1"}}`
	bounceHook   = `{"RecordType":"Bounce","MessageStream":"outbound","ID":4323372036854775807,"Type":"HardBounce","TypeCode":1,"Name":"Hard bounce","Tag":"Test","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Metadata":{"kalcifer_delivery_id":"dlv_2"},"ServerID":23,"Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).","Details":"Test bounce details","Email":"john@example.com","From":"sender@example.com","BouncedAt":"2019-11-05T16:33:54.9070259Z","DumpAvailable":true,"Inactive":true,"CanActivate":true,"Subject":"Test subject","Content":"<Full dump of bounce>"}`
	openHook     = `{"RecordType":"Open","MessageStream":"outbound","Metadata":{"kalcifer_delivery_id":"dlv_3"},"FirstOpen":true,"Client":{"Name":"Chrome 35.0.1916.153","Company":"Google","Family":"Chrome"},"OS":{"Name":"OS X 10.7 Lion","Company":"Apple Computer, Inc.","Family":"OS X 10"},"Platform":"WebMail","UserAgent":"Mozilla/5.0","ReadSeconds":5,"Geo":{},"MessageID":"00000000-0000-0000-0000-000000000003","ReceivedAt":"2019-11-05T16:33:54.9070259Z","Tag":"welcome-email","Recipient":"john@example.com"}`
	clickHook    = `{"RecordType":"Click","MessageStream":"outbound","ClickLocation":"HTML","Client":{"Name":"Chrome 35.0.1916.153"},"OS":{"Name":"OS X 10.7 Lion"},"Platform":"Desktop","UserAgent":"Mozilla/5.0","OriginalLink":"https://example.com","Geo":{},"MessageID":"00000000-0000-0000-0000-000000000004","Metadata":{},"ReceivedAt":"2017-10-25T15:21:11.0000000Z","Tag":"welcome-email","Recipient":"john@example.com"}`
	spamHook     = `{"RecordType":"SpamComplaint","MessageStream":"outbound","ID":42,"Type":"SpamComplaint","TypeCode":512,"MessageID":"00000000-0000-0000-0000-000000000005","BouncedAt":"2019-11-05T16:33:54.9070259Z","Metadata":{"kalcifer_delivery_id":"dlv_5"}}`
	autoReply    = `{"RecordType":"Bounce","ID":43,"Type":"AutoResponder","TypeCode":64,"MessageID":"00000000-0000-0000-0000-000000000006","BouncedAt":"2019-11-05T16:33:54.9070259Z"}`
)

func TestStatuses(t *testing.T) {
	at := time.Date(2019, 11, 5, 16, 33, 54, 907025900, time.UTC)
	for _, tc := range []struct {
		name string
		body string
		want []channels.Status
	}{
		{"delivery", deliveryHook, []channels.Status{{MessageID: "00000000-0000-0000-0000-000000000000", DeliveryID: "dlv_1",
			Type: channels.StatusDelivered, At: at, EventID: "Delivery:00000000-0000-0000-0000-000000000000:2019-11-05T16:33:54.9070259Z"}}},
		{"bounce", bounceHook, []channels.Status{{MessageID: "883953f4-6105-42a2-a16a-77a8eac79483", DeliveryID: "dlv_2",
			Type: channels.StatusBounced, At: at, EventID: "4323372036854775807",
			Reason: "The server was unable to deliver your message (ex: unknown user, mailbox not found).: Test bounce details"}}},
		{"open", openHook, []channels.Status{{MessageID: "00000000-0000-0000-0000-000000000003", DeliveryID: "dlv_3",
			Type: channels.StatusOpened, At: at, EventID: "Open:00000000-0000-0000-0000-000000000003:2019-11-05T16:33:54.9070259Z"}}},
		{"click", clickHook, []channels.Status{{MessageID: "00000000-0000-0000-0000-000000000004",
			Type: channels.StatusClicked, At: time.Date(2017, 10, 25, 15, 21, 11, 0, time.UTC), EventID: "Click:00000000-0000-0000-0000-000000000004:2017-10-25T15:21:11.0000000Z"}}},
		{"spam complaint", spamHook, nil},
		{"auto-responder", autoReply, nil},
		{"bad time", `{"RecordType":"Delivery","MessageID":"m","DeliveredAt":"yesterday"}`,
			[]channels.Status{{MessageID: "m", Type: channels.StatusDelivered, At: fixedNow, EventID: "Delivery:m:yesterday"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Kind.Statuses(hookRequest(tc.body, "pmhook", "hook-secret"), []byte(tc.body), config("https://api.postmarkapp.com", hookConfig), deps(nil))
			if err != nil {
				t.Fatalf("Statuses: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("statuses\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestStatusesRejects(t *testing.T) {
	for _, tc := range []struct {
		name, user, pass, config string
	}{
		{"wrong password", "pmhook", "guess", hookConfig},
		{"wrong user", "admin", "hook-secret", hookConfig},
		{"password prefix", "pmhook", "hook-secre", hookConfig},
		{"no credentials", "", "", hookConfig},
		{"not configured", "pmhook", "hook-secret", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Kind.Statuses(hookRequest(deliveryHook, tc.user, tc.pass), []byte(deliveryHook), config("https://api.postmarkapp.com", tc.config), deps(nil))
			if !errors.Is(err, channels.ErrBadSignature) {
				t.Errorf("error %v, want ErrBadSignature", err)
			}
			if got != nil {
				t.Errorf("statuses %v from a rejected request", got)
			}
		})
	}
	// An authenticated post that is not a record is an error, not a
	// bad signature.
	_, err := Kind.Statuses(hookRequest("[1,2]", "pmhook", "hook-secret"), []byte("[1,2]"), config("https://api.postmarkapp.com", hookConfig), deps(nil))
	if err == nil || errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("malformed body: %v", err)
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{deliveryHook, bounceHook, openHook, clickHook, spamHook, autoReply,
		`{"RecordType":"Bounce","ID":"x"}`, `{"RecordType":"Open","Metadata":{"kalcifer_delivery_id":7}}`} {
		f.Add([]byte(s))
	}
	valid := map[string]bool{channels.StatusDelivered: true, channels.StatusBounced: true, channels.StatusOpened: true, channels.StatusClicked: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := parseRecord(body, func() time.Time { return fixedNow })
		if err != nil {
			return
		}
		if len(got) > 1 {
			t.Fatalf("%d statuses from one record", len(got))
		}
		for _, s := range got {
			if !valid[s.Type] || s.EventID == "" || s.At.IsZero() || (s.MessageID == "" && s.DeliveryID == "") {
				t.Fatalf("status %+v", s)
			}
		}
	})
}
