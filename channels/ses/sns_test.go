package ses_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
	"github.com/kalcifer/kalcifer/channels/ses"
)

const topic = "arn:aws:sns:eu-west-1:123456789012:ses-events"

// withTopic configures the account for topic's notifications.
const withTopic = `,"topic_arn":"` + topic + `"`

type snsServer struct {
	srv              *httptest.Server
	key              *rsa.PrivateKey
	certFetches      atomic.Int32
	confirms         atomic.Int32
	confirmedToken   atomic.Value
	certURL, subsURL string
}

// newSNS serves a self-signed certificate as SNS serves its signing
// certificates, and a SubscribeURL, over TLS on loopback; the host check
// lets that one host through for the test's duration.
func newSNS(t *testing.T, notBefore, notAfter time.Time) *snsServer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sns.eu-west-1.amazonaws.com"}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	s := &snsServer{key: key}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/SimpleNotificationService-abc.pem":
			s.certFetches.Add(1)
			w.Write(certPEM)
		case r.Method == http.MethodGet && r.URL.Path == "/" && r.URL.Query().Get("Action") == "ConfirmSubscription":
			s.confirms.Add(1)
			s.confirmedToken.Store(r.URL.Query().Get("Token"))
			w.Write([]byte(`<ConfirmSubscriptionResponse/>`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.srv.Close)
	host := strings.TrimPrefix(s.srv.URL, "https://")
	t.Cleanup(ses.SetCertHostAllowed(func(h string) bool { return h == host }))
	s.certURL = s.srv.URL + "/SimpleNotificationService-abc.pem"
	s.subsURL = s.srv.URL + "/?Action=ConfirmSubscription&TopicArn=" + url.QueryEscape(topic) + "&Token=tok123"
	return s
}

// canonical is SNS's string to sign, written from
// https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html.
func canonical(m map[string]string) string {
	keys := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var b strings.Builder
	for _, k := range keys {
		if v, ok := m[k]; ok {
			b.WriteString(k + "\n" + v + "\n")
		}
	}
	return b.String()
}

