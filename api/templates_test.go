package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

type templateJSON struct {
	ID        string         `json:"id"`
	TenantID  string         `json:"tenant_id"`
	Version   int            `json:"version"`
	Name      string         `json:"name"`
	Channel   string         `json:"channel"`
	Content   map[string]any `json:"content"`
	CreatedAt time.Time      `json:"created_at"`
}

type templateList struct {
	Data []templateJSON `json:"data"`
}

func welcomeEmail() map[string]any {
	return map[string]any{"name": "Welcome", "channel": "email", "content": map[string]any{
		"subject": "Hi {{ customer.first_name }}",
		"html":    "<p>{{ event.properties.plan }} / {{ context.y }}</p>",
		"text":    "Name: {{ customer.name }}",
		"from":    "Acme <hello@acme.test>",
	}}
}

func TestTemplateCRUD(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		v1 := ok[templateJSON](e.do("POST", "/templates", welcomeEmail()), http.StatusCreated)
		if !strings.HasPrefix(v1.ID, "tpl_") || v1.TenantID != e.tenant.ID || v1.Version != 1 || v1.Name != "Welcome" ||
			v1.Channel != "email" || v1.Content["subject"] != "Hi {{ customer.first_name }}" || !v1.CreatedAt.Equal(start) {
			t.Fatalf("created %+v", v1)
		}
		if _, ok := v1.Content["body"]; ok {
			t.Fatalf("content stored with empty fields: %+v", v1.Content)
		}
		sms := ok[templateJSON](e.do("POST", "/templates", map[string]any{"name": " Reminder ", "channel": "sms",
			"content": map[string]any{"body": "See you {{ customer.first_name }}"}}), http.StatusCreated)
		if sms.Name != "Reminder" {
			t.Fatalf("name not trimmed: %q", sms.Name)
		}

		e.clock.Advance(time.Minute)
		v2 := ok[templateJSON](e.do("PUT", "/templates/"+v1.ID, map[string]any{"name": "Welcome 2",
			"content": map[string]any{"subject": "Hello", "text": "plain"}}), http.StatusOK)
		if v2.ID != v1.ID || v2.Version != 2 || v2.Channel != "email" || v2.Name != "Welcome 2" || v2.Content["subject"] != "Hello" ||
			v2.Content["html"] != nil {
			t.Fatalf("version 2 %+v", v2)
		}
		if got := ok[templateJSON](e.do("GET", "/templates/"+v1.ID, nil), http.StatusOK); got.Version != 2 {
			t.Fatalf("latest is version %d", got.Version)
		}
		if got := ok[templateJSON](e.do("GET", "/templates/"+v1.ID+"/versions/1", nil), http.StatusOK); got.Version != 1 ||
			got.Content["html"] != v1.Content["html"] || got.Name != "Welcome" {
			t.Fatalf("version 1 changed: %+v", got)
		}
		versions := ok[templateList](e.do("GET", "/templates/"+v1.ID+"/versions", nil), http.StatusOK)
		if len(versions.Data) != 2 || versions.Data[0].Version != 1 || versions.Data[1].Version != 2 {
			t.Fatalf("versions %+v", versions.Data)
		}
		e.do("GET", "/templates/"+v1.ID+"/versions/3", nil).fails(http.StatusNotFound, "version_not_found")
		e.do("GET", "/templates/"+v1.ID+"/versions/0", nil).fails(http.StatusBadRequest, "invalid_version")
		e.do("GET", "/templates/tpl_nope/versions/1", nil).fails(http.StatusNotFound, "template_not_found")
		e.do("GET", "/templates/tpl_nope/versions", nil).fails(http.StatusNotFound, "template_not_found")

		for _, tc := range []struct {
			query string
			want  []string
		}{
			{"", slices.Sorted(slices.Values([]string{v1.ID, sms.ID}))},
			{"?channel=email", []string{v1.ID}},
			{"?channel=sms", []string{sms.ID}},
			{"?channel=push", []string{}},
		} {
			got := ok[templateList](e.do("GET", "/templates"+tc.query, nil), http.StatusOK)
			ids := []string{}
			for _, x := range got.Data {
				ids = append(ids, x.ID)
				if x.ID == v1.ID && x.Version != 2 {
					t.Errorf("list shows version %d, not the latest", x.Version)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("/templates%s: %v, want %v", tc.query, ids, tc.want)
			}
		}
		e.do("GET", "/templates?channel=webhook", nil).fails(http.StatusBadRequest, "invalid_parameter")
		e.do("PUT", "/templates/"+v1.ID, map[string]any{"name": "x", "channel": "sms", "content": map[string]any{"body": "b"}}).
			fails(http.StatusBadRequest, "unknown_field")
		e.do("PUT", "/templates/"+v1.ID, map[string]any{"name": "x", "content": map[string]any{"body": "b"}}).
			fails(http.StatusUnprocessableEntity, "invalid_template")
		e.do("PUT", "/templates/tpl_nope", map[string]any{"name": "x", "content": map[string]any{"body": "b"}}).
			fails(http.StatusNotFound, "template_not_found")

		// Another tenant sees none of it.
		_, otherKey := e.newTenant("other")
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/templates/" + v1.ID, nil},
			{"GET", "/templates/" + v1.ID + "/versions", nil},
			{"GET", "/templates/" + v1.ID + "/versions/1", nil},
			{"PUT", "/templates/" + v1.ID, map[string]any{"name": "x", "content": map[string]any{"subject": "s", "text": "t"}}},
			{"POST", "/templates/" + v1.ID + "/preview", map[string]any{"customer_id": "ada"}},
			{"DELETE", "/templates/" + v1.ID, nil},
		} {
			e.as(otherKey, r.method, r.path, r.body).fails(http.StatusNotFound, "template_not_found")
		}
		if got := ok[templateList](e.as(otherKey, "GET", "/templates", nil), http.StatusOK); got.Data == nil || len(got.Data) != 0 {
			t.Fatalf("another tenant lists %+v", got.Data)
		}

		e.do("DELETE", "/templates/"+v1.ID, nil).expect(http.StatusNoContent)
		e.do("GET", "/templates/"+v1.ID, nil).fails(http.StatusNotFound, "template_not_found")
		e.do("GET", "/templates/"+v1.ID+"/versions/1", nil).fails(http.StatusNotFound, "template_not_found")
		e.do("DELETE", "/templates/"+v1.ID, nil).fails(http.StatusNotFound, "template_not_found")
	})
}

