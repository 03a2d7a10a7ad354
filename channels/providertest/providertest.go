// Package providertest holds what the tests of the provider packages
// share: fixed and hand-moved clocks, a TLS server that records the
// requests it takes, test keys, and checks of the errors sends return.
// Only tests import it.
package providertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
)

// Now is the time the clock of Deps stands at.
var Now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// Deps are a provider's deps with client and a clock stopped at Now.
func Deps(client *http.Client) channels.Deps { return DepsAt(client, Now) }

// DepsAt are a provider's deps with client and a clock stopped at now.
func DepsAt(client *http.Client, now time.Time) channels.Deps {
	return channels.Deps{HTTP: client, Now: func() time.Time { return now }}
}

// Clock is a clock a test moves by hand; it is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time, as a Deps.Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	p256Key = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
)

// P256Key is an ECDSA P-256 key, made once per test binary.
func P256Key() *ecdsa.PrivateKey { return p256Key() }

// RSAKey is a 2048-bit RSA key, made once per test binary.
func RSAKey() *rsa.PrivateKey { return rsaKey() }

// PKCS8PEM is key as a PEM "PRIVATE KEY" block, the form of Apple's .p8
// files and of the private_key in Google's service account key files.
func PKCS8PEM(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// JSON decodes s, failing the test if it is not JSON.
func JSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Reply is what a Server answers: Status (200 if 0), the headers, with
// Content-Type application/json unless they set one, and Body.
type Reply struct {
	Status int
	Header map[string]string
	Body   string
}

// Request is a request a Server took.
type Request struct {
	*http.Request
	// Body is the request's body, read whole; it shadows the spent
	// Request.Body.
	Body []byte
}

// JSON decodes the request's body, reporting an error (and returning nil)
// if it is not JSON.
func (r Request) JSON(t testing.TB) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Errorf("body is not JSON: %v: %s", err, r.Body)
		return nil
	}
	return v
}

// Server is a provider's API on loopback, over TLS: it records each
// request it takes and answers it with its Reply.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	requests []Request
}

// NewServer starts a Server answering reply, closed when the test ends.
// check, if not nil, looks at each request before it is answered; it runs
// in the server's goroutine, so it reports with t.Errorf, not t.Fatal.
func NewServer(t testing.TB, reply Reply, check func(Request)) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read request body: %v", err)
		}
		req := Request{Request: r.Clone(context.Background()), Body: body}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		if check != nil {
			check(req)
		}
		for k, v := range reply.Header {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		if reply.Status != 0 {
			w.WriteHeader(reply.Status)
		}
		io.WriteString(w, reply.Body)
	}))
	t.Cleanup(s.Close)
	return s
}

// Requests are the requests the server took, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Bodies are the bodies of the requests the server took, in order.
func (s *Server) Bodies() []string {
	var out []string
	for _, r := range s.Requests() {
		out = append(out, string(r.Body))
	}
	return out
}

// Last is the last request the server took; the test fails if it took
// none.
func (s *Server) Last(t testing.TB) Request {
	t.Helper()
	reqs := s.Requests()
	if len(reqs) == 0 {
		t.Fatal("the server took no request")
	}
	return reqs[len(reqs)-1]
}

// Target is the provider a test sends with, built against a server.
type Target struct {
	// New is the provider's New.
	New func(json.RawMessage, channels.Deps) (channels.Provider, error)
	// Config is a configuration of the provider whose base URL is baseURL.
	Config func(baseURL string) json.RawMessage
}

