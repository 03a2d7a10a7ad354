package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// unfinished is the SQL list of unfinished migration statuses, spelled as
// in the partial index migrations_unfinished so that the planners match
// the two.
const unfinished = `('` + store.MigrationRunning + `', '` + store.MigrationPaused + `', '` + store.MigrationPartial + `')`

const migrationCols = `tenant_id, id, journey_id, kind, from_version, to_version, strategy, rollout_percent,
	batch_size, options, status, created_by, total, migrated, exited, held, failed, skipped,
	cursor, batch, failures, error, created_at, updated_at, finished_at`

// scanMigration returns Batch and Failures empty, never nil.
func scanMigration(r scanner) (store.Migration, error) {
	var m store.Migration
	var options, batch, failures []byte
	var created, updated int64
	var finished sql.NullInt64
	c := &m.Counts
	err := r.Scan(&m.TenantID, &m.ID, &m.JourneyID, &m.Kind, &m.FromVersion, &m.ToVersion, &m.Strategy,
		&m.RolloutPercent, &m.BatchSize, &options, &m.Status, &m.CreatedBy,
		&c.Total, &c.Migrated, &c.Exited, &c.Held, &c.Failed, &c.Skipped,
		&m.Cursor, &batch, &failures, &m.Error, &created, &updated, &finished)
	if err != nil {
		return m, err
	}
	m.Options = options
	m.CreatedAt, m.UpdatedAt, m.FinishedAt = fromMicros(created), fromMicros(updated), fromNullMicros(finished)
	m.Batch, m.Failures = []string{}, []store.MigrationFailure{}
	if err := json.Unmarshal(batch, &m.Batch); err != nil {
		return m, fmt.Errorf("decode batch of migration %s: %w", m.ID, err)
	}
	if err := json.Unmarshal(failures, &m.Failures); err != nil {
		return m, fmt.Errorf("decode failures of migration %s: %w", m.ID, err)
	}
	return m, nil
}

// progressCols are the columns UpdateMigration writes, in the order of
// progress's values.
const progressCols = `status, rollout_percent, total, migrated, exited, held, failed, skipped,
	cursor, batch, failures, error, updated_at, finished_at`

// progress is the values of progressCols for m.
func progress(m store.Migration) ([]any, error) {
	batch, failures := m.Batch, m.Failures
	if batch == nil {
		batch = []string{}
	}
	if failures == nil {
		failures = []store.MigrationFailure{}
	}
	b, err := jsonText(batch)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	f, err := jsonText(failures)
	if err != nil {
		return nil, fmt.Errorf("encode failures: %w", err)
	}
	var finished any
	if m.FinishedAt != nil {
		finished = stamp(*m.FinishedAt).UnixMicro()
	}
	c := m.Counts
	return []any{m.Status, m.RolloutPercent, c.Total, c.Migrated, c.Exited, c.Held, c.Failed, c.Skipped,
		m.Cursor, b, f, m.Error, stamp(m.UpdatedAt).UnixMicro(), finished}, nil
}

// lockToActivate locks the journey whose active version is to change, and
// refuses the change if the journey is archived or has an unfinished
// migration.
func (s *Store) lockToActivate(ctx context.Context, tx txn, tenantID, journeyID string) (store.Journey, error) {
	j, err := s.selectJourney(ctx, tx, tenantID, journeyID, true)
	if err != nil {
		return j, err
	}
	if j.Status == store.JourneyArchived {
		return j, fmt.Errorf("%w: journey is archived", store.ErrConflict)
	}
	m, err := s.activeMigration(ctx, tx, tenantID, journeyID)
	switch {
	case err == nil:
		return j, fmt.Errorf("%w: migration %s is %s", store.ErrMigrationInProgress, m.ID, m.Status)
	case !errors.Is(err, sql.ErrNoRows):
		return j, err
	}
	return j, nil
}

// activate makes v the active version of j, which the transaction has
// locked. A draft is published and the journey becomes active, as
// PublishVersion does; a version published before only becomes active
// again, and the journey keeps its status unless it is a draft.
func (s *Store) activate(ctx context.Context, tx txn, j store.Journey, v store.Version, at time.Time) (store.Journey, store.Version, error) {
	us := at.UnixMicro()
	status := j.Status
	if v.Status == store.VersionDraft {
		var err error
		v, err = scanVersion(s.queryRow(ctx, tx, `UPDATE journey_versions SET status = ?, published_at = ?, updated_at = ?
			WHERE tenant_id = ? AND journey_id = ? AND number = ? RETURNING `+versionCols,
			store.VersionPublished, us, us, j.TenantID, j.ID, v.Number))
		if err != nil {
			return j, v, err
		}
		status = store.JourneyActive
	} else if status == store.JourneyDraft {
		status = store.JourneyActive
	}
	j, err := scanJourney(s.queryRow(ctx, tx, `UPDATE journeys SET status = ?, active_version = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? RETURNING `+journeyCols,
		status, v.Number, us, j.TenantID, j.ID))
	return j, v, err
}