// problemFields lists the fields an invalid_template error names.
func problemFields(t testing.TB, a apiError) []string {
	t.Helper()
	var d struct {
		Problems []struct {
			Code    string `json:"code"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"problems"`
	}
	if err := json.Unmarshal(a.Error.Details, &d); err != nil {
		t.Fatalf("details %s: %v", a.Error.Details, err)
	}
	fields := []string{}
	for _, p := range d.Problems {
		if p.Code == "" || p.Message == "" {
			t.Errorf("problem %+v lacks a code or message", p)
		}
		fields = append(fields, p.Code+" "+p.Field)
	}
	slices.Sort(fields)
	return fields
}

func TestTemplateValidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		template := func(channel string, content map[string]any) map[string]any {
			return map[string]any{"name": "t", "channel": channel, "content": content}
		}
		for _, tc := range []struct {
			name    string
			channel string
			content map[string]any
			want    []string
		}{
			{"empty email", "email", map[string]any{}, []string{"missing_field /content/html", "missing_field /content/subject"}},
			{"email problems at once", "email", map[string]any{"subject": "{% if x %}", "text": "t", "from": "not an address",
				"reply_to": "also not", "body": "b"}, []string{
				"invalid_address /content/from", "invalid_address /content/reply_to", "invalid_liquid /content/subject",
				"not_for_channel /content/body"}},
			{"sms without body", "sms", map[string]any{"subject": "s"}, []string{"missing_field /content/body", "not_for_channel /content/subject"}},
			{"sms bad liquid", "sms", map[string]any{"body": "{% for %}"}, []string{"invalid_liquid /content/body"}},
			{"empty push", "push", map[string]any{"data": map[string]string{"a/b": "{% if %}"}}, []string{
				"invalid_liquid /content/data/a~1b", "missing_field /content/body"}},
			{"whatsapp needs a body or template", "whatsapp", map[string]any{"language": "en", "params": []string{"{% if %}"}}, []string{
				"invalid_liquid /content/params/0", "missing_field /content/body", "not_for_channel /content/language",
				"not_for_channel /content/params"}},
			{"whatsapp body and template", "whatsapp", map[string]any{"body": "b", "template": "welcome"}, []string{"not_for_channel /content/body"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				got := e.do("POST", "/templates", template(tc.channel, tc.content)).fails(http.StatusUnprocessableEntity, "invalid_template")
				if fields := problemFields(t, got); !slices.Equal(fields, tc.want) {
					t.Fatalf("problems %v, want %v", fields, tc.want)
				}
				// Unsaved content is checked the same way before a preview.
				body := map[string]any{"channel": tc.channel, "content": tc.content, "customer_id": "ada"}
				if fields := problemFields(t, e.do("POST", "/templates/preview", body).fails(http.StatusUnprocessableEntity, "invalid_template")); !slices.Equal(fields, tc.want) {
					t.Fatalf("preview problems %v, want %v", fields, tc.want)
				}
			})
		}
		for _, content := range []map[string]any{
			{"subject": "s", "html": "<p>h</p>", "from": "{{ customer.name }} <hello@acme.test>", "reply_to": "help@acme.test"},
			{"subject": "s", "text": "{{ 'x' | upcase }}"},
		} {
			ok[templateJSON](e.do("POST", "/templates", template("email", content)), http.StatusCreated)
		}
		ok[templateJSON](e.do("POST", "/templates", template("push", map[string]any{"title": "t", "data": map[string]string{"k": "{{ event.type }}"}})), http.StatusCreated)
		ok[templateJSON](e.do("POST", "/templates", template("whatsapp", map[string]any{"template": "welcome", "language": "fr", "params": []string{"{{ customer.name }}"}})), http.StatusCreated)

		for _, tc := range []struct {
			name, body  string
			status      int
			code, field string
		}{
			{"missing channel", `{"name":"t","content":{"body":"b"}}`, 400, "missing_field", "channel"},
			{"webhook channel", `{"name":"t","channel":"webhook","content":{"body":"b"}}`, 400, "invalid_field", "channel"},
			{"missing content", `{"name":"t","channel":"sms"}`, 400, "missing_field", "content"},
			{"null content", `{"name":"t","channel":"sms","content":null}`, 400, "missing_field", "content"},
			{"content not an object", `{"name":"t","channel":"sms","content":"hi"}`, 400, "invalid_field", "content"},
			{"unknown content field", `{"name":"t","channel":"sms","content":{"body":"b","bdy":"x"}}`, 400, "unknown_field", "content.bdy"},
			{"content field of a wrong type", `{"name":"t","channel":"sms","content":{"body":1}}`, 400, "invalid_field", "content.body"},
			{"missing name", `{"channel":"sms","content":{"body":"b"}}`, 400, "missing_field", "name"},
			{"long name", `{"name":"` + strings.Repeat("n", 201) + `","channel":"sms","content":{"body":"b"}}`, 400, "invalid_field", "name"},
			{"unknown field", `{"name":"t","channel":"sms","content":{"body":"b"},"version":2}`, 400, "unknown_field", "version"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				if got := e.do("POST", "/templates", tc.body).fails(tc.status, tc.code); got.field() != tc.field {
					t.Fatalf("error names %q, want %q", got.field(), tc.field)
				}
			})
		}
		if got := ok[templateList](e.do("GET", "/templates", nil), http.StatusOK); len(got.Data) != 4 {
			t.Fatalf("%d templates stored, want the 4 valid ones", len(got.Data))
		}
	})
}