func (s *snsServer) sign(t *testing.T, key *rsa.PrivateKey, version string, m map[string]string) []byte {
	t.Helper()
	m["SignatureVersion"] = version
	if _, ok := m["SigningCertURL"]; !ok {
		m["SigningCertURL"] = s.certURL
	}
	var sig []byte
	var err error
	if version == "1" {
		sum := sha1.Sum([]byte(canonical(m)))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, sum[:])
	} else {
		sum := sha256.Sum256([]byte(canonical(m)))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func notification(id, event string) map[string]string {
	return map[string]string{
		"Type": "Notification", "MessageId": id, "TopicArn": topic, "Message": event,
		"Timestamp": "2026-03-04T05:06:00.000Z", "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
	}
}

func post(body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/ses", strings.NewReader(string(body)))
	r.Header.Set("x-amz-sns-message-type", "Notification")
	return r
}

const mail = `"mail":{"timestamp":"2026-03-04T05:00:00.000Z","messageId":"0100-msg","tags":{"kalcifer_delivery_id":["dlv_1"],"ses:configuration-set":["kalcifer-events"]}}`

func TestStatuses(t *testing.T) {
	s := newSNS(t, providertest.Now.Add(-time.Hour), providertest.Now.Add(time.Hour))
	at := func(v string) time.Time { tm, _ := time.Parse(time.RFC3339, v); return tm }
	tests := []struct {
		name, version, event string
		subject              *string
		want                 []channels.Status
	}{
		{"delivery", "1", `{"eventType":"Delivery",` + mail + `,"delivery":{"timestamp":"2026-03-04T05:01:00.000Z","recipients":["ada@example.com"]}}`, nil,
			[]channels.Status{{MessageID: "0100-msg", DeliveryID: "dlv_1", Type: channels.StatusDelivered, At: at("2026-03-04T05:01:00Z"), EventID: "sns-delivery"}}},
		{"permanent bounce", "2", `{"eventType":"Bounce",` + mail + `,"bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"ada@example.com","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"timestamp":"2026-03-04T05:02:00.000Z"}}`, nil,
			[]channels.Status{{MessageID: "0100-msg", DeliveryID: "dlv_1", Type: channels.StatusBounced, At: at("2026-03-04T05:02:00Z"), EventID: "sns-permanent bounce", Reason: "Permanent/General: smtp; 550 5.1.1 user unknown"}}},
		{"transient bounce", "2", `{"eventType":"Bounce",` + mail + `,"bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull","timestamp":"2026-03-04T05:02:00.000Z"}}`, nil, nil},
		{"reject", "1", `{"eventType":"Reject",` + mail + `,"reject":{"reason":"Bad content"}}`, nil,
			[]channels.Status{{MessageID: "0100-msg", DeliveryID: "dlv_1", Type: channels.StatusFailed, At: at("2026-03-04T05:06:00Z"), EventID: "sns-reject", Reason: "Bad content"}}},
		{"rendering failure", "2", `{"eventType":"Rendering Failure",` + mail + `,"failure":{"errorMessage":"Attribute 'name' is not present","templateName":"t"}}`, strptr("Amazon SES Email Event Notification"),
			[]channels.Status{{MessageID: "0100-msg", DeliveryID: "dlv_1", Type: channels.StatusFailed, At: at("2026-03-04T05:06:00Z"), EventID: "sns-rendering failure", Reason: "Attribute 'name' is not present"}}},
		{"open", "2", `{"eventType":"Open",` + mail + `,"open":{"ipAddress":"192.0.2.1","timestamp":"2026-03-04T05:03:00.000Z","userAgent":"x"}}`, strptr(""),
			[]channels.Status{{MessageID: "0100-msg", DeliveryID: "dlv_1", Type: channels.StatusOpened, At: at("2026-03-04T05:03:00Z"), EventID: "sns-open"}}},
		{"click", "1", `{"eventType":"Click",` + mail + `,"click":{"link":"https://example.com","timestamp":"2026-03-04T05:04:00.000Z"}}`, nil,
			[]channels.Status{{MessageID: "0100-msg", DeliveryID: "dlv_1", Type: channels.StatusClicked, At: at("2026-03-04T05:04:00Z"), EventID: "sns-click"}}},
		{"complaint", "1", `{"eventType":"Complaint",` + mail + `,"complaint":{"timestamp":"2026-03-04T05:05:00.000Z"}}`, nil, nil},
		{"send", "1", `{"eventType":"Send",` + mail + `,"send":{}}`, nil, nil},
		{"identity notification", "1", `{"notificationType":"Delivery","mail":{"messageId":"0100-msg"},"delivery":{"timestamp":"2026-03-04T05:01:00.000Z"}}`, nil,
			[]channels.Status{{MessageID: "0100-msg", Type: channels.StatusDelivered, At: at("2026-03-04T05:01:00Z"), EventID: "sns-identity notification"}}},
	}
	cfg := config("https://email.eu-west-1.amazonaws.com", `,"topic_arn":"`+topic+`"`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := notification("sns-"+tt.name, tt.event)
			if tt.subject != nil {
				m["Subject"] = *tt.subject
			}
			body := s.sign(t, s.key, tt.version, m)
			got, err := ses.Statuses(post(body), body, cfg, providertest.Deps(s.srv.Client()))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("statuses\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if n := s.certFetches.Load(); n != 1 {
		t.Errorf("certificate fetched %d times, want once (cached)", n)
	}
}

func strptr(s string) *string { return &s }

func TestStatusesRefused(t *testing.T) {
	s := newSNS(t, providertest.Now.Add(-time.Hour), providertest.Now.Add(time.Hour))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	event := `{"eventType":"Delivery",` + mail + `,"delivery":{"timestamp":"2026-03-04T05:01:00.000Z"}}`
	cfg := config("https://email.eu-west-1.amazonaws.com", `,"topic_arn":"`+topic+`"`)
	tamper := func(b []byte) []byte {
		var m map[string]string
		json.Unmarshal(b, &m)
		m["Message"] = strings.Replace(m["Message"], "dlv_1", "dlv_2", 1)
		out, _ := json.Marshal(m)
		return out
	}
	tests := []struct {
		name string
		body func() []byte
	}{
		{"tampered v1", func() []byte { return tamper(s.sign(t, s.key, "1", notification("a", event))) }},
		{"tampered v2", func() []byte { return tamper(s.sign(t, s.key, "2", notification("a", event))) }},
		{"subject added", func() []byte {
			b := s.sign(t, s.key, "2", notification("a", event))
			return []byte(strings.Replace(string(b), `"Type"`, `"Subject":"x","Type"`, 1))
		}},
		{"wrong key", func() []byte { return s.sign(t, other, "2", notification("a", event)) }},
		{"version 3", func() []byte { return s.sign(t, s.key, "3", notification("a", event)) }},
		{"other topic", func() []byte {
			m := notification("a", event)
			m["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:evil"
			return s.sign(t, s.key, "2", m)
		}},
		{"foreign cert host", func() []byte {
			m := notification("a", event)
			m["SigningCertURL"] = "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-abc.pem"
			return s.sign(t, s.key, "2", m)
		}},
		{"http cert URL", func() []byte {
			m := notification("a", event)
			m["SigningCertURL"] = strings.Replace(s.certURL, "https:", "http:", 1)
			return s.sign(t, s.key, "2", m)
		}},
		{"unknown type", func() []byte {
			m := notification("a", event)
			m["Type"] = "Surprise"
			return s.sign(t, s.key, "2", m)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body()
			got, err := ses.Statuses(post(body), body, cfg, providertest.Deps(s.srv.Client()))
			providertest.WantBadSignature(t, got, err)
		})
	}
	if n := s.certFetches.Load(); n > 1 {
		t.Errorf("certificate fetched %d times", n)
	}
}

func TestStatusesExpiredCertificate(t *testing.T) {
	s := newSNS(t, providertest.Now.Add(-48*time.Hour), providertest.Now.Add(-24*time.Hour))
	body := s.sign(t, s.key, "2", notification("a", `{"eventType":"Open",`+mail+`}`))
	_, err := ses.Statuses(post(body), body, config("https://x.example", withTopic), providertest.Deps(s.srv.Client()))
	if !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("err = %v, want ErrBadSignature", err)
	}
}

// TestStatusesNeedATopic: SNS signs anyone's topics, so an account takes
// notifications only of the topic it names, and none without one.
func TestStatusesNeedATopic(t *testing.T) {
	s := newSNS(t, providertest.Now.Add(-time.Hour), providertest.Now.Add(time.Hour))
	body := s.sign(t, s.key, "2", notification("a", `{"eventType":"Open",`+mail+`}`))
	if _, err := ses.Statuses(post(body), body, config("https://email.eu-west-1.amazonaws.com", ""), providertest.Deps(s.srv.Client())); !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("err = %v, want ErrBadSignature", err)
	}
}

func TestSubscriptionConfirmation(t *testing.T) {
	s := newSNS(t, providertest.Now.Add(-time.Hour), providertest.Now.Add(time.Hour))
	confirmation := func(subscribe string) map[string]string {
		return map[string]string{
			"Type": "SubscriptionConfirmation", "MessageId": "165545c9", "Token": "tok123", "TopicArn": topic,
			"Message":      "You have chosen to subscribe to the topic " + topic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
			"SubscribeURL": subscribe, "Timestamp": "2026-03-04T05:00:00.000Z",
		}
	}
	cfg := config("https://email.eu-west-1.amazonaws.com", withTopic)

	body := s.sign(t, s.key, "1", confirmation(s.subsURL))
	got, err := ses.Statuses(post(body), body, cfg, providertest.Deps(s.srv.Client()))
	if err != nil || got != nil {
		t.Fatalf("Statuses = %v, %v", got, err)
	}
	if s.confirms.Load() != 1 || s.confirmedToken.Load() != "tok123" {
		t.Errorf("confirmations %d, token %v", s.confirms.Load(), s.confirmedToken.Load())
	}

	// A signed confirmation still may not send us anywhere but SNS.
	body = s.sign(t, s.key, "2", confirmation("https://attacker.example/?Token=tok123"))
	if _, err := ses.Statuses(post(body), body, cfg, providertest.Deps(s.srv.Client())); !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("foreign SubscribeURL: err = %v", err)
	}
	// Tampering with the SubscribeURL breaks the signature.
	m := confirmation(s.subsURL)
	body = s.sign(t, s.key, "2", m)
	body = []byte(strings.Replace(string(body), "tok123", "tok999", -1))
	if _, err := ses.Statuses(post(body), body, cfg, providertest.Deps(s.srv.Client())); !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("tampered confirmation: err = %v", err)
	}
	if s.confirms.Load() != 1 {
		t.Errorf("confirmations %d, want 1", s.confirms.Load())
	}

	unsub := confirmation(s.subsURL)
	unsub["Type"] = "UnsubscribeConfirmation"
	body = s.sign(t, s.key, "2", unsub)
	if got, err := ses.Statuses(post(body), body, cfg, providertest.Deps(s.srv.Client())); err != nil || got != nil {
		t.Errorf("unsubscribe confirmation: %v, %v", got, err)
	}
	if s.confirms.Load() != 1 {
		t.Errorf("unsubscribe confirmation was confirmed")
	}
}

