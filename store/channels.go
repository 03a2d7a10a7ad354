package store

import (
	"context"
	"encoding/json"
	"time"
)

// ProviderConfig is a tenant's account at a delivery provider.
type ProviderConfig struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	// Name is how channel nodes choose the account; unique per tenant.
	Name string `json:"name"`
	// Kind is the provider implementation (channels.Kind's Name).
	Kind string `json:"kind"`
	// DefaultFor lists the channels that use this account when a node
	// names none.
	DefaultFor []string `json:"default_for"`
	// Settings are the configuration fields that are not credentials.
	Settings json.RawMessage `json:"settings"`
	// Secrets is the sealed JSON object of the credential fields.
	Secrets []byte `json:"-"`
	// Rate is the messages per second the account may send, 0 for no
	// limit, with bursts of up to Burst.
	Rate      float64   `json:"rate"`
	Burst     int       `json:"burst"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Providers stores provider accounts.
type Providers interface {
	// CreateProvider stores p with a new id; a name already used is ErrConflict.
	CreateProvider(ctx context.Context, p ProviderConfig) (ProviderConfig, error)
	GetProvider(ctx context.Context, tenantID, id string) (ProviderConfig, error)
	ListProviders(ctx context.Context, tenantID string) ([]ProviderConfig, error)
	// UpdateProvider replaces everything but the id, tenant and creation time.
	UpdateProvider(ctx context.Context, p ProviderConfig) (ProviderConfig, error)
	DeleteProvider(ctx context.Context, tenantID, id string) error
}

// Template is one version of a message template. Content is the channel's
// fields (subject, html, text, body, title, …), each Liquid source.
type Template struct {
	ID        string          `json:"id"`
	TenantID  string          `json:"tenant_id"`
	Version   int             `json:"version"`
	Name      string          `json:"name"`
	Channel   string          `json:"channel"`
	Content   json.RawMessage `json:"content"`
	CreatedAt time.Time       `json:"created_at"`
}

// Templates stores templates; a template's versions never change.
type Templates interface {
	// CreateTemplate stores version 1 of a new template with a new id.
	CreateTemplate(ctx context.Context, t Template) (Template, error)
	// AddTemplateVersion stores t as the next version of template t.ID,
	// whose channel it keeps.
	AddTemplateVersion(ctx context.Context, t Template) (Template, error)
	// GetTemplate returns a version of the template, the latest if version is 0.
	GetTemplate(ctx context.Context, tenantID, id string, version int) (Template, error)
	// ListTemplates returns the latest version of each template, by id,
	// of one channel or of all when channel is "".
	ListTemplates(ctx context.Context, tenantID, channel string) ([]Template, error)
	ListTemplateVersions(ctx context.Context, tenantID, id string) ([]Template, error)
	// DeleteTemplate removes every version of the template.
	DeleteTemplate(ctx context.Context, tenantID, id string) error
}