type previewJSON struct {
	Channel string `json:"channel"`
	Email   *struct {
		From, ReplyTo, To, Subject, HTML, Text string
	} `json:"email"`
	SMS *struct {
		From, To, Body string
	} `json:"sms"`
	Push *struct {
		Tokens      []string
		Title, Body string
		Data        map[string]string
	} `json:"push"`
	WhatsApp *struct {
		To, Body, Template, Language string
		Params                       []string
	} `json:"whatsapp"`
}

func TestTemplatePreview(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.upsert("ada", map[string]any{"name": "Ada Lovelace", "email": "ada@example.test", "phone": "+15550100", "push_tokens": []string{"tok"}}, http.StatusCreated)
		e.upsert("bob", map[string]any{"name": "Bob"}, http.StatusCreated)
		tpl := ok[templateJSON](e.do("POST", "/templates", welcomeEmail()), http.StatusCreated)
		ok[templateJSON](e.do("PUT", "/templates/"+tpl.ID, map[string]any{"name": "Welcome", "content": map[string]any{
			"subject": "Version 2 for {{ customer.external_id }}", "text": "t"}}), http.StatusOK)
		path := "/templates/" + tpl.ID + "/preview"

		v1 := map[string]any{"customer_id": "ada", "version": 1, "event": map[string]any{"type": "upgraded", "properties": map[string]any{"plan": "pro"}},
			"context": map[string]any{"y": "why"}}
		r := e.do("POST", path, v1)
		got := ok[previewJSON](r, http.StatusOK)
		if got.Channel != "email" || got.Email == nil || got.SMS != nil || got.Email.Subject != "Hi Ada" || got.Email.HTML != "<p>pro / why</p>" ||
			got.Email.Text != "Name: Ada Lovelace" || got.Email.To != "ada@example.test" || got.Email.From != "Acme <hello@acme.test>" {
			t.Fatalf("preview %s", r.body)
		}
		var raw struct{ Email map[string]any }
		if err := json.Unmarshal(r.body, &raw); err != nil || raw.Email["reply_to"] != "" || len(raw.Email) != 6 {
			t.Fatalf("preview fields are not snake_case: %s", r.body)
		}
		latest := ok[previewJSON](e.do("POST", path, map[string]any{"customer_id": "ada"}), http.StatusOK)
		if latest.Email.Subject != "Version 2 for ada" || latest.Email.HTML != "" {
			t.Fatalf("latest preview %+v", latest.Email)
		}
		// Missing variables render empty, as they would when sent.
		if bare := ok[previewJSON](e.do("POST", path, map[string]any{"customer_id": "ada", "version": 1}), http.StatusOK); bare.Email.HTML != "<p> / </p>" {
			t.Fatalf("preview without event or context %+v", bare.Email)
		}

		e.do("POST", path, map[string]any{"customer_id": "nobody"}).fails(http.StatusNotFound, "customer_not_found")
		if got := e.do("POST", path, map[string]any{"customer_id": "bob"}).fails(http.StatusUnprocessableEntity, "no_address"); !strings.Contains(got.Error.Message, "email") {
			t.Fatalf("no_address message %q", got.Error.Message)
		}
		e.do("POST", path, map[string]any{"customer_id": "ada", "version": 3}).fails(http.StatusNotFound, "version_not_found")
		e.do("POST", path, map[string]any{"customer_id": "ada", "version": 0}).fails(http.StatusBadRequest, "invalid_field")
		e.do("POST", path, map[string]any{}).fails(http.StatusBadRequest, "missing_field")
		e.do("POST", path, map[string]any{"customer_id": "ada", "event": map[string]any{"name": "x"}}).fails(http.StatusBadRequest, "unknown_field")
		e.do("POST", "/templates/tpl_nope/preview", map[string]any{"customer_id": "ada"}).fails(http.StatusNotFound, "template_not_found")

		// A filter that does not exist parses, and fails when rendered.
		broken := ok[templateJSON](e.do("POST", "/templates", map[string]any{"name": "b", "channel": "sms",
			"content": map[string]any{"body": "{{ customer.name | shout }}"}}), http.StatusCreated)
		if got := e.do("POST", "/templates/"+broken.ID+"/preview", map[string]any{"customer_id": "ada"}).fails(http.StatusUnprocessableEntity, "template_error"); !strings.Contains(got.Error.Message, "shout") {
			t.Fatalf("template_error message %q", got.Error.Message)
		}

		// Unsaved content, on each channel.
		unsaved := func(channel string, content map[string]any) previewJSON {
			t.Helper()
			return ok[previewJSON](e.do("POST", "/templates/preview", map[string]any{"channel": channel, "content": content, "customer_id": "ada",
				"event": map[string]any{"type": "t", "properties": map[string]any{"x": 1}}, "context": map[string]any{"y": "z"}}), http.StatusOK)
		}
		if got := unsaved("sms", map[string]any{"body": "Hi {{ customer.name }}, {{ event.properties.x }}{{ context.y }}"}); got.Channel != "sms" ||
			got.SMS == nil || got.SMS.Body != "Hi Ada Lovelace, 1z" || got.SMS.To != "+15550100" {
			t.Fatalf("sms preview %+v", got.SMS)
		}
		if got := unsaved("push", map[string]any{"title": "{{ event.type }}", "data": map[string]string{"k": "{{ context.y }}"}}); got.Push == nil ||
			got.Push.Title != "t" || got.Push.Data["k"] != "z" || !slices.Equal(got.Push.Tokens, []string{"tok"}) {
			t.Fatalf("push preview %+v", got.Push)
		}
		if got := unsaved("whatsapp", map[string]any{"template": "welcome", "params": []string{"{{ customer.first_name }}"}}); got.WhatsApp == nil ||
			got.WhatsApp.Template != "welcome" || got.WhatsApp.Language != "en" || !slices.Equal(got.WhatsApp.Params, []string{"Ada"}) {
			t.Fatalf("whatsapp preview %+v", got.WhatsApp)
		}
		e.do("POST", "/templates/preview", map[string]any{"channel": "sms", "content": map[string]any{"body": "b"}, "customer_id": "bob"}).
			fails(http.StatusUnprocessableEntity, "no_address")
		e.do("POST", "/templates/preview", map[string]any{"channel": "sms", "content": map[string]any{"body": "b"}}).
			fails(http.StatusBadRequest, "missing_field")
		if got := ok[templateList](e.do("GET", "/templates", nil), http.StatusOK); len(got.Data) != 2 {
			t.Fatalf("a preview stored a template: %+v", got.Data)
		}
	})
}
