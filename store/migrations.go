package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrMigrationInProgress: the journey has a migration that has not
// finished (running, paused or partly rolled out); it must complete or be
// aborted before the journey's active version changes again.
var ErrMigrationInProgress = errors.New("a migration of this journey is in progress")

// InstanceHeld is the status of an instance a migration holds: its node
// was removed and the removed-node policy was hold. It runs nothing until
// released to a node of its version.
const InstanceHeld = "held"

// Migration kinds: a publish moves customers to a new version, a rollback
// back to an earlier published one.
const (
	MigrationPublish  = "publish"
	MigrationRollback = "rollback"
)

// Migration strategies.
const (
	StrategyNewEntriesOnly = "new_entries_only"
	StrategyMigrateAll     = "migrate_all"
	StrategyGradual        = "gradual"
)

// Migration statuses. Running, paused and partial are unfinished: a
// journey has at most one unfinished migration. Partial is a gradual
// migration that has moved its rollout percentage and waits for it to be
// raised; completed, aborted and failed are final.
const (
	MigrationRunning   = "running"
	MigrationPaused    = "paused"
	MigrationPartial   = "partial"
	MigrationCompleted = "completed"
	MigrationAborted   = "aborted"
	MigrationFailed    = "failed"
)

// MigrationFinished reports whether a migration in this status is over for good.
func MigrationFinished(status string) bool {
	return status == MigrationCompleted || status == MigrationAborted || status == MigrationFailed
}

// Migration is one change of a journey's active version and the move of
// its customers in flight to it: the audit record and the progress of the
// work, which the journey's grain alone writes once it has started.
type Migration struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	JourneyID   string `json:"journey_id"`
	Kind        string `json:"kind"`
	FromVersion int    `json:"from_version"`
	ToVersion   int    `json:"to_version"`
	Strategy    string `json:"strategy"`
	// RolloutPercent is the share of the customers on FromVersion a
	// gradual migration moves (100 for migrate_all, 0 for new_entries_only).
	RolloutPercent int `json:"rollout_percent"`
	BatchSize      int `json:"batch_size"`
	// Options are the node mapping and removed-node policy, as JSON
	// (journey.MigrationOptions).
	Options json.RawMessage `json:"options"`
	Status  string          `json:"status"`
	// CreatedBy names who started it: the API key's name and id.
	CreatedBy string          `json:"created_by"`
	Counts    MigrationCounts `json:"counts"`
	// Cursor says where the current pass is (the journey's grain writes
	// and reads it); Batch names the instances being migrated now, so that
	// a migration resumed after a crash asks them again and counts what
	// they became.
	Cursor string   `json:"-"`
	Batch  []string `json:"-"`
	// Failures are the last instances that could not be migrated (at most
	// MaxMigrationFailures); they stay on FromVersion.
	Failures   []MigrationFailure `json:"failures"`
	Error      string             `json:"error,omitempty"`
	CreatedAt  time.Time          `json:"created_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
	FinishedAt *time.Time         `json:"finished_at,omitempty"`
}

// MaxMigrationFailures bounds Migration.Failures.
const MaxMigrationFailures = 100

// MigrationFailure is an instance a migration could not move, and why.
type MigrationFailure struct {
	InstanceID string `json:"instance_id"`
	Error      string `json:"error"`
}

// MigrationCounts is what became of the customers a migration looked at.
type MigrationCounts struct {
	// Total is how many customers were in flight on FromVersion when it started.
	Total    int `json:"total"`
	Migrated int `json:"migrated"`
	Exited   int `json:"exited"`
	Held     int `json:"held"`
	Failed   int `json:"failed"`
	// Skipped were left on FromVersion by a gradual rollout's percentage,
	// in the last pass.
	Skipped int `json:"skipped"`
}

// MigrationFilter narrows ListMigrations: newest first; After is the id of
// the last migration of the previous page.
type MigrationFilter struct {
	JourneyID string
	Status    string
	After     string
	Limit     int
}

// InstanceKey names an instance and its customer, which routes to its grain.
type InstanceKey struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
}

// Migrations stores migrations.
type Migrations interface {
	// StartMigration makes m.ToVersion the journey's active version and
	// stores m, in one transaction; ID, CreatedAt and UpdatedAt are
	// assigned, and Status is completed for new_entries_only (nothing to
	// move) and running otherwise. A draft ToVersion is published and the
	// journey becomes active (a publish); a published one only becomes
	// active again (a rollback). It fails with ErrMigrationInProgress if the
	// journey has an unfinished migration, with ErrConflict if the journey
	// is archived or its active version is no longer m.FromVersion,
	// ErrNotFound if the journey or version does not exist.
	StartMigration(ctx context.Context, m Migration) (Journey, Migration, error)
	GetMigration(ctx context.Context, tenantID, id string) (Migration, error)
	ListMigrations(ctx context.Context, tenantID string, f MigrationFilter) ([]Migration, error)
	// ActiveMigration returns the journey's unfinished migration, or ErrNotFound.
	ActiveMigration(ctx context.Context, tenantID, journeyID string) (Migration, error)
	// UpdateMigration stores m's status, rollout percent, counts, cursor,
	// batch, failures, error, UpdatedAt and FinishedAt.
	UpdateMigration(ctx context.Context, m Migration) error
	// RunningMigrations returns the running migrations of every tenant
	// last updated at or before updatedBefore, oldest first: the ones a
	// stopped process left to resume.
	RunningMigrations(ctx context.Context, updatedBefore time.Time) ([]Migration, error)
}
