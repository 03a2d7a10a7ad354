package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
)

var testKey = providertest.P256Key

const (
	keyID    = "ABC123DEFG"
	teamID   = "DEF123GHIJ"
	bundleID = "com.example.app"
	tokA     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tokB     = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

type fakeAPNs struct {
	t     *testing.T
	srv   *httptest.Server
	clock *providertest.Clock

	mu       sync.Mutex
	requests []*http.Request
	bodies   []map[string]any
	jwts     []string
	// expired provider tokens, answered 403 ExpiredProviderToken.
	expired map[string]bool
	replies map[string]func(http.ResponseWriter)
}

func newFake(t *testing.T) *fakeAPNs {
	f := &fakeAPNs{t: t, clock: providertest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		expired: map[string]bool{}, replies: map[string]func(http.ResponseWriter){}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.handle))
	f.srv.EnableHTTP2 = true
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPNs) handle(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r)
	if r.ProtoMajor != 2 {
		f.t.Errorf("request over %s, APNs requires HTTP/2", r.Proto)
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok {
		f.t.Errorf("request %s %s", r.Method, r.URL.Path)
	}
	auth, ok := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	if !ok {
		f.t.Errorf("authorization %q", r.Header.Get("authorization"))
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(auth, claims, func(*jwt.Token) (any, error) { return &testKey().PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(teamID), jwt.WithTimeFunc(f.clock.Now))
	if err != nil {
		f.t.Errorf("provider token: %v", err)
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"reason":"InvalidProviderToken"}`)
		return
	}
	if parsed.Header["kid"] != keyID {
		f.t.Errorf("kid %v", parsed.Header["kid"])
	}
	iat, _ := claims.GetIssuedAt()
	if iat == nil || f.clock.Now().Sub(iat.Time) >= time.Hour || iat.After(f.clock.Now()) {
		f.t.Errorf("iat %v at %v", iat, f.clock.Now())
	}
	if len(f.jwts) == 0 || f.jwts[len(f.jwts)-1] != auth {
		f.jwts = append(f.jwts, auth)
	}
	for k, v := range map[string]string{"apns-topic": bundleID, "apns-push-type": "alert", "apns-priority": "10", "apns-expiration": "0"} {
		if g := r.Header.Get(k); g != v {
			f.t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		f.t.Errorf("body: %v", err)
	}
	f.bodies = append(f.bodies, body)
	if f.expired[auth] {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"reason":"ExpiredProviderToken"}`)
		return
	}
	if reply := f.replies[token]; reply != nil {
		reply(w)
		return
	}
	w.Header().Set("apns-id", r.Header.Get("apns-id"))
	w.WriteHeader(http.StatusOK)
}

