package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/store"
)

// Request bodies. Pointers tell a field that was not sent from an empty one;
// each body checks and normalises itself in check, called by decodeBody.

type createAPIKeyRequest struct {
	Name *string `json:"name"`
}

func (r *createAPIKeyRequest) check() error {
	if r.Name == nil {
		return missingField("name")
	}
	return checkName(r.Name)
}

type createJourneyRequest struct {
	Name        *string         `json:"name"`
	Description *string         `json:"description"`
	Graph       json.RawMessage `json:"graph"`
	parsed      graphField
}

func (r *createJourneyRequest) check() error {
	if r.Name == nil {
		return missingField("name")
	}
	if err := checkNameAndDescription(r.Name, r.Description); err != nil {
		return err
	}
	if present(r.Graph) {
		return r.parsed.decode(r.Graph)
	}
	return nil
}

type updateJourneyRequest struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

func (r *updateJourneyRequest) check() error {
	return checkNameAndDescription(r.Name, r.Description)
}

type createVersionRequest struct {
	Graph       json.RawMessage `json:"graph"`
	FromVersion *int            `json:"from_version"`
	parsed      graphField
}

func (r *createVersionRequest) check() error {
	if !present(r.Graph) {
		return nil
	}
	if r.FromVersion != nil {
		return invalidField("from_version", "cannot be combined with graph; send one or the other")
	}
	return r.parsed.decode(r.Graph)
}

// graphRequest is a body whose only field is a required graph: replacing a
// draft's graph, validating an unsaved one.
type graphRequest struct {
	Graph  json.RawMessage `json:"graph"`
	parsed graphField
}

func (r *graphRequest) check() error {
	if !present(r.Graph) {
		return missingField("graph")
	}
	return r.parsed.decode(r.Graph)
}

type updateTenantRequest struct {
	Settings *settingsPatch `json:"settings"`
}

// settingsPatch changes the settings that are sent and keeps the others.
type settingsPatch struct {
	RejectUnknownCustomers *bool `json:"reject_unknown_customers"`
	// QuietHours replaces the quiet hours when sent; null removes them.
	QuietHours json.RawMessage `json:"quiet_hours"`
	quietHours *store.QuietHours
}

func (r *updateTenantRequest) check() error {
	if r.Settings == nil {
		return missingField("settings")
	}
	return r.Settings.checkQuietHours()
}

func (p settingsPatch) apply(s store.TenantSettings) store.TenantSettings {
	if p.RejectUnknownCustomers != nil {
		s.RejectUnknownCustomers = *p.RejectUnknownCustomers
	}
	if len(p.QuietHours) > 0 {
		s.QuietHours = p.quietHours
	}
	return s
}

// channelPreferences says, per channel, whether the customer accepts it;
// channels not sent keep their setting. A struct rather than a map, so that
// a misspelt channel is an unknown field instead of a stored opt-out nobody reads.
type channelPreferences struct {
	Email    *bool `json:"email"`
	SMS      *bool `json:"sms"`
	Push     *bool `json:"push"`
	WhatsApp *bool `json:"whatsapp"`
	Webhook  *bool `json:"webhook"`
}

func (p *channelPreferences) changes() map[string]bool {
	if p == nil {
		return nil
	}
	m := map[string]bool{}
	for ch, v := range map[string]*bool{"email": p.Email, "sms": p.SMS, "push": p.Push, "whatsapp": p.WhatsApp, "webhook": p.Webhook} {
		if v != nil {
			m[ch] = *v
		}
	}
	return m
}

// customerRequest is a profile as an upsert or a patch sends it: absent
// fields stay as they are, properties merge key by key (null removes one),
// tags are added and preferences merge per channel.
type customerRequest struct {
	Email       *string             `json:"email"`
	Phone       *string             `json:"phone"`
	Name        *string             `json:"name"`
	Timezone    *string             `json:"timezone"`
	Properties  map[string]any      `json:"properties"`
	Tags        []string            `json:"tags"`
	Preferences *channelPreferences `json:"preferences"`
	PushTokens  *[]string           `json:"push_tokens"`
}

