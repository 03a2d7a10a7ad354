package compose

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/store"
)

func delivery(channel, config string) store.Delivery {
	payload := `{"config": ` + config + `, "event": {"type": "order_placed", "properties": {"total": 42.5, "items": ["a", "b"]}},
		"context": {"coupon": "SAVE10"}}`
	return store.Delivery{ID: "dlv_1", TenantID: "ten_1", Key: "ins_1/mail/1", JourneyID: "jrn_1", InstanceID: "ins_1",
		NodeID: "mail", Channel: channel, Payload: json.RawMessage(payload)}
}

var alice = store.Customer{ID: "cus_1", ExternalID: "u-1", Email: "alice@example.com", Phone: "+15550100", Name: "Alice Liddell",
	Timezone: "Europe/London", Properties: map[string]any{"plan": "pro"}, PushTokens: []string{"tok-1", "tok-2"}}

func TestEmailInline(t *testing.T) {
	m, err := NewRenderer().Message(Input{Delivery: delivery("email",
		`{"subject": "Hi {{ customer.first_name }}, {{ event.properties.total }}", "body": "<p>{{ profile.properties.plan | upcase }} {{ context.coupon }}</p>", "from": "Shop <shop@example.com>"}`),
		Customer: alice})
	if err != nil {
		t.Fatal(err)
	}
	want := channels.EmailMessage{To: "alice@example.com", From: "Shop <shop@example.com>", Subject: "Hi Alice, 42.5", HTML: "<p>PRO SAVE10</p>"}
	if *m.Email != want || m.Key != "ins_1/mail/1" || m.DeliveryID != "dlv_1" || m.Channel != "email" {
		t.Fatalf("got %+v %+v", m, m.Email)
	}
}

func TestTemplateWins(t *testing.T) {
	tpl := &store.Template{ID: "tpl_1", Channel: "email",
		Content: json.RawMessage(`{"subject": "T {{ customer.name }}", "html": "<b>{% for i in event.properties.items %}{{ i }}{% endfor %}</b>", "text": "plain"}`)}
	m, err := NewRenderer().Message(Input{Delivery: delivery("email", `{"template_id": "tpl_1", "subject": "ignored"}`), Customer: alice, Template: tpl})
	if err != nil {
		t.Fatal(err)
	}
	if m.Email.Subject != "T Alice Liddell" || m.Email.HTML != "<b>ab</b>" || m.Email.Text != "plain" {
		t.Fatalf("got %+v", m.Email)
	}
}

func TestChannels(t *testing.T) {
	r := NewRenderer()
	sms, err := r.Message(Input{Delivery: delivery("sms", `{"body": "Code {{ context.coupon }}"}`), Customer: alice})
	if err != nil || *sms.SMS != (channels.TextMessage{To: "+15550100", Body: "Code SAVE10"}) {
		t.Fatalf("sms: %+v %v", sms.SMS, err)
	}
	wa, err := r.Message(Input{Delivery: delivery("whatsapp", `{"template_id": "t"}`), Customer: alice,
		Template: &store.Template{Content: json.RawMessage(`{"template": "order_update", "language": "pt_BR", "params": ["{{ customer.first_name }}", "{{ event.properties.total }}"]}`)}})
	if err != nil || wa.WhatsApp.Template != "order_update" || wa.WhatsApp.Language != "pt_BR" || strings.Join(wa.WhatsApp.Params, ",") != "Alice,42.5" {
		t.Fatalf("whatsapp: %+v %v", wa.WhatsApp, err)
	}
	push, err := r.Message(Input{Delivery: delivery("push", `{"title": "Hey {{ customer.first_name }}", "body": "b", "data": {"url": "/o/{{ event.type }}"}}`), Customer: alice})
	if err != nil || push.Push.Title != "Hey Alice" || push.Push.Data["url"] != "/o/order_placed" || len(push.Push.Tokens) != 2 {
		t.Fatalf("push: %+v %v", push.Push, err)
	}
}