func (f *fakeAPNs) provider(t *testing.T) channels.Provider {
	cfg, _ := json.Marshal(Config{KeyID: keyID, TeamID: teamID, BundleID: bundleID, PrivateKey: providertest.PKCS8PEM(t, testKey()), BaseURL: f.srv.URL})
	p, err := Kind.New(cfg, channels.Deps{HTTP: f.srv.Client(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fakeAPNs) state() (requests int, jwts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests), append([]string(nil), f.jwts...)
}

func pushMessage(tokens ...string) channels.Message {
	return channels.Message{
		DeliveryID: "dlv_1", TenantID: "t1", Key: "key-123", Channel: channels.Push,
		Push: &channels.PushMessage{Tokens: tokens, Title: "Hello", Body: "World",
			Data: map[string]string{"deep_link": "app://x", "aps": "ignored"}},
	}
}

func TestSend(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	id, err := p.Send(context.Background(), pushMessage(tokA, "fcm-token:APA91b", strings.ToUpper(tokB)))
	if err != nil {
		t.Fatal(err)
	}
	idA, idB := NotificationID("key-123", tokA), NotificationID("key-123", tokB)
	if id != idA+","+idB {
		t.Errorf("id = %q, want both apns-ids", id)
	}
	if !uuidRE.MatchString(idA) || idA == idB {
		t.Errorf("apns-ids %q %q", idA, idB)
	}
	if NotificationID("key-123", tokA) != idA || NotificationID("key-124", tokA) == idA {
		t.Error("apns-id not derived from the key")
	}
	if n, _ := f.state(); n != 2 {
		t.Fatalf("%d requests, want 2 (the FCM token skipped)", n)
	}
	r := f.requests[1]
	if r.URL.Path != "/3/device/"+tokB || r.Header.Get("apns-id") != idB || r.Header.Get("apns-collapse-id") != "key-123" {
		t.Errorf("request %s apns-id %q collapse %q", r.URL.Path, r.Header.Get("apns-id"), r.Header.Get("apns-collapse-id"))
	}
	want := map[string]any{
		"aps":                  map[string]any{"alert": map[string]any{"title": "Hello", "body": "World"}, "sound": "default"},
		"deep_link":            "app://x",
		"kalcifer_delivery_id": "dlv_1",
	}
	if !reflect.DeepEqual(f.bodies[0], want) {
		t.Errorf("body\n got %v\nwant %v", f.bodies[0], want)
	}
}

func TestProviderTokenReuse(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	send := func() {
		t.Helper()
		if _, err := p.Send(context.Background(), pushMessage(tokA)); err != nil {
			t.Fatal(err)
		}
	}
	send()
	send()
	f.clock.Add(49 * time.Minute)
	send()
	if _, jwts := f.state(); len(jwts) != 1 {
		t.Fatalf("%d provider tokens within 49 minutes, want 1", len(jwts))
	}
	f.clock.Add(time.Minute)
	send()
	send()
	_, jwts := f.state()
	if len(jwts) != 2 {
		t.Fatalf("%d provider tokens after 50 minutes, want 2", len(jwts))
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(jwts[1], claims); err != nil {
		t.Fatal(err)
	}
	if iat, _ := claims.GetIssuedAt(); !iat.Equal(f.clock.Now()) {
		t.Errorf("new token iat %v, want %v", iat, f.clock.Now())
	}
}

func TestExpiredProviderToken(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	if _, err := p.Send(context.Background(), pushMessage(tokA)); err != nil {
		t.Fatal(err)
	}
	_, jwts := f.state()
	f.mu.Lock()
	f.expired[jwts[0]] = true
	f.mu.Unlock()
	if _, err := p.Send(context.Background(), pushMessage(tokA)); err != nil {
		t.Fatalf("send with expired token: %v", err)
	}
	n, jwts := f.state()
	if n != 3 || len(jwts) != 2 {
		t.Fatalf("%d requests with %d tokens, want 3 with 2", n, len(jwts))
	}
	// The new token is reused afterwards.
	if _, err := p.Send(context.Background(), pushMessage(tokA)); err != nil {
		t.Fatal(err)
	}
	if _, jwts := f.state(); len(jwts) != 2 {
		t.Errorf("%d tokens, want the regenerated one reused", len(jwts))
	}

	// Refused again after regenerating: no loop, a permanent failure.
	f.mu.Lock()
	f.replies[tokB] = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"reason":"ExpiredProviderToken"}`)
	}
	f.mu.Unlock()
	before, _ := f.state()
	_, err := p.Send(context.Background(), pushMessage(tokB))
	if e := channels.Classify(err); err == nil || e.Retryable || e.Code != "ExpiredProviderToken" {
		t.Errorf("err = %v, want permanent ExpiredProviderToken", err)
	}
	if after, _ := f.state(); after-before != 2 {
		t.Errorf("%d requests, want 2", after-before)
	}
}

func reason(status int, r string, retryAfter string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("apns-id", "server-id")
		w.WriteHeader(status)
		if status == http.StatusGone {
			fmt.Fprintf(w, `{"reason":%q,"timestamp":1740000000000}`, r)
			return
		}
		fmt.Fprintf(w, `{"reason":%q}`, r)
	}
}

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		status    int
		reason    string
		retryable bool
		after     string
	}{
		{410, "Unregistered", false, ""},
		{400, "BadDeviceToken", false, ""},
		{400, "DeviceTokenNotForTopic", false, ""},
		{400, "BadTopic", false, ""},
		{400, "TopicDisallowed", false, ""},
		{403, "InvalidProviderToken", false, ""},
		{429, "TooManyRequests", true, "20"},
		{500, "InternalServerError", true, ""},
		{503, "ServiceUnavailable", true, "3"},
		{503, "Shutdown", true, ""},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			f := newFake(t)
			f.replies[tokA] = reason(c.status, c.reason, c.after)
			_, err := f.provider(t).Send(context.Background(), pushMessage(tokA))
			var after time.Duration
			if c.after != "" {
				after, _ = time.ParseDuration(c.after + "s")
			}
			providertest.CheckError(t, err, providertest.Want{Code: c.reason, Retryable: c.retryable, RetryAfter: after})
			if c.reason == "Unregistered" && !strings.Contains(err.Error(), "unregistered tokens: "+tokA) {
				t.Errorf("err %q does not name the token", err)
			}
		})
	}
}

func TestSeveralTokens(t *testing.T) {
	f := newFake(t)
	f.replies[tokA] = reason(http.StatusGone, "Unregistered", "")
	p := f.provider(t)
	id, err := p.Send(context.Background(), pushMessage(tokA, tokB))
	if err != nil || id != NotificationID("key-123", tokB) {
		t.Fatalf("id %q, err %v; want tokB's", id, err)
	}
	f.mu.Lock()
	f.replies[tokB] = reason(http.StatusServiceUnavailable, "ServiceUnavailable", "")
	f.mu.Unlock()
	_, err = p.Send(context.Background(), pushMessage(tokA, tokB))
	e := channels.Classify(err)
	if !e.Retryable || e.Code != "ServiceUnavailable" || !strings.Contains(err.Error(), "unregistered tokens: "+tokA) {
		t.Errorf("err = %v, want retryable naming the unregistered token", err)
	}
}

func TestNoDeviceToken(t *testing.T) {
	f := newFake(t)
	_, err := f.provider(t).Send(context.Background(), pushMessage("fcm:APA91", "abc", strings.Repeat("g", 64)))
	if e := channels.Classify(err); err == nil || e.Retryable || !strings.Contains(err.Error(), "no APNs device token") {
		t.Errorf("err = %v", err)
	}
	if n, _ := f.state(); n != 0 {
		t.Errorf("%d requests", n)
	}
}

func TestTransportFailure(t *testing.T) {
	f := newFake(t)
	p := f.provider(t)
	f.srv.Close()
	_, err := p.Send(context.Background(), pushMessage(tokA))
	providertest.WantRetryable(t, err)
}

func TestConfig(t *testing.T) {
	key := providertest.PKCS8PEM(t, testKey())
	good := Config{KeyID: keyID, TeamID: teamID, BundleID: bundleID, PrivateKey: key}
	build := func(mut func(*Config)) (channels.Provider, error) {
		c := good
		mut(&c)
		b, _ := json.Marshal(c)
		return Kind.New(b, channels.Deps{})
	}
	p, err := build(func(*Config) {})
	if err != nil || p.(*provider).base != "https://api.push.apple.com" {
		t.Fatalf("production: %v", err)
	}
	p, err = build(func(c *Config) { c.Environment = "sandbox" })
	if err != nil || p.(*provider).base != "https://api.sandbox.push.apple.com" {
		t.Fatalf("sandbox: %v", err)
	}
	rsaKey := providertest.RSAKey()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for want, mut := range map[string]func(*Config){
		"key_id is required":      func(c *Config) { c.KeyID = "" },
		"team_id is required":     func(c *Config) { c.TeamID = "" },
		"bundle_id is required":   func(c *Config) { c.BundleID = "" },
		"private_key is required": func(c *Config) { c.PrivateKey = "" },
		"private_key:":            func(c *Config) { c.PrivateKey = "garbage" },
		"private_key: ":           func(c *Config) { c.PrivateKey = providertest.PKCS8PEM(t, rsaKey) },
		"P-256":                   func(c *Config) { c.PrivateKey = providertest.PKCS8PEM(t, p384) },
		"environment must be":     func(c *Config) { c.Environment = "dev" },
		"base_url must be":        func(c *Config) { c.BaseURL = "http://api.push.apple.com" },
	} {
		if _, err := build(mut); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if _, err := Kind.New(json.RawMessage(`{"key_id":"x","extra":1}`), channels.Deps{}); err == nil {
		t.Error("unknown field accepted")
	}
	if Kind.Idempotent || Kind.Statuses != nil || len(Kind.Secrets) != 1 || Kind.Secrets[0] != "private_key" {
		t.Errorf("Kind = %+v", Kind)
	}
}

func TestCollapseKey(t *testing.T) {
	if CollapseKey("") != "" || CollapseKey("k-1") != "k-1" {
		t.Error("short key not kept")
	}
	long := strings.Repeat("x", 65)
	if c := CollapseKey(long); len(c) != 64 || c == long[:64] || c != CollapseKey(long) {
		t.Errorf("long key: %q", c)
	}
	if c := CollapseKey("a b"); len(c) != 64 {
		t.Errorf("key with a space kept: %q", c)
	}
}

func FuzzParseReason(f *testing.F) {
	f.Add([]byte(`{"reason":"Unregistered","timestamp":1}`))
	f.Add([]byte(`{"reason":7}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseReason(b)
		e := channels.Classify(classify(channels.Response{Status: 410, Header: http.Header{}, Body: b}, r))
		if e.Retryable && r != "TooManyRequests" && r != "TooManyProviderTokenUpdates" && r != "InternalServerError" &&
			r != "ServiceUnavailable" && r != "Shutdown" {
			t.Fatalf("410 with reason %q came out retryable", r)
		}
	})
}