func (r *customerRequest) check() error {
	if err := checkTimezone("timezone", r.Timezone); err != nil {
		return err
	}
	if err := checkTags("tags", r.Tags); err != nil {
		return err
	}
	if r.PushTokens != nil {
		return checkTags("push_tokens", *r.PushTokens)
	}
	return nil
}

// checkTimezone checks an optional IANA zone; "" clears the zone.
func checkTimezone(field string, value *string) error {
	if value == nil {
		return nil
	}
	// LoadLocation also accepts "Local", the server's own zone, which says
	// nothing about where the customer is.
	if _, err := time.LoadLocation(*value); err != nil || *value == "Local" {
		return invalidField(field, fmt.Sprintf("%q is not an IANA time zone such as Europe/Paris", *value))
	}
	return nil
}

func (r *customerRequest) patch() store.CustomerPatch {
	return store.CustomerPatch{Email: r.Email, Phone: r.Phone, Name: r.Name, Timezone: r.Timezone,
		Properties: r.Properties, AddTags: r.Tags, Preferences: r.Preferences.changes(), PushTokens: r.PushTokens}
}

type tagsRequest struct {
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
}

func (r *tagsRequest) check() error {
	if err := checkTags("add", r.Add); err != nil {
		return err
	}
	return checkTags("remove", r.Remove)
}

func (r *tagsRequest) patch() store.CustomerPatch {
	return store.CustomerPatch{AddTags: r.Add, RemoveTags: r.Remove}
}

type preferencesRequest channelPreferences

func (r *preferencesRequest) check() error {
	return nil
}

func (r *preferencesRequest) patch() store.CustomerPatch {
	return store.CustomerPatch{Preferences: (*channelPreferences)(r).changes()}
}

// checkTags trims each value of a list of names in place; none may be blank.
func checkTags(field string, values []string) error {
	for i, v := range values {
		values[i] = strings.TrimSpace(v)
		if values[i] == "" {
			return invalidField(fmt.Sprintf("%s[%d]", field, i), "must not be blank")
		}
	}
	return nil
}

// Limits of the engine routes' inputs.
const (
	// maxBatch bounds the inputs of one batch request, so that one request
	// cannot hold a transaction or a grain for long.
	maxBatch = 1000
	// maxKeyLength bounds event types, message ids and idempotency keys,
	// which are stored in indexed columns.
	maxKeyLength    = 255
	maxReasonLength = 1000
)

// checkExternalID checks a required customer reference: the tenant's
// external id, as the customer routes take it.
func checkExternalID(field string, value *string) error {
	switch {
	case value == nil:
		return missingField(field)
	case strings.TrimSpace(*value) == "":
		return invalidField(field, "must not be blank")
	case len(*value) > maxExternalIDLength:
		return invalidField(field, fmt.Sprintf("must be at most %d bytes", maxExternalIDLength))
	}
	return nil
}

// checkKey checks an identifier field; required ones must be sent and not blank.
func checkKey(field string, value *string, required bool) error {
	switch {
	case value == nil:
		if required {
			return missingField(field)
		}
	case required && strings.TrimSpace(*value) == "":
		return invalidField(field, "must not be blank")
	case len(*value) > maxKeyLength:
		return invalidField(field, fmt.Sprintf("must be at most %d bytes", maxKeyLength))
	}
	return nil
}

// parseTimestamp reads an optional RFC 3339 timestamp; absent is the zero
// time, which the store takes as the time of receipt.
func parseTimestamp(field string, value *string) (time.Time, error) {
	if value == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *value)
	if err != nil {
		return time.Time{}, invalidField(field, "must be an RFC 3339 timestamp such as 2026-03-01T09:00:00Z")
	}
	return t, nil
}

// checkBatchSize checks that a batch holds 1 to maxBatch inputs.
func checkBatchSize(field string, n int) error {
	if n < 1 || n > maxBatch {
		return invalidField(field, fmt.Sprintf("must hold 1 to %d items, not %d", maxBatch, n))
	}
	return nil
}

// eventRequest is one event of POST /events and /events/batch.
type eventRequest struct {
	CustomerID *string        `json:"customer_id"`
	Type       *string        `json:"type"`
	MessageID  *string        `json:"message_id"`
	Properties map[string]any `json:"properties"`
	Timestamp  *string        `json:"timestamp"`
	incoming   actors.Incoming
}

func (r *eventRequest) check() error {
	return r.checkAt("")
}

