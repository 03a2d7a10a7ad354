package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
}

func (r *updateTenantRequest) check() error {
	if r.Settings == nil {
		return missingField("settings")
	}
	return nil
}

func (p settingsPatch) apply(s store.TenantSettings) store.TenantSettings {
	if p.RejectUnknownCustomers != nil {
		s.RejectUnknownCustomers = *p.RejectUnknownCustomers
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
	if r.Timezone != nil {
		// LoadLocation also accepts "Local", the server's own zone, which
		// says nothing about where the customer is. "" clears the zone.
		if _, err := time.LoadLocation(*r.Timezone); err != nil || *r.Timezone == "Local" {
			return invalidField("timezone", fmt.Sprintf("%q is not an IANA time zone such as Europe/Paris", *r.Timezone))
		}
	}
	if err := checkTags("tags", r.Tags); err != nil {
		return err
	}
	if r.PushTokens != nil {
		return checkTags("push_tokens", *r.PushTokens)
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
