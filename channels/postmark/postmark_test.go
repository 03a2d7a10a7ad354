package postmark

import (
	"context"
	"encoding/json"
	"errors"
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

func config(base, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"server_token":"pm-server-token","from":"Shop <shop@example.com>","base_url":%q%s}`, base, extra))
}

var target = providertest.Target{New: New, Config: func(base string) json.RawMessage { return config(base, "") }}

// fakePostmark checks each request against the Email API contract and
// answers with r.
func fakePostmark(t *testing.T, r providertest.Reply) *providertest.Server {
	t.Helper()
	return providertest.NewServer(t, r, func(req providertest.Request) {
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
		req.JSON(t)
	})
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
			srv := fakePostmark(t, providertest.Reply{Status: 200, Body: okBody})
			p, err := New(config(srv.URL, tc.extra), providertest.Deps(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			m := providertest.Email()
			tc.edit(&m)
			id, err := p.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if id != "b7bc2f4a-e38e-4336-af7d-e6c392c2f817" {
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
		{"invalid email", providertest.Reply{Status: 422, Body: `{"ErrorCode":300,"Message":"Invalid 'To' address: 'nope'."}`}, "300", false, 0, "Invalid 'To' address"},
		{"inactive recipient", providertest.Reply{Status: 422, Body: `{"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive."}`}, "406", false, 0, "marked as inactive"},
		{"bad token", providertest.Reply{Status: 401, Body: `{"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}`}, "10", false, 0, "Server Token"},
		{"maintenance", providertest.Reply{Status: 422, Body: `{"ErrorCode":100,"Message":"Maintenance"}`}, "100", true, 0, "Maintenance"},
		{"rate limited", providertest.Reply{Status: 429, Header: map[string]string{"Retry-After": "3"}, Body: `{"ErrorCode":429,"Message":"Rate limit exceeded"}`}, "429", true, 3 * time.Second, "Rate limit"},
		{"server error", providertest.Reply{Status: 500, Body: `{"ErrorCode":0,"Message":"Internal server error"}`}, "500", true, 0, "HTTP 500"},
		{"unavailable", providertest.Reply{Status: 503, Body: `<html>Service Unavailable</html>`}, "503", true, 0, "Service Unavailable"},
		{"error code on 200", providertest.Reply{Status: 200, Body: `{"ErrorCode":300,"Message":"Invalid email request"}`}, "300", false, 0, "Invalid email request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := target.Send(t, fakePostmark(t, tc.reply), providertest.Email())
			providertest.CheckError(t, err, providertest.Want{Code: tc.code, Retryable: tc.retryable, RetryAfter: tc.retryAfter, Says: tc.msg})
		})
	}
}

func TestSendTransportFailure(t *testing.T) {
	target.CheckTransportFailure(t, providertest.Email())
}

func TestSendBadMessage(t *testing.T) {
	p := target.Build(t, "https://api.postmarkapp.com", providertest.NoRequests(t))
	providertest.CheckUnsendable(t, p, map[string]channels.Message{
		"no email":     {DeliveryID: "d"},
		"bad to":       {Email: &channels.EmailMessage{To: "nope", Text: "x"}},
		"bad from":     {Email: &channels.EmailMessage{From: "nope", To: "a@example.com", Text: "x"}},
		"bad reply to": {Email: &channels.EmailMessage{ReplyTo: "nope", To: "a@example.com", Text: "x"}},
		"no content":   {Email: &channels.EmailMessage{To: "a@example.com"}},
	})
}

func TestNewValidates(t *testing.T) {
	providertest.CheckNew(t, New, providertest.Deps(http.DefaultClient), []providertest.ConfigCase{
		{`{"from":"a@example.com"}`, "server_token is required"},
		{`{"server_token":"t"}`, "from is required"},
		{`{"server_token":"t","from":"nope"}`, "from must be"},
		{`{"server_token":"t","from":"a@example.com","base_url":"http://api.postmarkapp.com"}`, "base_url"},
		{`{"server_token":"t","from":"a@example.com","webhook_username":"u"}`, "webhook_password is required"},
		{`{"server_token":"t","from":"a@example.com","webhook_password":"p"}`, "webhook_username is required"},
		{`{"server_token":"t","from":"a@example.com","webhook_username":"a:b","webhook_password":"p"}`, "webhook_username must not"},
		{`{"server_token":"t","from":"a@example.com","token":"t"}`, "unknown field"},
	})
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
	softBounce   = `{"RecordType":"Bounce","ID":44,"Type":"Transient","TypeCode":2,"MessageID":"00000000-0000-0000-0000-000000000007","BouncedAt":"2019-11-05T16:33:54.9070259Z"}`
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
		{"soft bounce: Postmark retries", softBounce, nil},
		{"bad time", `{"RecordType":"Delivery","MessageID":"m","DeliveredAt":"yesterday"}`,
			[]channels.Status{{MessageID: "m", Type: channels.StatusDelivered, At: providertest.Now, EventID: "Delivery:m:yesterday"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Kind.Statuses(hookRequest(tc.body, "pmhook", "hook-secret"), []byte(tc.body), config("https://api.postmarkapp.com", hookConfig), providertest.Deps(nil))
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
			got, err := Kind.Statuses(hookRequest(deliveryHook, tc.user, tc.pass), []byte(deliveryHook), config("https://api.postmarkapp.com", tc.config), providertest.Deps(nil))
			providertest.WantBadSignature(t, got, err)
		})
	}
	// An authenticated post that is not a record is an error, not a
	// bad signature.
	_, err := Kind.Statuses(hookRequest("[1,2]", "pmhook", "hook-secret"), []byte("[1,2]"), config("https://api.postmarkapp.com", hookConfig), providertest.Deps(nil))
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
		got, err := parseRecord(body, func() time.Time { return providertest.Now })
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
