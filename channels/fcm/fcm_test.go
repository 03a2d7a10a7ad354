package fcm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
)

var testKey = providertest.RSAKey

const (
	clientEmail = "kalcifer@my-proj.iam.gserviceaccount.com"
	keyID       = "abc123keyid"
)

// fakeGoogle is the OAuth token endpoint and the FCM API in one server.
type fakeGoogle struct {
	t     *testing.T
	srv   *httptest.Server
	clock *providertest.Clock

	mu         sync.Mutex
	tokenCalls int
	sendCalls  int
	valid      map[string]bool
	tokenFail  func(w http.ResponseWriter) bool
	// replies answers a device token: status and body; default success.
	replies map[string]func(w http.ResponseWriter)
	bodies  []map[string]any
}

func newFake(t *testing.T) *fakeGoogle {
	f := &fakeGoogle{t: t, clock: providertest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		valid: map[string]bool{}, replies: map[string]func(http.ResponseWriter){}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /v1/projects/my-proj/messages:send", f.send)
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGoogle) token(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenCalls++
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		f.t.Errorf("token Content-Type %q", ct)
	}
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("token form: %v", err)
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		f.t.Errorf("grant_type %q", g)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(*jwt.Token) (any, error) {
		return &testKey().PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(f.clock.Now), jwt.WithExpirationRequired(),
		jwt.WithIssuer(clientEmail), jwt.WithAudience(f.srv.URL+"/token"), jwt.WithIssuedAt())
	if err != nil {
		f.t.Errorf("assertion: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
		return
	}
	if tok.Header["kid"] != keyID {
		f.t.Errorf("kid %v", tok.Header["kid"])
	}
	if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
		f.t.Errorf("scope %v", claims["scope"])
	}
	iat, _ := claims.GetIssuedAt()
	exp, _ := claims.GetExpirationTime()
	if !iat.Time.Equal(f.clock.Now()) || exp.Sub(iat.Time) != time.Hour {
		f.t.Errorf("iat %v exp %v, want now and an hour later", iat, exp)
	}
	if f.tokenFail != nil && f.tokenFail(w) {
		return
	}
	access := fmt.Sprintf("ya29.token-%d", f.tokenCalls)
	f.valid[access] = true
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"expires_in":3599,"token_type":"Bearer"}`, access)
}

func (f *fakeGoogle) send(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sendCalls++
	if r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		f.t.Errorf("send Content-Type %q", r.Header.Get("Content-Type"))
	}
	access, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !f.valid[access] {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		f.t.Errorf("send body: %v", err)
	}
	f.bodies = append(f.bodies, body)
	token, _ := body["message"].(map[string]any)["token"].(string)
	if reply := f.replies[token]; reply != nil {
		reply(w)
		return
	}
	fmt.Fprintf(w, `{"name":"projects/my-proj/messages/%s"}`, token)
}

func (f *fakeGoogle) counts() (tokens, sends int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenCalls, f.sendCalls
}

func fcmError(status int, rpcStatus, code, msg string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "12")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%d,"message":%q,"status":%q,"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":%q}]}}`,
			status, msg, rpcStatus, code)
	}
}

func (f *fakeGoogle) config(t testing.TB) json.RawMessage {
	sa, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "my-proj", "private_key_id": keyID,
		"private_key": providertest.PKCS8PEM(t, testKey()), "client_email": clientEmail, "client_id": "1",
		"auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": f.srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(map[string]string{"service_account_json": string(sa), "base_url": f.srv.URL})
	return c
}