func TestSNSHost(t *testing.T) {
	for host, want := range map[string]bool{
		"sns.us-east-1.amazonaws.com":                true,
		"sns.cn-north-1.amazonaws.com.cn":            true,
		"sns.us-gov-west-1.amazonaws.com":            true,
		"sns.us-east-1.amazonaws.com:8443":           false,
		"sns.us-east-1.amazonaws.com.evil.example":   false,
		"evil.example":                               false,
		"sqs.us-east-1.amazonaws.com":                false,
		"sns.us-east-1.amazonaws.com\n.evil.example": false,
		"xsns.us-east-1.amazonaws.com":               false,
	} {
		if got := ses.SNSHostAllowed(host); got != want {
			t.Errorf("SNSHostAllowed(%q) = %v", host, got)
		}
	}
}

func FuzzEventStatuses(f *testing.F) {
	f.Add(`{"eventType":"Delivery",` + mail + `,"delivery":{"timestamp":"2026-03-04T05:01:00.000Z"}}`)
	f.Add(`{"eventType":"Bounce",` + mail + `,"bounce":{"bounceType":"Permanent","bouncedRecipients":[{}]}}`)
	f.Add(`{"eventType":"Click","mail":{"tags":{"kalcifer_delivery_id":[]}}}`)
	f.Add(`{"notificationType":"Reject"}`)
	f.Fuzz(func(t *testing.T, message string) {
		got, err := ses.EventStatuses(message, "id", "2026-03-04T05:06:00Z")
		if err != nil {
			return
		}
		for _, s := range got {
			switch s.Type {
			case channels.StatusDelivered, channels.StatusBounced, channels.StatusFailed, channels.StatusOpened, channels.StatusClicked:
			default:
				t.Errorf("status type %q", s.Type)
			}
			if s.MessageID == "" && s.DeliveryID == "" || s.At.IsZero() || s.EventID != "id" {
				t.Errorf("status %+v", s)
			}
		}
	})
}

// FuzzStatuses feeds arbitrary bodies to the whole callback path. No host
// is allowed, so nothing is fetched, and nothing unsigned may pass.
func FuzzStatuses(f *testing.F) {
	f.Add([]byte(`{"Type":"Notification","MessageId":"a","TopicArn":"t","Message":"{}","Timestamp":"x","SignatureVersion":"1","Signature":"AAAA","SigningCertURL":"https://sns.us-east-1.amazonaws.com/c.pem"}`))
	f.Add([]byte(`{"Type":"SubscriptionConfirmation","SubscribeURL":"https://sns.us-east-1.amazonaws.com/","SignatureVersion":"2"}`))
	f.Add([]byte(`not json`))
	restore := ses.SetCertHostAllowed(func(string) bool { return false })
	defer restore()
	cfg := config("https://email.eu-west-1.amazonaws.com", withTopic)
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ses.Statuses(post(body), body, cfg, providertest.Deps(http.DefaultClient))
		if err == nil || got != nil {
			t.Errorf("unsigned body accepted: %v, %v", got, err)
		}
	})
}