func TestWebhook(t *testing.T) {
	r := NewRenderer()
	m, err := r.Message(Input{Delivery: delivery("webhook",
		`{"url": "https://hooks.example.com/c/{{ customer.external_id }}?plan={{ customer.properties.plan }}", "method": "PUT",
		  "headers": {"X-Plan": "{{ customer.properties.plan }}"}, "body": {"who": "{{ customer.email }}", "n": [1, "{{ context.coupon }}"]}, "timeout": "5s"}`),
		Customer: alice})
	if err != nil {
		t.Fatal(err)
	}
	w := m.Webhook
	if w.URL != "https://hooks.example.com/c/u-1?plan=pro" || w.Method != "PUT" || w.Headers["X-Plan"] != "pro" || w.Timeout.Seconds() != 5 {
		t.Fatalf("got %+v", w)
	}
	if string(w.Body) != `{"n":[1,"SAVE10"],"who":"alice@example.com"}` {
		t.Fatalf("body %s", w.Body)
	}
	def, err := r.Message(Input{Delivery: delivery("webhook", `{"url": "https://hooks.example.com/x"}`), Customer: alice})
	if err != nil || def.Webhook.Method != "POST" || !strings.Contains(string(def.Webhook.Body), `"external_id":"u-1"`) ||
		!strings.Contains(string(def.Webhook.Body), `"order_placed"`) {
		t.Fatalf("default body: %s %v", def.Webhook.Body, err)
	}
	// Customer data cannot move the call to another host.
	evil := alice
	evil.ExternalID = "x@169.254.169.254"
	_, err = r.Message(Input{Delivery: delivery("webhook", `{"url": "https://{{ customer.external_id }}.example.com/"}`), Customer: evil})
	wantCode(t, err, CodeTemplateError)
}

func TestSkipsAndErrors(t *testing.T) {
	r := NewRenderer()
	nobody := store.Customer{ID: "cus_2"}
	for _, ch := range []string{"email", "sms", "whatsapp", "push"} {
		_, err := r.Message(Input{Delivery: delivery(ch, `{"body": "x", "subject": "x", "title": "x"}`), Customer: nobody})
		var skip *Skip
		if !errors.As(err, &skip) || skip.Code != CodeNoAddress {
			t.Errorf("%s without an address: %v", ch, err)
		}
	}
	for name, config := range map[string]string{
		"syntax":   `{"subject": "{% if customer.name %}open", "body": "x"}`,
		"filter":   `{"subject": "{{ customer.name | no_such_filter }}", "body": "x"}`,
		"include":  `{"subject": "s", "body": "{% include '/etc/passwd' %}"}`,
		"too long": `{"subject": "s", "body": "{% for i in (1..2000000) %}xxxxxxxxxx{% endfor %}"}`,
	} {
		_, err := r.Message(Input{Delivery: delivery("email", config), Customer: alice})
		wantCode(t, err, CodeTemplateError)
		if name == "include" && !strings.Contains(err.Error(), "include") {
			t.Errorf("include: %v", err)
		}
	}
	_, err := r.Message(Input{Delivery: delivery("fax", `{}`), Customer: alice})
	wantCode(t, err, "unknown_channel")
	if err := r.Check("{% if %}"); err == nil {
		t.Error("Check accepted a broken tag")
	}
	if err := r.Check("Hello {{ customer.name }}"); err != nil {
		t.Error(err)
	}
}

// TestLimits: what a template may build and how long it may run are
// bounded, so that one template cannot starve the process.
func TestLimits(t *testing.T) {
	r := NewRenderer()
	vars := map[string]any{"n": 1e9}
	for name, source := range map[string]string{
		"literal range":  "{% for i in (1..20000000) %}{% endfor %}",
		"variable range": "{% for i in (1..n) %}{% endfor %}",
		"replace":        "{% assign s = 'aaaa' %}" + strings.Repeat("{% assign s = s | replace: 'a', 'aaaaaaaa' %}", 10) + "{{ s | size }}",
		"concat":         "{% assign a = (1..6000) %}{% assign b = a | concat: a %}",
	} {
		if _, err := r.Render(source, vars); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
	doubled, err := r.Render("{% assign s = 'x' %}"+strings.Repeat("{% assign s = s | append: s %}", 30)+"{{ s | size }}", vars)
	if err == nil {
		t.Fatalf("2^30 bytes built: %s", doubled)
	}
	if out, err := r.Render("{% for i in (1..3) %}{{ i }}{% endfor %}", vars); err != nil || out != "123" {
		t.Fatalf("a small loop: %q %v", out, err)
	}
	slow := NewRenderer()
	slow.budget = 20 * time.Millisecond
	nested := "{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}"
	if _, err := slow.Render(nested, vars); !errors.Is(err, errTooSlow) {
		t.Fatalf("a render past its budget: %v", err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *channels.Error
	if !errors.As(err, &e) || e.Code != code || e.Retryable {
		t.Fatalf("got %v, want a permanent %s", err, code)
	}
}

func FuzzRender(f *testing.F) {
	r := NewRenderer()
	for _, s := range []string{"{{ customer.name }}", "{% for x in event.properties.items %}{{x}}{% endfor %}", "{{", "{% if a %}", "{{ 1 | divided_by: 0 }}"} {
		f.Add(s)
	}
	vars := bindings(alice, Payload{Event: map[string]any{"properties": map[string]any{"items": []any{1, 2}}}}, store.Delivery{})
	f.Fuzz(func(t *testing.T, source string) {
		out, err := r.Render(source, vars)
		if err == nil && len(out) > MaxOutput {
			t.Fatalf("output of %d bytes", len(out))
		}
	})
}