// StartMigration checks for an unfinished migration under the journey's
// lock; the unique index migrations_unfinished is the backstop, and its
// violation is ErrMigrationInProgress too.
func (s *Store) StartMigration(ctx context.Context, m store.Migration) (store.Journey, store.Migration, error) {
	at := stamp(m.CreatedAt)
	m.ID = store.NewID("mig", at)
	m.CreatedAt, m.UpdatedAt, m.FinishedAt = at, at, nil
	m.Status = store.MigrationRunning
	if m.Strategy == store.StrategyNewEntriesOnly {
		m.Status, m.FinishedAt = store.MigrationCompleted, &at
	}
	var j store.Journey
	var started store.Migration
	err := s.inTx(ctx, func(tx txn) error {
		var err error
		if j, err = s.lockToActivate(ctx, tx, m.TenantID, m.JourneyID); err != nil {
			return err
		}
		if j.ActiveVersion != m.FromVersion {
			return fmt.Errorf("%w: the active version is %d, not %d", store.ErrConflict, j.ActiveVersion, m.FromVersion)
		}
		v, err := s.selectVersion(ctx, tx, m.TenantID, m.JourneyID, m.ToVersion)
		if err != nil {
			return fmt.Errorf("version %d: %w", m.ToVersion, err)
		}
		if j, _, err = s.activate(ctx, tx, j, v, at); err != nil {
			return err
		}
		set, err := progress(m)
		if err != nil {
			return err
		}
		args := append([]any{m.TenantID, m.ID, m.JourneyID, m.Kind, m.FromVersion, m.ToVersion, m.Strategy,
			m.BatchSize, orEmpty(m.Options), m.CreatedBy, at.UnixMicro()}, set...)
		started, err = scanMigration(s.queryRow(ctx, tx, `INSERT INTO migrations (tenant_id, id, journey_id, kind,
			from_version, to_version, strategy, batch_size, options, created_by, created_at, `+progressCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+migrationCols, args...))
		return err
	})
	if err != nil {
		return store.Journey{}, store.Migration{}, fmt.Errorf("start migration of journey %s: %w", m.JourneyID, s.migrationError(err))
	}
	return j, started, nil
}

// migrationError is classify, with the violation of a unique index on
// migrations, which can only be migrations_unfinished (ids are random),
// as ErrMigrationInProgress.
func (s *Store) migrationError(err error) error {
	if s.d.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %w", store.ErrMigrationInProgress, err)
	}
	return s.classify(err)
}

func (s *Store) GetMigration(ctx context.Context, tenantID, id string) (store.Migration, error) {
	m, err := scanMigration(s.queryRow(ctx, s.reads, `SELECT `+migrationCols+` FROM migrations WHERE tenant_id = ? AND id = ?`,
		tenantID, id))
	if err != nil {
		return store.Migration{}, fmt.Errorf("get migration %s: %w", id, s.classify(err))
	}
	return m, nil
}

// ListMigrations orders by id descending: ids sort by creation time.
func (s *Store) ListMigrations(ctx context.Context, tenantID string, f store.MigrationFilter) ([]store.Migration, error) {
	l := newList(migrationCols, `migrations`).where(`tenant_id = ?`, tenantID)
	eq(eq(l, `journey_id`, f.JourneyID), `status`, f.Status)
	if f.After != "" {
		l.where(`id < ?`, f.After)
	}
	query, args := l.page(`id DESC`, f.Limit)
	ms, err := selectAll(ctx, s, scanMigration, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list migrations of tenant %s: %w", tenantID, err)
	}
	return ms, nil
}

func (s *Store) activeMigration(ctx context.Context, q querier, tenantID, journeyID string) (store.Migration, error) {
	return scanMigration(s.queryRow(ctx, q, `SELECT `+migrationCols+` FROM migrations
		WHERE tenant_id = ? AND journey_id = ? AND status IN `+unfinished, tenantID, journeyID))
}

func (s *Store) ActiveMigration(ctx context.Context, tenantID, journeyID string) (store.Migration, error) {
	m, err := s.activeMigration(ctx, s.reads, tenantID, journeyID)
	if err != nil {
		return store.Migration{}, fmt.Errorf("active migration of journey %s: %w", journeyID, s.classify(err))
	}
	return m, nil
}

func (s *Store) UpdateMigration(ctx context.Context, m store.Migration) error {
	set, err := progress(m)
	if err == nil {
		err = s.execOne(ctx, s.db, `UPDATE migrations SET (`+progressCols+`) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			WHERE tenant_id = ? AND id = ?`, append(set, m.TenantID, m.ID)...)
	}
	if err != nil {
		return fmt.Errorf("update migration %s: %w", m.ID, s.migrationError(err))
	}
	return nil
}

// RunningMigrations spells the status out, as in the partial index
// migrations_running, so that the planners use the index.
func (s *Store) RunningMigrations(ctx context.Context, updatedBefore time.Time) ([]store.Migration, error) {
	query, args := newList(migrationCols, `migrations`).where(`status = '`+store.MigrationRunning+`'`).
		where(`updated_at <= ?`, stamp(updatedBefore).UnixMicro()).page(`updated_at, tenant_id, id`, 0)
	ms, err := selectAll(ctx, s, scanMigration, query, args...)
	if err != nil {
		return nil, fmt.Errorf("running migrations: %w", err)
	}
	return ms, nil
}

// ActiveKeys is served by the partial index instances_version_active,
// which it covers.
func (s *Store) ActiveKeys(ctx context.Context, tenantID, journeyID string, version int, after string, limit int) ([]store.InstanceKey, error) {
	query, args := newList(`id, customer_id`, `instances`).
		where(`tenant_id = ? AND journey_id = ? AND version = ?`, tenantID, journeyID, version).
		where(`status NOT IN `+terminal).byID(after, limit)
	keys, err := selectAll(ctx, s, func(r scanner) (store.InstanceKey, error) {
		var k store.InstanceKey
		return k, r.Scan(&k.ID, &k.CustomerID)
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("active instances of journey %s version %d: %w", journeyID, version, err)
	}
	return keys, nil
}
