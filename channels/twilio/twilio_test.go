package twilio_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
	"github.com/kalcifer/kalcifer/channels/twilio"
)

const (
	sid   = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	token = "your_auth_token"
)

func config(base, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"account_sid":%q,"auth_token":%q,"base_url":%q%s}`, sid, token, base, extra))
}

const created = `{"account_sid":"` + sid + `","api_version":"2010-04-01","body":"Hi","date_created":"Thu, 04 Mar 2026 05:06:07 +0000","direction":"outbound-api","error_code":null,"error_message":null,"from":"+15017122661","num_segments":"1","price":null,"sid":"SM1234567890abcdef1234567890abcdef","status":"queued","to":"+15558675310","uri":"/2010-04-01/Accounts/` + sid + `/Messages/SM1234567890abcdef1234567890abcdef.json"}`

var target = providertest.Target{New: twilio.New, Config: func(base string) json.RawMessage { return config(base, `,"from":"+15017122661"`) }}

func TestSend(t *testing.T) {
	tests := []struct {
		name, extra string
		msg         channels.Message
		user, pass  string
		want        url.Values
	}{
		{"sms", `,"from":"+15017122661","status_callback_url":"https://hooks.example.com/twilio/status"`,
			channels.Message{DeliveryID: "dlv 1", Channel: channels.SMS, SMS: &channels.TextMessage{To: "+15558675310", Body: "Hi"}},
			sid, token,
			url.Values{"To": {"+15558675310"}, "From": {"+15017122661"}, "Body": {"Hi"}, "StatusCallback": {"https://hooks.example.com/twilio/status?kalcifer_delivery_id=dlv+1"}}},
		{"sms with messaging service and api key", `,"messaging_service_sid":"MG123","api_key_sid":"SK123","api_key_secret":"keysecret","status_callback_url":"https://hooks.example.com/s?tenant=t1"`,
			channels.Message{DeliveryID: "d2", Channel: channels.SMS, SMS: &channels.TextMessage{To: "+15558675310", Body: "Hi"}},
			"SK123", "keysecret",
			url.Values{"To": {"+15558675310"}, "MessagingServiceSid": {"MG123"}, "Body": {"Hi"}, "StatusCallback": {"https://hooks.example.com/s?tenant=t1&kalcifer_delivery_id=d2"}}},
		{"whatsapp text", `,"whatsapp_from":"+14155238886"`,
			channels.Message{DeliveryID: "d3", Channel: channels.WhatsApp, WhatsApp: &channels.WhatsAppMessage{To: "+15558675310", Body: "Hola"}},
			sid, token,
			url.Values{"To": {"whatsapp:+15558675310"}, "From": {"whatsapp:+14155238886"}, "Body": {"Hola"}}},
		{"whatsapp template", `,"whatsapp_from":"whatsapp:+14155238886"`,
			channels.Message{DeliveryID: "d4", Channel: channels.WhatsApp, WhatsApp: &channels.WhatsAppMessage{To: "+15558675310", From: "+14155230000", Template: "HXb5b62575e6e4ff6129ad7c8efe1f983e", Language: "en", Params: []string{"Ada", "12/1"}}},
			sid, token,
			url.Values{"To": {"whatsapp:+15558675310"}, "From": {"whatsapp:+14155230000"}, "ContentSid": {"HXb5b62575e6e4ff6129ad7c8efe1f983e"}, "ContentVariables": {`{"1":"Ada","2":"12/1"}`}}},
		{"whatsapp template without params", `,"whatsapp_from":"+14155238886"`,
			channels.Message{Channel: channels.WhatsApp, WhatsApp: &channels.WhatsAppMessage{To: "+15558675310", Template: "HX1"}},
			sid, token,
			url.Values{"To": {"whatsapp:+15558675310"}, "From": {"whatsapp:+14155238886"}, "ContentSid": {"HX1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := providertest.NewServer(t, providertest.Reply{Status: 201, Body: created}, nil)
			p, err := twilio.New(config(srv.URL, tt.extra), providertest.Deps(srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			id, err := p.Send(context.Background(), tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if id != "SM1234567890abcdef1234567890abcdef" {
				t.Errorf("id = %q", id)
			}
			got := srv.Last(t)
			if ct := got.Header.Get("Content-Type"); got.Method != http.MethodPost || got.URL.Path != "/2010-04-01/Accounts/"+sid+"/Messages.json" || ct != "application/x-www-form-urlencoded" {
				t.Errorf("request %s %s %s", got.Method, got.URL.Path, ct)
			}
			if user, pass, _ := got.BasicAuth(); user != tt.user || pass != tt.pass {
				t.Errorf("basic auth %q:%q", user, pass)
			}
			form, err := url.ParseQuery(string(got.Body))
			if err != nil {
				t.Errorf("body is not a form: %v", err)
			}
			if !reflect.DeepEqual(form, tt.want) {
				t.Errorf("form\n got %v\nwant %v", form, tt.want)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	errBody := func(code, status int, msg string) string {
		return fmt.Sprintf(`{"code":%d,"message":%q,"more_info":"https://www.twilio.com/docs/errors/%d","status":%d}`, code, msg, code, status)
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
		{"429", 429, map[string]string{"Retry-After": "2"}, errBody(20429, 429, "Too Many Requests"), true, "20429", 2 * time.Second},
		{"20429 on 400", 400, nil, errBody(20429, 400, "Too Many Requests"), true, "20429", 0},
		{"invalid to", 400, nil, errBody(21211, 400, "The 'To' number +1555 is not a valid phone number."), false, "21211", 0},
		{"unsubscribed", 400, nil, errBody(21610, 400, "Attempt to send to unsubscribed recipient"), false, "21610", 0},
		{"not mobile", 400, nil, errBody(21614, 400, "'To' number is not a valid mobile number"), false, "21614", 0},
		{"region", 400, nil, errBody(21408, 400, "Permission to send an SMS has not been enabled for the region"), false, "21408", 0},
		{"auth", 401, nil, errBody(20003, 401, "Authenticate"), false, "20003", 0},
		{"other 400", 400, nil, errBody(21602, 400, "Message body is required."), false, "21602", 0},
		{"500", 500, nil, errBody(20500, 500, "Internal Server Error"), true, "20500", 0},
		{"503 no body", 503, nil, "", true, "503", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := providertest.NewServer(t, providertest.Reply{Status: tt.status, Header: tt.header, Body: tt.body}, nil)
			_, err := target.Send(t, srv, channels.Message{SMS: &channels.TextMessage{To: "+15558675310", Body: "Hi"}})
			providertest.CheckError(t, err, providertest.Want{Code: tt.code, Retryable: tt.retryable, RetryAfter: tt.retryAfter})
		})
	}
}

func TestSendTransportFailure(t *testing.T) {
	target.CheckTransportFailure(t, channels.Message{SMS: &channels.TextMessage{To: "+15558675310", Body: "Hi"}})
}

func TestSendUnusableMessage(t *testing.T) {
	p, err := twilio.New(config("https://api.twilio.com", ""), providertest.Deps(http.DefaultClient))
	if err != nil {
		t.Fatal(err)
	}
	providertest.CheckUnsendable(t, p, map[string]channels.Message{
		"email":          {Channel: channels.Email, Email: &channels.EmailMessage{}},
		"no sender":      {SMS: &channels.TextMessage{To: "+1555", Body: "x"}},
		"no body":        {SMS: &channels.TextMessage{To: "+1555", From: "+1666"}},
		"empty whatsapp": {WhatsApp: &channels.WhatsAppMessage{To: "+1555", From: "+1666"}},
	})
}

func TestNewConfig(t *testing.T) {
	providertest.CheckNew(t, twilio.New, providertest.Deps(http.DefaultClient), []providertest.ConfigCase{
		{`{"auth_token":"t"}`, "account_sid is required"},
		{`{"account_sid":"AC1"}`, "auth_token is required"},
		{`{"account_sid":"AC1","api_key_sid":"SK1"}`, "api_key_secret is required"},
		{`{"account_sid":"AC1","api_key_secret":"s"}`, "api_key_sid is required"},
		{`{"account_sid":"AC1","auth_token":"t","base_url":"http://api.twilio.com"}`, "base_url"},
		{`{"account_sid":"AC1","auth_token":"t","status_callback_url":"/relative"}`, "status_callback_url"},
		{`{"account_sid":"AC1","auth_token":"t","form":"+1"}`, "unknown field"},
		{`{"account_sid":"AC1","api_key_sid":"SK1","api_key_secret":"s"}`, ""},
		{`{"account_sid":"AC1","auth_token":"t","from":"+1","whatsapp_from":"+2","messaging_service_sid":"MG1","status_callback_url":"https://x.example/cb"}`, ""},
	})
	if k := twilio.Kind; k.Name != "twilio" || k.Idempotent || !reflect.DeepEqual(k.Channels, []string{channels.SMS, channels.WhatsApp}) ||
		!reflect.DeepEqual(k.Secrets, []string{"auth_token", "api_key_secret"}) {
		t.Errorf("Kind = %+v", k)
	}
}

// sign is Twilio's algorithm, written from
// https://www.twilio.com/docs/usage/webhooks/webhooks-security.
func sign(key, u string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := u
	for _, k := range keys {
		s += k + form.Get(k)
	}
	mac := hmac.New(sha1.New, []byte(key))
	mac.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func callbackForm(status, errorCode string) url.Values {
	f := url.Values{
		"AccountSid": {sid}, "ApiVersion": {"2010-04-01"}, "From": {"+15017122661"}, "To": {"+15558675310"},
		"MessageSid": {"SM123"}, "SmsSid": {"SM123"}, "SmsStatus": {status}, "MessageStatus": {status},
	}
	if errorCode != "" {
		f.Set("ErrorCode", errorCode)
	}
	return f
}

func callback(target string, form url.Values, sig string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Twilio-Signature", sig)
	return r
}

func TestStatuses(t *testing.T) {
	const cbURL = "https://hooks.example.com/twilio/status"
	cfg := config("https://api.twilio.com", `,"status_callback_url":"`+cbURL+`"`)
	tests := []struct {
		status, code string
		want         []channels.Status
	}{
		{"delivered", "", []channels.Status{{MessageID: "SM123", DeliveryID: "dlv 1", Type: channels.StatusDelivered, At: providertest.Now, EventID: "SM123:delivered"}}},
		{"undelivered", "30003", []channels.Status{{MessageID: "SM123", DeliveryID: "dlv 1", Type: channels.StatusBounced, At: providertest.Now, EventID: "SM123:undelivered", Reason: "error 30003"}}},
		{"failed", "30008", []channels.Status{{MessageID: "SM123", DeliveryID: "dlv 1", Type: channels.StatusFailed, At: providertest.Now, EventID: "SM123:failed", Reason: "error 30008"}}},
		{"read", "", []channels.Status{{MessageID: "SM123", DeliveryID: "dlv 1", Type: channels.StatusOpened, At: providertest.Now, EventID: "SM123:read"}}},
		{"sent", "", nil},
		{"queued", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			form := callbackForm(tt.status, tt.code)
			// The server sits behind a proxy: the path and host it sees are
			// not the public ones Twilio signed.
			r := callback("http://10.0.0.7:8080/internal/twilio?kalcifer_delivery_id=dlv+1", form, sign(token, cbURL+"?kalcifer_delivery_id=dlv+1", form))
			got, err := twilio.Statuses(r, []byte(form.Encode()), cfg, providertest.Deps(http.DefaultClient))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("statuses\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestStatusesReconstructedURL(t *testing.T) {
	cfg := config("https://api.twilio.com", "")
	form := callbackForm("delivered", "")
	tests := []struct {
		name, signed string
		req          func(sig string) *http.Request
	}{
		{"forwarded proto", "https://kalcifer.example.com/hooks/twilio?kalcifer_delivery_id=d1", func(sig string) *http.Request {
			r := callback("http://kalcifer.example.com/hooks/twilio?kalcifer_delivery_id=d1", form, sig)
			r.Header.Set("X-Forwarded-Proto", "https")
			return r
		}},
		{"tls with explicit port signed", "https://kalcifer.example.com:443/hooks/twilio?kalcifer_delivery_id=d1", func(sig string) *http.Request {
			r := callback("https://kalcifer.example.com/hooks/twilio?kalcifer_delivery_id=d1", form, sig)
			r.TLS = &tls.ConnectionState{}
			return r
		}},
		{"plain http", "http://localhost:8080/hooks/twilio?kalcifer_delivery_id=d1", func(sig string) *http.Request {
			return callback("http://localhost:8080/hooks/twilio?kalcifer_delivery_id=d1", form, sig)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.req(sign(token, tt.signed, form))
			got, err := twilio.Statuses(r, []byte(form.Encode()), cfg, providertest.Deps(http.DefaultClient))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].DeliveryID != "d1" || got[0].Type != channels.StatusDelivered {
				t.Errorf("statuses %+v", got)
			}
		})
	}
}

func TestStatusesBadSignature(t *testing.T) {
	const cbURL = "https://hooks.example.com/twilio/status"
	cfg := config("https://api.twilio.com", `,"status_callback_url":"`+cbURL+`"`)
	form := callbackForm("delivered", "")
	target := "https://hooks.example.com/twilio/status?kalcifer_delivery_id=d1"
	good := sign(token, cbURL+"?kalcifer_delivery_id=d1", form)

	tampered := callbackForm("delivered", "")
	tampered.Set("MessageSid", "SM999")
	tests := map[string]struct {
		r    *http.Request
		body url.Values
	}{
		"tampered body":     {callback(target, form, good), tampered},
		"wrong key":         {callback(target, form, sign("other_token", cbURL+"?kalcifer_delivery_id=d1", form)), form},
		"other delivery id": {callback("https://hooks.example.com/twilio/status?kalcifer_delivery_id=d2", form, good), form},
		"no signature":      {callback(target, form, ""), form},
		"garbage signature": {callback(target, form, "!!"), form},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := twilio.Statuses(tt.r, []byte(tt.body.Encode()), cfg, providertest.Deps(http.DefaultClient))
			providertest.WantBadSignature(t, got, err)
		})
	}

	// With only an API key there is nothing to check the signature with.
	apiOnly := json.RawMessage(`{"account_sid":"AC1","api_key_sid":"SK1","api_key_secret":"s"}`)
	if _, err := twilio.Statuses(callback(target, form, good), []byte(form.Encode()), apiOnly, providertest.Deps(http.DefaultClient)); err == nil {
		t.Error("Statuses without auth_token succeeded")
	}
}

func FuzzStatuses(f *testing.F) {
	f.Add(callbackForm("delivered", "").Encode(), "kalcifer_delivery_id=d1")
	f.Add(callbackForm("undelivered", "30003").Encode(), "")
	f.Add("MessageSid=&MessageStatus=read", "a=%zz")
	f.Add("%%%", "")
	cfg := config("https://api.twilio.com", `,"status_callback_url":"https://hooks.example.com/cb"`)
	f.Fuzz(func(t *testing.T, body, query string) {
		target := "https://hooks.example.com/cb"
		if query != "" {
			target += "?" + query
		}
		r, err := http.NewRequest(http.MethodPost, "https://hooks.example.com/cb", strings.NewReader(body))
		if err != nil {
			return
		}
		r.URL.RawQuery = query
		form, perr := url.ParseQuery(body)
		if perr == nil {
			r.Header.Set("X-Twilio-Signature", sign(token, target, form))
		}
		got, err := twilio.Statuses(r, []byte(body), cfg, providertest.Deps(http.DefaultClient))
		if err != nil {
			return
		}
		for _, s := range got {
			if s.MessageID == "" || s.At != providertest.Now || !strings.HasPrefix(s.EventID, s.MessageID+":") {
				t.Errorf("status %+v", s)
			}
		}
	})
}
