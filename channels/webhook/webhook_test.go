package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
	"github.com/kalcifer/kalcifer/netguard"
)

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func deps() channels.Deps { return providertest.DepsAt(&http.Client{}, fixedNow) }

func newProvider(t *testing.T, config string, d channels.Deps) channels.Provider {
	t.Helper()
	p, err := Kind.New(json.RawMessage(config), d)
	if err != nil {
		t.Fatalf("New(%s): %v", config, err)
	}
	return p
}

func message(url string) channels.Message {
	return channels.Message{
		DeliveryID: "dlv_1", TenantID: "t1", Key: "key-123", Channel: channels.Webhook,
		Webhook: &channels.WebhookMessage{
			URL:     url,
			Headers: map[string]string{"X-Custom": "yes", "Idempotency-Key": "forged", "X-Kalcifer-Signature": "forged"},
			Body:    []byte(`{"event":"signup","customer":"c1"}`),
		},
	}
}

func TestSendHeadersAndSignature(t *testing.T) {
	const secret = "whsec_test"
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.Header().Set("X-Request-Id", "req-789")
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	p := newProvider(t, `{"signing_secret":"`+secret+`"}`, deps())
	m := message(srv.URL + "/hooks/in?x=1")
	id, err := p.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if id != "req-789" {
		t.Errorf("id = %q, want the X-Request-Id", id)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/hooks/in" || got.URL.RawQuery != "x=1" {
		t.Errorf("request %s %s", got.Method, got.URL)
	}
	if string(gotBody) != string(m.Webhook.Body) {
		t.Errorf("body = %s", gotBody)
	}
	ts := strconv.FormatInt(fixedNow.Unix(), 10)
	want := map[string]string{
		"Content-Type":           "application/json",
		"User-Agent":             "Kalcifer-Webhook/1",
		"Idempotency-Key":        "key-123",
		"X-Kalcifer-Delivery-Id": "dlv_1",
		"X-Kalcifer-Timestamp":   ts,
		"X-Custom":               "yes",
	}
	for k, v := range want {
		if g := got.Header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}

	// Recomputed independently of Sign.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(gotBody)))
	if sig := got.Header.Get("X-Kalcifer-Signature"); sig != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature %q does not recompute", sig)
	}
	if err := Verify(secret, got.Header, gotBody, fixedNow.Add(time.Minute), 5*time.Minute); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := Verify("other", got.Header, gotBody, fixedNow, 5*time.Minute); !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("Verify with wrong secret: %v", err)
	}
	tampered := append([]byte(nil), gotBody...)
	tampered[2] = 'X'
	if err := Verify(secret, got.Header, tampered, fixedNow, 5*time.Minute); !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("Verify of tampered body: %v", err)
	}
}

func TestSendUnsignedDefaults(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r }))
	defer srv.Close()
	p := newProvider(t, `{}`, deps())
	m := message(srv.URL)
	m.Webhook.Method = "put"
	m.Webhook.Headers = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	id, err := p.Send(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if id != "key-123" {
		t.Errorf("id = %q, want the key", id)
	}
	if got.Method != http.MethodPut {
		t.Errorf("method %s", got.Method)
	}
	if got.Header.Get("X-Kalcifer-Signature") != "" {
		t.Error("signature sent without a secret")
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("message's Content-Type replaced: %q", ct)
	}

	// No body: no Content-Type is invented.
	m.Webhook.Body = nil
	m.Webhook.Headers = nil
	m.Webhook.Method = ""
	if _, err := p.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodPost || got.Header.Get("Content-Type") != "" {
		t.Errorf("bodiless request: %s, Content-Type %q", got.Method, got.Header.Get("Content-Type"))
	}
}

func TestConfig(t *testing.T) {
	if _, err := Kind.New(json.RawMessage(`{"base_url":"https://x"}`), deps()); err == nil {
		t.Error("base_url accepted")
	}
	if _, err := Kind.New(nil, deps()); err != nil {
		t.Errorf("empty config: %v", err)
	}
	if !Kind.Idempotent || Kind.Statuses != nil || Kind.Name != "webhook" || len(Kind.Secrets) != 1 || Kind.Secrets[0] != "signing_secret" {
		t.Errorf("Kind = %+v", Kind)
	}
}

func TestResponseClasses(t *testing.T) {
	cases := []struct {
		status     int
		retryAfter string
		retryable  bool
		after      time.Duration
		method     string
	}{
		{status: 408, retryable: true},
		{status: 425, retryable: true},
		{status: 429, retryAfter: "30", retryable: true, after: 30 * time.Second},
		{status: 500, retryable: true},
		{status: 502, retryable: true},
		{status: 503, retryAfter: "7", retryable: true, after: 7 * time.Second},
		{status: 400},
		{status: 401},
		{status: 404},
		{status: 410},
		{status: 422},
		{status: 301},
		{status: 307},
		{status: 308, method: http.MethodPatch},
	}
	for _, c := range cases {
		t.Run(strconv.Itoa(c.status), func(t *testing.T) {
			var hits int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits++
				if r.URL.Path == "/elsewhere" {
					t.Error("redirect followed")
					return
				}
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				if c.status >= 300 && c.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(c.status)
				io.WriteString(w, `{"error":"nope"}`)
			}))
			defer srv.Close()
			m := message(srv.URL)
			m.Webhook.Method = c.method
			_, err := newProvider(t, `{}`, deps()).Send(context.Background(), m)
			providertest.CheckError(t, err, providertest.Want{Code: strconv.Itoa(c.status), Retryable: c.retryable, RetryAfter: c.after})
			if c.status >= 300 && c.status < 400 && !strings.Contains(err.Error(), "redirects are not followed") {
				t.Errorf("redirect error %v", err)
			}
			if hits != 1 {
				t.Errorf("server hit %d times", hits)
			}
		})
	}
}

func TestGetFollowsRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/end", http.StatusFound)
		}
	}))
	defer srv.Close()
	m := message(srv.URL + "/start")
	m.Webhook.Method = "GET"
	m.Webhook.Body = nil
	if _, err := newProvider(t, `{}`, deps()).Send(context.Background(), m); err != nil {
		t.Fatalf("GET with redirect: %v", err)
	}
}

func TestTimeoutIsUnsure(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	m := message(srv.URL)
	m.Webhook.Timeout = 50 * time.Millisecond
	_, err := newProvider(t, `{}`, deps()).Send(context.Background(), m)
	providertest.CheckError(t, err, providertest.Want{Retryable: true, Unsure: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the deadline", err)
	}
}

func TestConnectionRefusedIsSure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := srv.URL
	srv.Close()
	_, err := newProvider(t, `{}`, deps()).Send(context.Background(), message(url))
	providertest.CheckError(t, err, providertest.Want{Retryable: true})
}

func TestGuardRefusalIsPermanent(t *testing.T) {
	var reached bool
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	defer srv.Close()
	d := deps()
	d.HTTP = netguard.New(nil).HTTPClient(0, nil)
	_, err := newProvider(t, `{}`, d).Send(context.Background(), message(srv.URL))
	var e *channels.Error
	if !errors.As(err, &e) || e.Retryable || !errors.Is(err, netguard.ErrRefused) {
		t.Fatalf("err = %v, want a permanent refusal", err)
	}
	if reached {
		t.Fatal("guard let the request through")
	}

	d.HTTP = netguard.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}).HTTPClient(0, nil)
	if _, err := newProvider(t, `{}`, d).Send(context.Background(), message(srv.URL)); err != nil || !reached {
		t.Fatalf("allowed send: %v, reached=%v", err, reached)
	}
}

func TestBadMessages(t *testing.T) {
	p := newProvider(t, `{}`, deps())
	for _, u := range []string{"", "ftp://x/y", "/relative", "http://"} {
		t.Run(u, func(t *testing.T) {
			_, err := p.Send(context.Background(), message(u))
			providertest.WantPermanent(t, err)
		})
	}
	for name, v := range map[string]string{"Bad Name": "x", "X-Ok": "line\r\nInjected: 1"} {
		m := message("http://example.com/")
		m.Webhook.Headers = map[string]string{name: v}
		_, err := p.Send(context.Background(), m)
		if e := channels.Classify(err); err == nil || e.Retryable || e.Code != "bad_header" {
			t.Errorf("header %q: %q: err = %v, want permanent bad_header", name, v, err)
		}
	}
	m := message("http://example.com/")
	m.Webhook.Method = "BAD METHOD"
	if _, err := p.Send(context.Background(), m); channels.Classify(err).Retryable {
		t.Errorf("bad method: %v", err)
	}
	_, err := p.Send(context.Background(), channels.Message{Key: "k"})
	if e := channels.Classify(err); e.Retryable {
		t.Errorf("no webhook: %v", err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	ts := fixedNow.Unix()
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, "sha256=00, "+Sign("s", ts, body))
	if err := Verify("s", h, body, fixedNow, 0); err != nil {
		t.Errorf("valid among several: %v", err)
	}
	for name, c := range map[string]struct {
		now time.Time
		mut func(http.Header)
	}{
		"too old":      {now: fixedNow.Add(6 * time.Minute)},
		"future":       {now: fixedNow.Add(-6 * time.Minute)},
		"no timestamp": {now: fixedNow, mut: func(h http.Header) { h.Del(HeaderTimestamp) }},
		"bad ts":       {now: fixedNow, mut: func(h http.Header) { h.Set(HeaderTimestamp, "soon") }},
		"other ts":     {now: fixedNow, mut: func(h http.Header) { h.Set(HeaderTimestamp, strconv.FormatInt(ts+1, 10)) }},
		"no signature": {now: fixedNow, mut: func(h http.Header) { h.Del(HeaderSignature) }},
		"huge ts":      {now: fixedNow, mut: func(h http.Header) { h.Set(HeaderTimestamp, "-9223372036854775808") }},
	} {
		hc := h.Clone()
		if c.mut != nil {
			c.mut(hc)
		}
		if err := Verify("s", hc, body, c.now, 5*time.Minute); !errors.Is(err, channels.ErrBadSignature) {
			t.Errorf("%s: err = %v, want ErrBadSignature", name, err)
		}
	}
	if err := Verify("", h, body, fixedNow, 0); !errors.Is(err, channels.ErrBadSignature) {
		t.Errorf("empty secret: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("1772366400", "sha256=abc", []byte(`{}`))
	f.Add("-1", "", []byte(nil))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		err := Verify("secret", h, body, fixedNow, time.Minute)
		if err == nil {
			// Only the genuine signature for a fresh timestamp passes.
			n, perr := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
			if perr != nil || n < fixedNow.Unix()-60 || n > fixedNow.Unix()+60 {
				t.Fatalf("accepted timestamp %q", ts)
			}
			found := false
			for s := range strings.SplitSeq(sig, ",") {
				found = found || strings.TrimSpace(s) == Sign("secret", n, body)
			}
			if !found {
				t.Fatalf("accepted signature %q", sig)
			}
		} else if !errors.Is(err, channels.ErrBadSignature) {
			t.Fatalf("error %v does not wrap ErrBadSignature", err)
		}
	})
}
