// Package store defines Kalcifer's storage interfaces, one per aggregate, and
// the records they hold. The implementations are store/sqlite (the embedded
// default) and store/postgres (required for a cluster); both pass the one
// conformance suite in store/storetest. Every tenant-owned record carries its
// TenantID and every method that reads or changes one takes the tenant id, so
// that no query can reach another tenant's rows.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/kalcifer/kalcifer/journey"
)

// Errors every implementation returns (wrapped) so callers can branch on them
// with errors.Is.
var (
	// ErrNotFound: no such record for this tenant.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness or compare-and-swap condition failed.
	ErrConflict = errors.New("conflict")
	// ErrNotDraft: the journey version is published and therefore immutable.
	ErrNotDraft = errors.New("version is not a draft")
)

// Store is one open database.
type Store interface {
	Tenants() Tenants
	Journeys() Journeys
	Customers() Customers
	Events() Events
	Instances() Instances
	Deliveries() Deliveries
	Providers() Providers
	Templates() Templates
	Migrations() Migrations
	// Migrate applies every embedded migration not yet applied, in order.
	Migrate(ctx context.Context) error
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Driver names the implementation: "sqlite" or "postgres".
	Driver() string
	Close() error
}

// Tenant is an isolated customer of Kalcifer.
type Tenant struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Settings  TenantSettings `json:"settings"`
	CreatedAt time.Time      `json:"created_at"`
}

// TenantSettings are the choices a tenant makes about how Kalcifer treats
// its data. The zero value is the default.
type TenantSettings struct {
	// RejectUnknownCustomers refuses events for an external id that has no
	// customer yet. By default such an event creates the customer, as
	// Segment's track does.
	RejectUnknownCustomers bool `json:"reject_unknown_customers"`
	// QuietHours, if set, holds back messages to customers while it is
	// night where they are.
	QuietHours *QuietHours `json:"quiet_hours,omitempty"`
}

// QuietHours is a daily window, in each customer's time zone, in which
// messages on Channels wait instead of going out. Start and End are
// "HH:MM"; a window whose End is before its Start runs past midnight.
type QuietHours struct {
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Channels []string `json:"channels"`
}

// APIKey is a tenant's credential. Only the SHA-256 of the secret is stored;
// Prefix keeps the first characters of the secret so people can tell keys apart.
type APIKey struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Hash       string     `json:"-"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Tenants stores tenants and their API keys.
type Tenants interface {
	CreateTenant(ctx context.Context, name string, at time.Time) (Tenant, error)
	GetTenant(ctx context.Context, id string) (Tenant, error)
	ListTenants(ctx context.Context) ([]Tenant, error)
	// UpdateTenantSettings replaces the tenant's settings.
	UpdateTenantSettings(ctx context.Context, tenantID string, settings TenantSettings) (Tenant, error)
	// CreateAPIKey stores a key; key.ID is assigned, and key.CreatedAt if it
	// is zero. A hash already stored is ErrConflict; an unknown tenant ErrNotFound.
	CreateAPIKey(ctx context.Context, key APIKey) (APIKey, error)
	ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error)
	// RevokeAPIKey marks the key revoked at the given time; revoking twice keeps the first time.
	RevokeAPIKey(ctx context.Context, tenantID, keyID string, at time.Time) (APIKey, error)
	// APIKeyByHash finds a key, revoked or not, by the SHA-256 hex of its secret.
	APIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	// TouchAPIKey records that the key was used. A time earlier than the one
	// recorded is ignored, so requests finishing out of order keep the latest.
	TouchAPIKey(ctx context.Context, keyID string, at time.Time) error
}

// Journey statuses.
const (
	JourneyDraft    = journey.StatusDraft
	JourneyActive   = journey.StatusActive
	JourneyPaused   = journey.StatusPaused
	JourneyArchived = journey.StatusArchived
)

// Journey is a named journey; its graphs live in versions.
type Journey struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	// ActiveVersion is the number of the published version new entries run, or 0.
	ActiveVersion int       `json:"active_version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Version statuses.
const (
	VersionDraft     = "draft"
	VersionPublished = "published"
)

// Version is one numbered graph of a journey. Drafts can change; a published
// version never does. Graph must be JSON; it comes back equal in value, not
// necessarily in bytes (PostgreSQL stores JSONB).
type Version struct {
	TenantID    string     `json:"tenant_id"`
	JourneyID   string     `json:"journey_id"`
	Number      int        `json:"number"`
	Status      string     `json:"status"`
	Graph       []byte     `json:"-"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	PublishedAt *time.Time `json:"published_at,omitempty"`
}

// JourneyFilter narrows ListJourneys. Results are ordered by creation, oldest
// first; After is the id of the last journey of the previous page. A Limit
// of 0 or less returns every journey.
type JourneyFilter struct {
	Status string
	After  string
	Limit  int
}

// JourneyPatch changes a journey's descriptive fields; nil leaves a field as it is.
type JourneyPatch struct {
	Name        *string
	Description *string
}

// Journeys stores journeys and their versions.
type Journeys interface {
	// CreateJourney stores a journey in status draft with no active version;
	// ID and UpdatedAt are assigned, and CreatedAt if it is zero.
	// If graph is not nil, version 1 is created as a draft with it in the same transaction.
	CreateJourney(ctx context.Context, j Journey, graph []byte) (Journey, error)
	GetJourney(ctx context.Context, tenantID, id string) (Journey, error)
	ListJourneys(ctx context.Context, tenantID string, f JourneyFilter) ([]Journey, error)
	UpdateJourney(ctx context.Context, tenantID, id string, p JourneyPatch, at time.Time) (Journey, error)
	// SetJourneyStatus changes the status only if it is still from (compare
	// and swap); otherwise ErrConflict.
	SetJourneyStatus(ctx context.Context, tenantID, id, from, to string, at time.Time) (Journey, error)
	// DeleteJourney removes a journey and its versions.
	DeleteJourney(ctx context.Context, tenantID, id string) error

	// CreateVersion adds a draft with the next number.
	CreateVersion(ctx context.Context, tenantID, journeyID string, graph []byte, at time.Time) (Version, error)
	GetVersion(ctx context.Context, tenantID, journeyID string, number int) (Version, error)
	// ListVersions returns every version, newest first, with their graphs;
	// ErrNotFound if the journey does not exist.
	ListVersions(ctx context.Context, tenantID, journeyID string) ([]Version, error)
	// UpdateDraft replaces a draft's graph; ErrNotDraft if it is published.
	UpdateDraft(ctx context.Context, tenantID, journeyID string, number int, graph []byte, at time.Time) (Version, error)
	// PublishVersion marks a draft published and, in the same transaction,
	// makes it the journey's active version with status active. Publishing
	// an archived journey is ErrConflict; an already published version is
	// ErrNotDraft; while the journey has an unfinished migration,
	// ErrMigrationInProgress. The API publishes through StartMigration,
	// which also records who published and how.
	PublishVersion(ctx context.Context, tenantID, journeyID string, number int, at time.Time) (Journey, Version, error)
}
