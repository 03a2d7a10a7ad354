package ses_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
	"github.com/kalcifer/kalcifer/channels/ses"
)

const (
	akid   = "AKIDEXAMPLE"
	secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	region = "eu-west-1"
)

func config(base string, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"region":%q,"access_key_id":%q,"secret_access_key":%q,"from":"Kalcifer <noreply@example.com>","base_url":%q%s}`,
		region, akid, secret, base, extra))
}

func hmacSHA256(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// checkSigV4 recomputes the request's Signature Version 4 from the known
// secret, independently of the SDK's signer, following
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.
func checkSigV4(r *http.Request, body []byte) error {
	amzDate := r.Header.Get("X-Amz-Date")
	if want := providertest.Now.Format("20060102T150405Z"); amzDate != want {
		return fmt.Errorf("X-Amz-Date = %q, want %q", amzDate, want)
	}
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("Authorization %q is not AWS4-HMAC-SHA256", auth)
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := providertest.Now.Format("20060102") + "/" + region + "/ses/aws4_request"
	if want := akid + "/" + scope; fields["Credential"] != want {
		return fmt.Errorf("Credential = %q, want %q", fields["Credential"], want)
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	for _, h := range []string{"content-type", "host", "x-amz-date"} {
		if !contains(signed, h) {
			return fmt.Errorf("SignedHeaders %q lacks %s", fields["SignedHeaders"], h)
		}
	}
	if !sort.StringsAreSorted(signed) {
		return fmt.Errorf("SignedHeaders %q not sorted", fields["SignedHeaders"])
	}
	var canon strings.Builder
	for _, h := range signed {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = fmt.Sprint(r.ContentLength)
		default:
			v = strings.Join(r.Header.Values(h), ",")
		}
		canon.WriteString(h + ":" + strings.TrimSpace(v) + "\n")
	}
	sum := sha256.Sum256(body)
	creq := strings.Join([]string{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, canon.String(), fields["SignedHeaders"], hex.EncodeToString(sum[:])}, "\n")
	csum := sha256.Sum256([]byte(creq))
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(csum[:])
	key := hmacSHA256([]byte("AWS4"+secret), providertest.Now.Format("20060102"))
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, "ses")
	key = hmacSHA256(key, "aws4_request")
	if want := hex.EncodeToString(hmacSHA256(key, sts)); fields["Signature"] != want {
		return fmt.Errorf("Signature = %q, want %q", fields["Signature"], want)
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func message() channels.Message {
	return channels.Message{
		DeliveryID: "dlv_01HZX3-abc", TenantID: "t1", Key: "k1", Channel: channels.Email,
		Email: &channels.EmailMessage{To: "ada@example.com", ReplyTo: "help@example.com", Subject: "Hello", Text: "Hi Ada", HTML: "<p>Hi Ada</p>"},
	}
}

var target = providertest.Target{New: ses.New, Config: func(base string) json.RawMessage { return config(base, "") }}

func TestSend(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Reply{Status: 200, Body: `{"MessageId":"010001-EXAMPLE"}`}, nil)
	p, err := ses.New(config(srv.URL, `,"configuration_set":"kalcifer-events"`), providertest.Deps(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.Send(context.Background(), message())
	if err != nil {
		t.Fatal(err)
	}
	if id != "010001-EXAMPLE" {
		t.Errorf("id = %q", id)
	}
	got := srv.Last(t)
	if ct := got.Header.Get("Content-Type"); got.Method != http.MethodPost || got.URL.Path != "/v2/email/outbound-emails" || ct != "application/json" {
		t.Errorf("request %s %s %s", got.Method, got.URL.Path, ct)
	}
	if err := checkSigV4(got.Request, got.Body); err != nil {
		t.Errorf("signature: %v", err)
	}
	if token := got.Header.Get("X-Amz-Security-Token"); token != "" {
		t.Errorf("X-Amz-Security-Token = %q without a session token", token)
	}
	want := providertest.JSON(t, `{
		"FromEmailAddress": "Kalcifer <noreply@example.com>",
		"Destination": {"ToAddresses": ["ada@example.com"]},
		"ReplyToAddresses": ["help@example.com"],
		"Content": {"Simple": {
			"Subject": {"Data": "Hello", "Charset": "UTF-8"},
			"Body": {"Text": {"Data": "Hi Ada", "Charset": "UTF-8"}, "Html": {"Data": "<p>Hi Ada</p>", "Charset": "UTF-8"}}
		}},
		"EmailTags": [{"Name": "kalcifer_delivery_id", "Value": "dlv_01HZX3-abc"}],
		"ConfigurationSetName": "kalcifer-events"
	}`)
	if body := got.JSON(t); !reflect.DeepEqual(body, want) {
		t.Errorf("body\n got %v\nwant %v", body, want)
	}
}

func TestSendMinimalWithSessionToken(t *testing.T) {
	srv := providertest.NewServer(t, providertest.Reply{Status: 200, Body: `{"MessageId":"m2"}`}, nil)
	p, err := ses.New(config(srv.URL+"/", `,"session_token":"FQoGZXIvYXdzEXAMPLE"`), providertest.Deps(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	m := message()
	m.DeliveryID = "weird id/é"
	m.Email = &channels.EmailMessage{From: "other@example.com", To: "bob@example.com", Subject: "S", HTML: "<b>x</b>"}
	if _, err := p.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.Last(t)
	if err := checkSigV4(got.Request, got.Body); err != nil {
		t.Errorf("signature: %v", err)
	}
	if token := got.Header.Get("X-Amz-Security-Token"); token != "FQoGZXIvYXdzEXAMPLE" {
		t.Errorf("X-Amz-Security-Token = %q", token)
	}
	if got.URL.Path != "/v2/email/outbound-emails" {
		t.Errorf("path %q", got.URL.Path)
	}
	want := providertest.JSON(t, `{
		"FromEmailAddress": "other@example.com",
		"Destination": {"ToAddresses": ["bob@example.com"]},
		"Content": {"Simple": {"Subject": {"Data": "S", "Charset": "UTF-8"}, "Body": {"Html": {"Data": "<b>x</b>", "Charset": "UTF-8"}}}},
		"EmailTags": [{"Name": "kalcifer_delivery_id", "Value": "weird_id___"}]
	}`)
	if body := got.JSON(t); !reflect.DeepEqual(body, want) {
		t.Errorf("body\n got %v\nwant %v", body, want)
	}
}

func TestSendErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		retryable  bool
		code       string
		retryAfter time.Duration
	}{
		{"throttled 429", 429, map[string]string{"x-amzn-ErrorType": "TooManyRequestsException:http://internal.amazon.com/coral/com.amazon.coral.service/", "Retry-After": "3"},
			`{"message":"Too many requests."}`, true, "TooManyRequestsException", 3 * time.Second},
		{"limit exceeded 400", 400, map[string]string{"x-amzn-ErrorType": "LimitExceededException"}, `{"message":"Maximum sending rate exceeded."}`, true, "LimitExceededException", 0},
		{"throttling in body", 400, nil, `{"__type":"com.amazonaws.sesv2#ThrottlingException","Message":"Rate exceeded"}`, true, "ThrottlingException", 0},
		{"rejected", 400, map[string]string{"x-amzn-ErrorType": "MessageRejected"}, `{"message":"Email address is not verified."}`, false, "MessageRejected", 0},
		{"mail from", 400, map[string]string{"x-amzn-ErrorType": "MailFromDomainNotVerifiedException"}, `{"message":"not verified"}`, false, "MailFromDomainNotVerifiedException", 0},
		{"suspended", 400, map[string]string{"x-amzn-ErrorType": "AccountSuspendedException"}, `{"message":"suspended"}`, false, "AccountSuspendedException", 0},
		{"bad request", 400, map[string]string{"x-amzn-ErrorType": "BadRequestException"}, `{"message":"bad"}`, false, "BadRequestException", 0},
		{"no configuration set", 404, map[string]string{"x-amzn-ErrorType": "NotFoundException"}, `{"message":"Configuration set does not exist"}`, false, "NotFoundException", 0},
		{"bad signature", 403, map[string]string{"x-amzn-ErrorType": "SignatureDoesNotMatch"}, `{"message":"The request signature we calculated does not match"}`, false, "SignatureDoesNotMatch", 0},
		{"internal", 500, map[string]string{"x-amzn-ErrorType": "InternalFailure"}, `{"message":"internal"}`, true, "InternalFailure", 0},
		{"unavailable", 503, nil, ``, true, "503", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := providertest.NewServer(t, providertest.Reply{Status: tt.status, Header: tt.header, Body: tt.body}, nil)
			_, err := target.Send(t, srv, message())
			providertest.CheckError(t, err, providertest.Want{Code: tt.code, Retryable: tt.retryable, RetryAfter: tt.retryAfter})
		})
	}
}

func TestSendTransportFailure(t *testing.T) {
	target.CheckTransportFailure(t, message())
}

func TestSendUnusableMessage(t *testing.T) {
	p, err := ses.New(json.RawMessage(`{"region":"us-east-1","access_key_id":"a","secret_access_key":"s"}`), providertest.Deps(http.DefaultClient))
	if err != nil {
		t.Fatal(err)
	}
	providertest.CheckUnsendable(t, p, map[string]channels.Message{
		"no email":  {Channel: channels.SMS},
		"no sender": {Email: &channels.EmailMessage{To: "a@example.com", Text: "x"}},
		"no to":     {Email: &channels.EmailMessage{From: "f@example.com", Text: "x"}},
		"no body":   {Email: &channels.EmailMessage{From: "f@example.com", To: "a@example.com"}},
	})
}

func TestNewConfig(t *testing.T) {
	providertest.CheckNew(t, ses.New, providertest.Deps(http.DefaultClient), []providertest.ConfigCase{
		{`{"access_key_id":"a","secret_access_key":"s"}`, "region is required"},
		{`{"region":"us-east-1","secret_access_key":"s"}`, "access_key_id is required"},
		{`{"region":"us-east-1","access_key_id":"a"}`, "secret_access_key is required"},
		{`{"region":"evil.com/x","access_key_id":"a","secret_access_key":"s"}`, "region"},
		{`{"region":"us-east-1","access_key_id":"a","secret_access_key":"s","base_url":"http://localhost"}`, "base_url"},
		{`{"region":"us-east-1","access_key_id":"a","secret_access_key":"s","base_url":"https://u:p@x"}`, "base_url"},
		{`{"region":"us-east-1","access_key_id":"a","secret_access_key":"s","regoin":"x"}`, "unknown field"},
		{`{"region":"us-gov-west-1","access_key_id":"a","secret_access_key":"s"}`, ""},
		{`{"region":"eu-central-1","access_key_id":"a","secret_access_key":"s","session_token":"t","topic_arn":"arn:aws:sns:eu-central-1:1:t","configuration_set":"c","from":"f@example.com"}`, ""},
	})
	if ses.Kind.Name != "ses" || ses.Kind.Idempotent || !reflect.DeepEqual(ses.Kind.Channels, []string{channels.Email}) ||
		!reflect.DeepEqual(ses.Kind.Secrets, []string{"secret_access_key", "session_token"}) {
		t.Errorf("Kind = %+v", ses.Kind)
	}
}
