package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/compose"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

// templateChannels are the channels templates are written for; webhooks
// take their request from the node.
var templateChannels = []string{channels.Email, channels.SMS, channels.WhatsApp, channels.Push}

// Codes of the problems of a template's content.
const (
	problemMissing       = "missing_field"
	problemNotForChannel = "not_for_channel"
	problemLiquid        = "invalid_liquid"
	problemAddress       = "invalid_address"
)

// contentFields are the fields each channel's templates take.
var contentFields = map[string][]string{
	channels.Email:    {"subject", "html", "text", "from", "reply_to"},
	channels.SMS:      {"body", "from"},
	channels.WhatsApp: {"body", "from", "template", "language", "params"},
	channels.Push:     {"title", "body", "data"},
}

// contentOrder is every field of compose.Content, in the order problems
// are reported.
var contentOrder = []string{"subject", "html", "text", "body", "title", "from", "reply_to", "data", "template", "language", "params"}

// decodeField decodes the body field name, raw, strictly into dst, naming
// the fields inside it in errors as the body's own decoding does.
func decodeField(name string, raw json.RawMessage, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := name
		if typeErr.Field != "" {
			field += "." + typeErr.Field
		}
		e := apiError(http.StatusBadRequest, "invalid_field",
			fmt.Sprintf("field %q must be %s, not %s", field, jsonTypeName(typeErr.Type), typeErr.Value))
		e.Details = map[string]string{"field": field}
		return e
	}
	if unknown, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unquoted, uerr := strconv.Unquote(unknown); uerr == nil {
			unknown = unquoted
		}
		field := name + "." + unknown
		e := apiError(http.StatusBadRequest, "unknown_field", fmt.Sprintf("unknown field %q", field))
		e.Details = map[string]string{"field": field}
		return e
	}
	return invalidField(name, "is not valid: "+strings.TrimPrefix(err.Error(), "json: "))
}

// contentField is a template's content as a request sends it: an object of
// the fields compose.Content knows, decoded strictly.
type contentField struct {
	content compose.Content
}

func (f *contentField) decode(raw json.RawMessage) error {
	if !present(raw) {
		return missingField("content")
	}
	return decodeField("content", raw, &f.content)
}

// encoded is the stored form of the content: its known fields, empty ones left out.
func (f *contentField) encoded() (json.RawMessage, error) {
	data, err := json.Marshal(f.content)
	if err != nil {
		return nil, fmt.Errorf("encode template content: %w", err)
	}
	return data, nil
}