func (f *fakeGoogle) provider(t *testing.T) channels.Provider {
	p, err := Kind.New(f.config(t), channels.Deps{HTTP: f.srv.Client(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pushMessage(tokens ...string) channels.Message {
	return channels.Message{
		DeliveryID: "dlv_1", TenantID: "t1", Key: "key-123", Channel: channels.Push,
		Push: &channels.PushMessage{Tokens: tokens, Title: "Hello", Body: "World", Data: map[string]string{"deep_link": "app://x"}},
	}
}

func TestSendBodyAndTokenCache(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	id, err := p.Send(context.Background(), pushMessage("tok-a"))
	if err != nil {
		t.Fatal(err)
	}
	if id != "projects/my-proj/messages/tok-a" {
		t.Errorf("id = %q", id)
	}
	want := map[string]any{"message": map[string]any{
		"token":        "tok-a",
		"notification": map[string]any{"title": "Hello", "body": "World"},
		"data":         map[string]any{"deep_link": "app://x", "kalcifer_delivery_id": "dlv_1"},
		"android":      map[string]any{"collapse_key": "key-123"},
		"apns":         map[string]any{"headers": map[string]any{"apns-collapse-id": "key-123"}},
	}}
	if !reflect.DeepEqual(f.bodies[0], want) {
		t.Errorf("body\n got %v\nwant %v", f.bodies[0], want)
	}

	if _, err := p.Send(context.Background(), pushMessage("tok-b")); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(57 * time.Minute)
	if _, err := p.Send(context.Background(), pushMessage("tok-c")); err != nil {
		t.Fatal(err)
	}
	if tokens, sends := f.counts(); tokens != 1 || sends != 3 {
		t.Errorf("token requests %d, sends %d; want the token cached (1, 3)", tokens, sends)
	}
	// expires_in 3599 is renewed a minute early: at 58m59s.
	f.clock.Add(2 * time.Minute)
	if _, err := p.Send(context.Background(), pushMessage("tok-d")); err != nil {
		t.Fatal(err)
	}
	if tokens, _ := f.counts(); tokens != 2 {
		t.Errorf("token requests %d after expiry, want 2", tokens)
	}
}

func TestRefreshOn401(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	if _, err := p.Send(context.Background(), pushMessage("tok-a")); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	clear(f.valid) // revoked
	f.mu.Unlock()
	if _, err := p.Send(context.Background(), pushMessage("tok-a")); err != nil {
		t.Fatalf("send after revocation: %v", err)
	}
	if tokens, sends := f.counts(); tokens != 2 || sends != 3 {
		t.Errorf("token requests %d, sends %d; want 2, 3", tokens, sends)
	}

	// A token the API keeps refusing is refreshed once, not forever.
	f.mu.Lock()
	f.tokenFail = func(w http.ResponseWriter) bool {
		io.WriteString(w, `{"access_token":"ya29.never-valid","expires_in":3600}`)
		return true
	}
	clear(f.valid)
	f.mu.Unlock()
	_, err := p.Send(context.Background(), pushMessage("tok-a"))
	e := channels.Classify(err)
	if err == nil || e.Retryable || e.Code != "UNAUTHENTICATED" {
		t.Errorf("err = %v, want permanent UNAUTHENTICATED", err)
	}
	if tokens, sends := f.counts(); tokens != 3 || sends != 5 {
		t.Errorf("token requests %d, sends %d; want 3, 5", tokens, sends)
	}
}

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		status    int
		rpc, code string
		retryable bool
		after     time.Duration
	}{
		{404, "NOT_FOUND", "UNREGISTERED", false, 0},
		{400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", false, 0},
		{403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", false, 0},
		{401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", false, 0},
		{429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", true, 12 * time.Second},
		{503, "UNAVAILABLE", "UNAVAILABLE", true, 12 * time.Second},
		{500, "INTERNAL", "INTERNAL", true, 0},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			f := newFake(t)
			f.replies["tok-x"] = fcmError(c.status, c.rpc, c.code, "boom")
			_, err := f.provider(t).Send(context.Background(), pushMessage("tok-x"))
			providertest.CheckError(t, err, providertest.Want{Code: c.code, Retryable: c.retryable, RetryAfter: c.after})
			if _, sends := f.counts(); sends != 1 {
				t.Errorf("sends = %d", sends)
			}
		})
	}
}

func TestSeveralTokens(t *testing.T) {
	f := newFake(t)
	f.replies["gone"] = fcmError(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
	f.replies["busy"] = fcmError(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "quota")
	f.replies["bad"] = fcmError(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad token")
	p := f.provider(t)

	id, err := p.Send(context.Background(), pushMessage("tok-a", "gone", "tok-b", "tok-a", ""))
	if err != nil {
		t.Fatal(err)
	}
	if id != "projects/my-proj/messages/tok-a,projects/my-proj/messages/tok-b" {
		t.Errorf("id = %q", id)
	}

	_, err = p.Send(context.Background(), pushMessage("gone", "busy", "bad"))
	e := channels.Classify(err)
	if !e.Retryable || e.Code != "QUOTA_EXCEEDED" || e.RetryAfter != 12*time.Second {
		t.Errorf("err = %+v, want the retryable quota error", e)
	}
	if !strings.Contains(err.Error(), "unregistered tokens: gone") {
		t.Errorf("err %q does not name the unregistered token", err)
	}

	_, err = p.Send(context.Background(), pushMessage("gone", "bad"))
	e = channels.Classify(err)
	if e.Retryable || !strings.Contains(err.Error(), "unregistered tokens: gone") {
		t.Errorf("err = %v, want permanent naming gone", err)
	}

	_, err = p.Send(context.Background(), pushMessage())
	if e := channels.Classify(err); e.Retryable {
		t.Errorf("no tokens: %v", err)
	}
}

func TestTokenEndpointFailures(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		body      string
		retryable bool
		code      string
	}{
		{"invalid_grant", 400, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`, false, "invalid_grant"},
		{"unauthorized_client", 401, `{"error":"unauthorized_client"}`, false, "unauthorized_client"},
		{"unavailable", 503, `{"error":"temporarily_unavailable"}`, true, "temporarily_unavailable"},
		{"internal", 500, `oops`, true, "500"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t)
			f.tokenFail = func(w http.ResponseWriter) bool {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
				return true
			}
			_, err := f.provider(t).Send(context.Background(), pushMessage("tok-a", "tok-b"))
			providertest.CheckError(t, err, providertest.Want{Code: c.code, Retryable: c.retryable})
			if tokens, sends := f.counts(); tokens != 1 || sends != 0 {
				t.Errorf("token requests %d, sends %d; want 1, 0", tokens, sends)
			}
		})
	}
}

func TestTransportFailure(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	if _, err := p.Send(context.Background(), pushMessage("tok-a")); err != nil {
		t.Fatal(err)
	}
	f.srv.Close()
	_, err := p.Send(context.Background(), pushMessage("tok-a"))
	providertest.CheckError(t, err, providertest.Want{Retryable: true})

	// With no token cached the token fetch fails first: retryable too.
	f2 := newFake(t)
	p2 := f2.provider(t)
	f2.srv.Close()
	_, err = p2.Send(context.Background(), pushMessage("tok-a"))
	providertest.CheckError(t, err, providertest.Want{Retryable: true})
}

func TestNoNotificationNoKey(t *testing.T) {
	f := newFake(t)
	m := pushMessage("tok-a")
	m.Push.Title, m.Push.Body, m.Key = "", "", strings.Repeat("k", 100)
	if _, err := f.provider(t).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	msg := f.bodies[0]["message"].(map[string]any)
	if _, ok := msg["notification"]; ok {
		t.Error("empty notification sent")
	}
	ck := msg["android"].(map[string]any)["collapse_key"].(string)
	if len(ck) != 64 || ck == m.Key[:64] {
		t.Errorf("long key not hashed: %q", ck)
	}
	if msg["apns"].(map[string]any)["headers"].(map[string]any)["apns-collapse-id"] != ck {
		t.Error("apns-collapse-id differs from collapse_key")
	}
}

func TestConfigValidation(t *testing.T) {
	f := newFake(t)
	good := f.config(t)
	if _, err := Kind.New(good, channels.Deps{}); err != nil {
		t.Fatalf("good config: %v", err)
	}
	var sa map[string]string
	var c map[string]string
	json.Unmarshal(good, &c)
	json.Unmarshal([]byte(c["service_account_json"]), &sa)
	withSA := func(mut func(map[string]string)) string {
		m := map[string]string{}
		for k, v := range sa {
			m[k] = v
		}
		mut(m)
		b, _ := json.Marshal(m)
		out, _ := json.Marshal(map[string]string{"service_account_json": string(b)})
		return string(out)
	}
	cases := map[string]string{
		`{}`:                                  "service_account_json is required",
		`{"service_account_json":"nope"}`:     "service_account_json is not a JSON key file",
		`{"service_account_json":"{}","x":1}`: "unknown field",
		withSA(func(m map[string]string) { delete(m, "client_email") }):                                         "client_email",
		withSA(func(m map[string]string) { m["private_key"] = "garbage" }):                                      "private_key",
		withSA(func(m map[string]string) { delete(m, "project_id") }):                                           "project_id is required",
		withSA(func(m map[string]string) { m["token_uri"] = "http://x/token" }):                                 "token_uri must be an https URL",
		`{"service_account_json":` + mustQuote(c["service_account_json"]) + `,"base_url":"http://fcm.example"}`: "base_url must be an https URL",
	}
	for cfg, want := range cases {
		_, err := Kind.New(json.RawMessage(cfg), channels.Deps{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%.80s) = %v, want %q", cfg, err, want)
		}
	}
	// project_id in the configuration stands in for the key file's.
	cfg := `{"service_account_json":` + mustQuote(withSAraw(sa)) + `,"project_id":"other"}`
	if _, err := Kind.New(json.RawMessage(cfg), channels.Deps{}); err != nil {
		t.Errorf("project_id override: %v", err)
	}
	if Kind.Idempotent || Kind.Statuses != nil || len(Kind.Secrets) != 1 || Kind.Secrets[0] != "service_account_json" {
		t.Errorf("Kind = %+v", Kind)
	}
}

func withSAraw(sa map[string]string) string {
	m := map[string]string{}
	for k, v := range sa {
		if k != "project_id" {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func FuzzParseError(f *testing.F) {
	f.Add([]byte(`{"error":{"code":404,"message":"x","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`))
	f.Add([]byte(`{"error":{"details":[{}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		code, _ := parseError(b)
		resp := channels.Response{Status: 400, Header: http.Header{}, Body: b}
		if e := channels.Classify(classify(resp, code, "")); e.Retryable && code != "QUOTA_EXCEEDED" && code != "UNAVAILABLE" && code != "INTERNAL" {
			t.Fatalf("400 with code %q came out retryable", code)
		}
	})
}