// checkAt checks the event found at prefix in the body ("events[3]." in a
// batch), so that errors name the field the client sent.
func (r *eventRequest) checkAt(prefix string) error {
	if err := checkExternalID(prefix+"customer_id", r.CustomerID); err != nil {
		return err
	}
	if err := checkKey(prefix+"type", r.Type, true); err != nil {
		return err
	}
	if err := checkKey(prefix+"message_id", r.MessageID, false); err != nil {
		return err
	}
	at, err := parseTimestamp(prefix+"timestamp", r.Timestamp)
	if err != nil {
		return err
	}
	r.incoming = actors.Incoming{ExternalID: *r.CustomerID, Type: *r.Type, MessageID: deref(r.MessageID),
		Properties: r.Properties, Timestamp: at}
	return nil
}

type eventBatchRequest struct {
	Events []eventRequest `json:"events"`
}

func (r *eventBatchRequest) check() error {
	if r.Events == nil {
		return missingField("events")
	}
	if err := checkBatchSize("events", len(r.Events)); err != nil {
		return err
	}
	for i := range r.Events {
		if err := r.Events[i].checkAt(fmt.Sprintf("events[%d].", i)); err != nil {
			return err
		}
	}
	return nil
}

func (r *eventBatchRequest) incoming() []actors.Incoming {
	in := make([]actors.Incoming, len(r.Events))
	for i, e := range r.Events {
		in[i] = e.incoming
	}
	return in
}

// enrolTarget is one customer a trigger or webhook enrols, with the data the
// instance starts with.
type enrolTarget struct {
	CustomerID *string        `json:"customer_id"`
	Data       map[string]any `json:"data"`
}

func (t enrolTarget) checkAt(prefix string) error {
	return checkExternalID(prefix+"customer_id", t.CustomerID)
}

func (t enrolTarget) target() actors.Target {
	return actors.Target{ExternalID: *t.CustomerID, Data: t.Data}
}

// triggerRequest names either a list of customers or, at the top level,
// one customer. The single form's fields are not an embedded enrolTarget
// because encoding/json would then name them enrolTarget.customer_id in
// type errors.
type triggerRequest struct {
	Customers  []enrolTarget  `json:"customers"`
	CustomerID *string        `json:"customer_id"`
	Data       map[string]any `json:"data"`
}

func (r *triggerRequest) single() enrolTarget {
	return enrolTarget{CustomerID: r.CustomerID, Data: r.Data}
}

func (r *triggerRequest) check() error {
	if r.Customers == nil {
		if r.CustomerID == nil {
			e := apiError(http.StatusBadRequest, "missing_field", "send customers, a list, or customer_id for one customer")
			e.Details = map[string]string{"field": "customers"}
			return e
		}
		return r.single().checkAt("")
	}
	if r.CustomerID != nil || r.Data != nil {
		return invalidField("customers", "cannot be combined with customer_id or data; put them in the list")
	}
	if err := checkBatchSize("customers", len(r.Customers)); err != nil {
		return err
	}
	for i, t := range r.Customers {
		if err := t.checkAt(fmt.Sprintf("customers[%d].", i)); err != nil {
			return err
		}
	}
	return nil
}

func (r *triggerRequest) targets() []actors.Target {
	if r.Customers == nil {
		return []actors.Target{r.single().target()}
	}
	targets := make([]actors.Target, len(r.Customers))
	for i, t := range r.Customers {
		targets[i] = t.target()
	}
	return targets
}

type webhookRequest struct {
	CustomerID *string        `json:"customer_id"`
	Data       map[string]any `json:"data"`
	MessageID  *string        `json:"message_id"`
}

func (r *webhookRequest) check() error {
	if err := r.single().checkAt(""); err != nil {
		return err
	}
	return checkKey("message_id", r.MessageID, false)
}

func (r *webhookRequest) single() enrolTarget {
	return enrolTarget{CustomerID: r.CustomerID, Data: r.Data}
}

type instanceActionRequest struct {
	Reason string `json:"reason"`
}

func (r *instanceActionRequest) check() error {
	if len(r.Reason) > maxReasonLength {
		return invalidField("reason", fmt.Sprintf("must be at most %d bytes", maxReasonLength))
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