// Build builds the provider against baseURL, with Deps(client).
func (tg Target) Build(t testing.TB, baseURL string, client *http.Client) channels.Provider {
	t.Helper()
	p, err := tg.New(tg.Config(baseURL), Deps(client))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Send builds the provider against srv and sends m with it.
func (tg Target) Send(t testing.TB, srv *Server, m channels.Message) (string, error) {
	t.Helper()
	return tg.Build(t, srv.URL, srv.Client()).Send(context.Background(), m)
}

// CheckTransportFailure checks that m, sent to a server that has gone
// away, fails retryably.
func (tg Target) CheckTransportFailure(t testing.TB, m channels.Message) {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	client := srv.Client()
	srv.Close()
	_, err := tg.Build(t, srv.URL, client).Send(context.Background(), m)
	WantRetryable(t, err)
}

// CheckUnsendable checks that p refuses each message, named by the map's
// keys, permanently.
func CheckUnsendable(t *testing.T, p channels.Provider, msgs map[string]channels.Message) {
	t.Helper()
	for name, m := range msgs {
		t.Run(name, func(t *testing.T) {
			_, err := p.Send(context.Background(), m)
			WantPermanent(t, err)
		})
	}
}

// NoRequests is a client that fails the test if it is asked to send
// anything.
func NoRequests(t testing.TB) *http.Client {
	return &http.Client{Transport: failTransport{t}}
}

type failTransport struct{ t testing.TB }

func (f failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	f.t.Error("request sent for a message that cannot be sent")
	return nil, errors.New("no")
}

// Email is an email message with every field set, in UTF-8.
func Email() channels.Message {
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

// Want is how a send's error should be classified. An empty Code takes
// any code; Says, when not empty, is text the error's message contains.
type Want struct {
	Code       string
	Retryable  bool
	Unsure     bool
	RetryAfter time.Duration
	Says       string
}

// CheckError checks that err is a *channels.Error classified as want, and
// returns it; the test ends if err is not one.
func CheckError(t testing.TB, err error, want Want) *channels.Error {
	t.Helper()
	var e *channels.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *channels.Error", err, err)
	}
	if (want.Code != "" && e.Code != want.Code) || e.Retryable != want.Retryable || e.Unsure != want.Unsure || e.RetryAfter != want.RetryAfter {
		t.Errorf("error %v: code %q retryable %v unsure %v after %v, want %+v", err, e.Code, e.Retryable, e.Unsure, e.RetryAfter, want)
	}
	if !strings.Contains(err.Error(), want.Says) {
		t.Errorf("error %q does not say %q", err, want.Says)
	}
	return e
}

// WantRetryable checks that err is a *channels.Error that may pass later.
func WantRetryable(t testing.TB, err error) {
	t.Helper()
	if e := (*channels.Error)(nil); !errors.As(err, &e) || !e.Retryable {
		t.Errorf("error %v, want retryable", err)
	}
}

// WantPermanent checks that err is a *channels.Error that will not pass
// later.
func WantPermanent(t testing.TB, err error) {
	t.Helper()
	if e := (*channels.Error)(nil); !errors.As(err, &e) || e.Retryable {
		t.Errorf("error %v, want permanent", err)
	}
}

// WantBadSignature checks that a status callback was refused for its
// signature, with no statuses.
func WantBadSignature(t testing.TB, statuses []channels.Status, err error) {
	t.Helper()
	if !errors.Is(err, channels.ErrBadSignature) || statuses != nil {
		t.Errorf("Statuses = %v, %v; want ErrBadSignature", statuses, err)
	}
}

// ConfigCase is a provider configuration (its [0]) and what New says of
// it ([1]): text its error contains, or "" when it takes the
// configuration.
type ConfigCase [2]string

// CheckNew builds a provider with newFn from each case's configuration.
func CheckNew(t testing.TB, newFn func(json.RawMessage, channels.Deps) (channels.Provider, error), deps channels.Deps, cases []ConfigCase) {
	t.Helper()
	for _, c := range cases {
		config, want := c[0], c[1]
		_, err := newFn(json.RawMessage(config), deps)
		switch {
		case want == "" && err != nil:
			t.Errorf("New(%s): %v", config, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("New(%s) = %v, want error containing %q", config, err, want)
		}
	}
}