// checkContent reports every problem of content for channel at once: the
// fields the channel requires or does not use, Liquid that does not parse,
// and addresses that are not addresses.
func (s *Server) checkContent(channel string, content compose.Content) []journey.Problem {
	var problems []journey.Problem
	add := func(code, field, format string, args ...any) {
		problems = append(problems, journey.Problem{Code: code, Field: "/content/" + field,
			Message: "content/" + field + ": " + fmt.Sprintf(format, args...)})
	}
	c := content
	strs := map[string]string{"subject": c.Subject, "html": c.HTML, "text": c.Text, "body": c.Body, "title": c.Title,
		"from": c.From, "reply_to": c.ReplyTo, "template": c.Template, "language": c.Language}
	set := func(name string) bool {
		switch name {
		case "data":
			return len(c.Data) > 0
		case "params":
			return len(c.Params) > 0
		}
		return strs[name] != ""
	}
	allowed := contentFields[channel]
	for _, name := range contentOrder {
		if set(name) && !slices.Contains(allowed, name) {
			add(problemNotForChannel, name, "%s templates do not use %s; they take %s", channel, name, strings.Join(allowed, ", "))
		}
	}
	switch channel {
	case channels.Email:
		if !set("subject") {
			add(problemMissing, "subject", "is required")
		}
		if !set("html") && !set("text") {
			add(problemMissing, "html", "an email needs html or text, or both")
		}
		for _, name := range []string{"from", "reply_to"} {
			if v := strs[name]; v != "" && !hasLiquid(v) {
				if _, err := mail.ParseAddress(v); err != nil {
					add(problemAddress, name, "must be an email address such as \"Acme <hello@acme.com>\": %v", err)
				}
			}
		}
	case channels.SMS:
		if !set("body") {
			add(problemMissing, "body", "is required")
		}
	case channels.Push:
		if !set("title") && !set("body") {
			add(problemMissing, "body", "a push notification needs a title or a body, or both")
		}
	case channels.WhatsApp:
		switch {
		case !set("body") && !set("template"):
			add(problemMissing, "body", "a WhatsApp message needs a body, or a template with its language and params")
		case set("body") && set("template"):
			add(problemNotForChannel, "body", "is not sent with a template; send a body or a template")
		}
		if !set("template") {
			for _, name := range []string{"language", "params"} {
				if set(name) {
					add(problemNotForChannel, name, "is only used with a template")
				}
			}
		}
	}
	for _, name := range contentOrder {
		if v := strs[name]; v != "" {
			if err := s.renderer.Check(v); err != nil {
				add(problemLiquid, name, "%v", err)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Data)) {
		if err := s.renderer.Check(c.Data[k]); err != nil {
			add(problemLiquid, "data/"+pointerEscape(k), "%v", err)
		}
	}
	for i, p := range c.Params {
		if err := s.renderer.Check(p); err != nil {
			add(problemLiquid, fmt.Sprintf("params/%d", i), "%v", err)
		}
	}
	return problems
}

// hasLiquid reports whether source holds Liquid, and so can only be
// checked once rendered.
func hasLiquid(source string) bool {
	return strings.Contains(source, "{{") || strings.Contains(source, "{%")
}

// pointerEscape escapes a key for a JSON pointer (RFC 6901).
func pointerEscape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// checkedContent is content as stored, once it passed every check; a
// content with problems answers 422 invalid_template with all of them.
func (s *Server) checkedContent(channel string, f *contentField) (json.RawMessage, error) {
	if problems := s.checkContent(channel, f.content); len(problems) > 0 {
		e := apiError(http.StatusUnprocessableEntity, "invalid_template",
			fmt.Sprintf("the template has %d problem(s)", len(problems)))
		e.Details = map[string]any{"problems": problems}
		return nil, e
	}
	return f.encoded()
}

// checkChannel checks a required channel of a template.
func checkChannel(value *string) error {
	switch {
	case value == nil:
		return missingField("channel")
	case !slices.Contains(templateChannels, *value):
		return invalidField("channel", fmt.Sprintf("must be one of %v", templateChannels))
	}
	return nil
}

type createTemplateRequest struct {
	Name    *string         `json:"name"`
	Channel *string         `json:"channel"`
	Content json.RawMessage `json:"content"`
	parsed  contentField
}

func (r *createTemplateRequest) check() error {
	if err := requiredName(r.Name); err != nil {
		return err
	}
	if err := checkChannel(r.Channel); err != nil {
		return err
	}
	return r.parsed.decode(r.Content)
}

// requiredName checks a template's name, which every version has.
func requiredName(name *string) error {
	if name == nil {
		return missingField("name")
	}
	return checkName(name)
}

// updateTemplateRequest is a template's next version; its channel stays.
type updateTemplateRequest struct {
	Name    *string         `json:"name"`
	Content json.RawMessage `json:"content"`
	parsed  contentField
}

func (r *updateTemplateRequest) check() error {
	if err := requiredName(r.Name); err != nil {
		return err
	}
	return r.parsed.decode(r.Content)
}

func (s *Server) createTemplate(c echo.Context) error {
	var req createTemplateRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	content, err := s.checkedContent(*req.Channel, &req.parsed)
	if err != nil {
		return err
	}
	t, err := s.store.Templates().CreateTemplate(c.Request().Context(), store.Template{TenantID: tenantID(c), Name: *req.Name,
		Channel: *req.Channel, Content: content, CreatedAt: s.now()})
	if err != nil {
		return storeError(err, "template_not_found", "template")
	}
	return c.JSON(http.StatusCreated, t)
}

// listTemplates answers the latest version of each template, by id.
func (s *Server) listTemplates(c echo.Context) error {
	channel, err := oneOf(c, "channel", templateChannels)
	if err != nil {
		return err
	}
	ts, err := s.store.Templates().ListTemplates(c.Request().Context(), tenantID(c), channel)
	if err != nil {
		return storeError(err, "template_not_found", "templates")
	}
	return c.JSON(http.StatusOK, list[store.Template]{Data: nonNil(ts)})
}

// findTemplate fetches version n of the :id template (0 for the latest),
// telling a missing template from a missing version.
func (s *Server) findTemplate(c echo.Context, n int) (store.Template, error) {
	ctx := c.Request().Context()
	t, err := s.store.Templates().GetTemplate(ctx, tenantID(c), c.Param("id"), n)
	if err == nil {
		return t, nil
	}
	if errors.Is(err, store.ErrNotFound) && n != 0 {
		if _, lerr := s.store.Templates().GetTemplate(ctx, tenantID(c), c.Param("id"), 0); lerr != nil {
			return t, storeError(lerr, "template_not_found", "template")
		}
		return t, storeError(err, "version_not_found", "template version")
	}
	return t, storeError(err, "template_not_found", "template")
}

func (s *Server) getTemplate(c echo.Context) error {
	t, err := s.findTemplate(c, 0)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

// updateTemplate stores the body as the template's next version; versions
// already stored never change, and a delivery records the version it was
// rendered from (the latest when it was sent).
func (s *Server) updateTemplate(c echo.Context) error {
	var req updateTemplateRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	latest, err := s.findTemplate(c, 0)
	if err != nil {
		return err
	}
	content, err := s.checkedContent(latest.Channel, &req.parsed)
	if err != nil {
		return err
	}
	t, err := s.store.Templates().AddTemplateVersion(c.Request().Context(), store.Template{ID: latest.ID, TenantID: latest.TenantID,
		Name: *req.Name, Content: content, CreatedAt: s.now()})
	if err != nil {
		return storeError(err, "template_not_found", "template")
	}
	return c.JSON(http.StatusOK, t)
}

func (s *Server) deleteTemplate(c echo.Context) error {
	if err := s.store.Templates().DeleteTemplate(c.Request().Context(), tenantID(c), c.Param("id")); err != nil {
		return storeError(err, "template_not_found", "template")
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listTemplateVersions(c echo.Context) error {
	ts, err := s.store.Templates().ListTemplateVersions(c.Request().Context(), tenantID(c), c.Param("id"))
	if err != nil {
		return storeError(err, "template_not_found", "template")
	}
	return c.JSON(http.StatusOK, list[store.Template]{Data: nonNil(ts)})
}

func (s *Server) getTemplateVersion(c echo.Context) error {
	n, err := versionNumber(c, "version")
	if err != nil {
		return err
	}
	t, err := s.findTemplate(c, n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

// previewEvent is the event a preview renders with, as a journey's
// triggering event is seen by templates.
type previewEvent struct {
	Type       string         `json:"type"`
	Properties map[string]any `json:"properties"`
}

// templatePreviewRequest renders a stored template for a customer.
type templatePreviewRequest struct {
	CustomerID *string        `json:"customer_id"`
	Version    *int           `json:"version"`
	Event      *previewEvent  `json:"event"`
	Context    map[string]any `json:"context"`
}

func (r *templatePreviewRequest) check() error {
	if r.Version != nil && *r.Version < 1 {
		return invalidField("version", "must be a positive whole number")
	}
	return checkExternalID("customer_id", r.CustomerID)
}

// contentPreviewRequest renders content not saved yet for a customer. Its
// fields are not an embedded templatePreviewRequest because encoding/json
// would then name them by the embedded type in errors.
type contentPreviewRequest struct {
	Channel    *string         `json:"channel"`
	Content    json.RawMessage `json:"content"`
	CustomerID *string         `json:"customer_id"`
	Event      *previewEvent   `json:"event"`
	Context    map[string]any  `json:"context"`
	parsed     contentField
}

func (r *contentPreviewRequest) check() error {
	if err := checkChannel(r.Channel); err != nil {
		return err
	}
	if err := r.parsed.decode(r.Content); err != nil {
		return err
	}
	return checkExternalID("customer_id", r.CustomerID)
}

// Rendered messages, as a preview shows them.
type (
	emailPreview struct {
		From    string `json:"from"`
		ReplyTo string `json:"reply_to"`
		To      string `json:"to"`
		Subject string `json:"subject"`
		HTML    string `json:"html"`
		Text    string `json:"text"`
	}
	smsPreview struct {
		From string `json:"from"`
		To   string `json:"to"`
		Body string `json:"body"`
	}
	whatsAppPreview struct {
		From     string   `json:"from"`
		To       string   `json:"to"`
		Body     string   `json:"body"`
		Template string   `json:"template"`
		Language string   `json:"language"`
		Params   []string `json:"params"`
	}
	pushPreview struct {
		Tokens []string          `json:"tokens"`
		Title  string            `json:"title"`
		Body   string            `json:"body"`
		Data   map[string]string `json:"data"`
	}
)

// preview is a message rendered for a customer: the field of its channel is set.
type preview struct {
	Channel  string           `json:"channel"`
	Email    *emailPreview    `json:"email,omitempty"`
	SMS      *smsPreview      `json:"sms,omitempty"`
	WhatsApp *whatsAppPreview `json:"whatsapp,omitempty"`
	Push     *pushPreview     `json:"push,omitempty"`
}

func previewOf(m channels.Message) preview {
	p := preview{Channel: m.Channel}
	switch {
	case m.Email != nil:
		e := m.Email
		p.Email = &emailPreview{From: e.From, ReplyTo: e.ReplyTo, To: e.To, Subject: e.Subject, HTML: e.HTML, Text: e.Text}
	case m.SMS != nil:
		p.SMS = &smsPreview{From: m.SMS.From, To: m.SMS.To, Body: m.SMS.Body}
	case m.WhatsApp != nil:
		w := m.WhatsApp
		p.WhatsApp = &whatsAppPreview{From: w.From, To: w.To, Body: w.Body, Template: w.Template, Language: w.Language, Params: nonNil(w.Params)}
	case m.Push != nil:
		data := m.Push.Data
		if data == nil {
			data = map[string]string{}
		}
		p.Push = &pushPreview{Tokens: nonNil(m.Push.Tokens), Title: m.Push.Title, Body: m.Push.Body, Data: data}
	}
	return p
}

// render renders t for the customer with the tenant's external id
// externalID, as the outbox would with the event and context given.
func (s *Server) render(c echo.Context, t store.Template, externalID string, event *previewEvent, vars map[string]any) error {
	cu, err := s.store.Customers().GetCustomerByExternalID(c.Request().Context(), tenantID(c), externalID)
	if err != nil {
		return storeError(err, "customer_not_found", "customer")
	}
	var ev map[string]any
	if event != nil {
		ev = map[string]any{"type": event.Type, "properties": orEmptyMap(event.Properties), "timestamp": s.now()}
	}
	payload, err := json.Marshal(map[string]any{"config": map[string]any{}, "event": ev, "context": orEmptyMap(vars)})
	if err != nil {
		return fmt.Errorf("encode preview payload: %w", err)
	}
	d := store.Delivery{ID: "preview", TenantID: tenantID(c), CustomerID: cu.ID, Channel: t.Channel, Payload: payload}
	m, err := s.renderer.Message(compose.Input{Delivery: d, Customer: cu, Template: &t})
	var skip *compose.Skip
	var failed *channels.Error
	switch {
	case err == nil:
		return c.JSON(http.StatusOK, previewOf(m))
	case errors.As(err, &skip):
		e := apiError(http.StatusUnprocessableEntity, skip.Code, skip.Reason)
		e.Details = map[string]string{"customer_id": externalID, "channel": t.Channel}
		return e
	case errors.As(err, &failed) && failed.Code == compose.CodeTemplateError:
		return apiError(http.StatusUnprocessableEntity, compose.CodeTemplateError, failed.Err.Error())
	default:
		return fmt.Errorf("render template %s for a preview: %w", t.ID, err)
	}
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// previewTemplate renders a stored template, its latest version unless the
// body names one.
func (s *Server) previewTemplate(c echo.Context) error {
	var req templatePreviewRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	n := 0
	if req.Version != nil {
		n = *req.Version
	}
	t, err := s.findTemplate(c, n)
	if err != nil {
		return err
	}
	return s.render(c, t, *req.CustomerID, req.Event, req.Context)
}

// previewContent renders content the editor has not saved, after the
// checks a save would make.
func (s *Server) previewContent(c echo.Context) error {
	var req contentPreviewRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	content, err := s.checkedContent(*req.Channel, &req.parsed)
	if err != nil {
		return err
	}
	t := store.Template{ID: "preview", TenantID: tenantID(c), Version: 1, Channel: *req.Channel, Content: content, CreatedAt: s.now()}
	return s.render(c, t, *req.CustomerID, req.Event, req.Context)
}
