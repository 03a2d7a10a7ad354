package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/kalcifer/kalcifer/channels/webhook"
)

// mailbox is an SMTP server on loopback that keeps what it receives.
type mailbox struct {
	mu       sync.Mutex
	messages []*mail.Message
	rcpts    []string
}

func (m *mailbox) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &mailSession{box: m}, nil }

type mailSession struct {
	box   *mailbox
	rcpts []string
}

func (s *mailSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	s.box.mu.Lock()
	s.box.messages = append(s.box.messages, msg)
	s.box.rcpts = append(s.box.rcpts, s.rcpts...)
	s.box.mu.Unlock()
	return nil
}
func (s *mailSession) Reset()        { s.rcpts = nil }
func (s *mailSession) Logout() error { return nil }

func startMailbox(t *testing.T) (*mailbox, string) {
	t.Helper()
	box := &mailbox{}
	srv := gosmtp.NewServer(box)
	srv.Domain = "mail.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return box, ln.Addr().String()
}

// hookRequest is what the webhook receiver was sent.
type hookRequest struct {
	path, key string
	body      []byte
}

// TestDeliveryThroughTheBinary runs the real binary with two provider
// accounts made through the API, an SMTP relay and a signed webhook, both
// on loopback (allowed by outbound_allow), and a stored template: a
// triggered customer gets the rendered email over a real SMTP
// conversation and the webhook call, signed.
func TestDeliveryThroughTheBinary(t *testing.T) {
	box, smtpAddr := startMailbox(t)
	var mu sync.Mutex
	var hooks []hookRequest
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify("hook-secret", r.Header, body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		hooks = append(hooks, hookRequest{path: r.URL.Path, key: r.Header.Get("Idempotency-Key"), body: body})
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)

	s := startServer(t, t.TempDir(), []string{"KALCIFER_OUTBOUND_ALLOW=127.0.0.0/8"})
	host, port, _ := net.SplitHostPort(smtpAddr)
	create := func(path, body string) map[string]any {
		t.Helper()
		var out map[string]any
		if code := s.call(t, http.MethodPost, path, s.key, body, &out); code != http.StatusCreated {
			t.Fatalf("POST %s: %d", path, code)
		}
		return out
	}
	create("/providers", fmt.Sprintf(`{"name": "relay", "kind": "smtp", "default_for": ["email"],
		"config": {"host": %q, "port": %s, "tls": "none", "from": "Shop <shop@example.com>"}}`, host, port))
	hookAccount := create("/providers", `{"name": "hooks", "kind": "webhook", "config": {"signing_secret": "hook-secret"}}`)
	if raw, _ := json.Marshal(hookAccount); strings.Contains(string(raw), "hook-secret") {
		t.Fatalf("the API returned a credential: %s", raw)
	}
	tpl := create("/templates", `{"name": "welcome", "channel": "email",
		"content": {"subject": "Welcome, {{ customer.name }}", "html": "<p>Your code is {{ context.entry.properties.code }}</p>", "text": "Code {{ context.entry.properties.code }}"}}`)

	journey := fmt.Sprintf(`{"name": "welcome", "graph": {
	 "nodes": [{"id": "in", "type": "event_entry", "config": {"event_type": "signed_up"}},
	  {"id": "mail", "type": "send_email", "config": {"template_id": %q}},
	  {"id": "hook", "type": "call_webhook", "config": {"url": "%s/crm/{{ customer.external_id }}", "body": {"email": "{{ customer.email }}"}}}],
	 "edges": [{"id": "e1", "source": "in", "target": "mail"}, {"id": "e2", "source": "mail", "target": "hook"}]}}`, tpl["id"], receiver.URL)
	createAndPublish(t, s, s.key, journey)
	if code := s.call(t, http.MethodPut, "/customers/ada", s.key, `{"email": "ada@example.com", "name": "Ada"}`, nil); code != http.StatusCreated {
		t.Fatalf("create customer: %d", code)
	}
	if code := s.call(t, http.MethodPost, "/events", s.key, `{"customer_id": "ada", "type": "signed_up", "properties": {"code": "X-42"}}`, nil); code != http.StatusAccepted {
		t.Fatalf("event: %d", code)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		sent := listAll(t, s, s.key, "/deliveries?status=sent")
		if len(sent) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: %v\n%s", listAll(t, s, s.key, "/deliveries"), s.stderr)
		}
		time.Sleep(50 * time.Millisecond) // polling a real process that runs on real time
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	if len(box.messages) != 1 || box.rcpts[0] != "ada@example.com" {
		t.Fatalf("mailbox: %d messages to %v", len(box.messages), box.rcpts)
	}
	msg := box.messages[0]
	if got := msg.Header.Get("Subject"); got != "Welcome, Ada" {
		t.Errorf("subject %q", got)
	}
	if from := msg.Header.Get("From"); !strings.Contains(from, "shop@example.com") {
		t.Errorf("from %q", from)
	}
	if body, _ := io.ReadAll(msg.Body); !strings.Contains(string(body), "Your code is X-42") {
		t.Errorf("body:\n%s", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooks) != 1 || hooks[0].path != "/crm/ada" || string(hooks[0].body) != `{"email":"ada@example.com"}` || hooks[0].key == "" {
		t.Fatalf("webhook calls %+v", hooks)
	}
}
