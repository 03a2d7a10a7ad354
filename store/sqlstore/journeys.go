package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

var journeyStatuses = []string{store.JourneyDraft, store.JourneyActive, store.JourneyPaused, store.JourneyArchived}

const journeyCols = `id, tenant_id, name, description, status, active_version, created_at, updated_at`

func scanJourney(r scanner) (store.Journey, error) {
	var j store.Journey
	var created, updated int64
	err := r.Scan(&j.ID, &j.TenantID, &j.Name, &j.Description, &j.Status, &j.ActiveVersion, &created, &updated)
	j.CreatedAt, j.UpdatedAt = fromMicros(created), fromMicros(updated)
	return j, err
}

const versionCols = `tenant_id, journey_id, number, status, graph, created_at, updated_at, published_at`

func scanVersion(r scanner) (store.Version, error) {
	var v store.Version
	var created, updated int64
	var published sql.NullInt64
	err := r.Scan(&v.TenantID, &v.JourneyID, &v.Number, &v.Status, &v.Graph, &created, &updated, &published)
	v.CreatedAt, v.UpdatedAt, v.PublishedAt = fromMicros(created), fromMicros(updated), fromNullMicros(published)
	return v, err
}

func (s *Store) CreateJourney(ctx context.Context, j store.Journey, graph []byte) (store.Journey, error) {
	at := stamp(j.CreatedAt)
	j.ID = store.NewID("jrn", at)
	j.Status, j.ActiveVersion = store.JourneyDraft, 0
	j.CreatedAt, j.UpdatedAt = at, at
	err := s.inTx(ctx, func(tx txn) error {
		_, err := s.exec(ctx, tx, `INSERT INTO journeys (`+journeyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			j.ID, j.TenantID, j.Name, j.Description, j.Status, j.ActiveVersion, at.UnixMicro(), at.UnixMicro())
		if err != nil || graph == nil {
			return err
		}
		_, err = s.insertVersion(ctx, tx, j.TenantID, j.ID, 1, graph, at)
		return err
	})
	if err != nil {
		return store.Journey{}, fmt.Errorf("create journey %q for tenant %s: %w", j.Name, j.TenantID, s.classify(err))
	}
	return j, nil
}

// selectJourney reads a journey; with lock it holds the row until the
// transaction ends.
func (s *Store) selectJourney(ctx context.Context, q querier, tenantID, id string, lock bool) (store.Journey, error) {
	query := `SELECT ` + journeyCols + ` FROM journeys WHERE tenant_id = ? AND id = ?`
	if lock {
		query += s.d.ForUpdate
	}
	return scanJourney(s.queryRow(ctx, q, query, tenantID, id))
}

func (s *Store) GetJourney(ctx context.Context, tenantID, id string) (store.Journey, error) {
	j, err := s.selectJourney(ctx, s.reads, tenantID, id, false)
	if err != nil {
		return store.Journey{}, fmt.Errorf("get journey %s: %w", id, s.classify(err))
	}
	return j, nil
}

// ListJourneys orders by id, which sorts by creation time (see store.NewID)
// and, unlike the time, is unique, so After never skips a journey.
func (s *Store) ListJourneys(ctx context.Context, tenantID string, f store.JourneyFilter) ([]store.Journey, error) {
	l := newList(journeyCols, `journeys`).where(`tenant_id = ?`, tenantID)
	query, args := eq(l, `status`, f.Status).byID(f.After, f.Limit)
	js, err := selectAll(ctx, s, scanJourney, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list journeys of tenant %s: %w", tenantID, err)
	}
	return js, nil
}

func (s *Store) UpdateJourney(ctx context.Context, tenantID, id string, p store.JourneyPatch, at time.Time) (store.Journey, error) {
	j, err := scanJourney(s.queryRow(ctx, s.db, `UPDATE journeys
		SET name = COALESCE(?, name), description = COALESCE(?, description), updated_at = ?
		WHERE tenant_id = ? AND id = ? RETURNING `+journeyCols,
		p.Name, p.Description, stamp(at).UnixMicro(), tenantID, id))
	if err != nil {
		return store.Journey{}, fmt.Errorf("update journey %s: %w", id, s.classify(err))
	}
	return j, nil
}

func (s *Store) SetJourneyStatus(ctx context.Context, tenantID, id, from, to string, at time.Time) (store.Journey, error) {
	if !slices.Contains(journeyStatuses, to) {
		return store.Journey{}, fmt.Errorf("set journey %s status: unknown status %q", id, to)
	}
	j, err := scanJourney(s.queryRow(ctx, s.db, `UPDATE journeys SET status = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND status = ? RETURNING `+journeyCols,
		to, stamp(at).UnixMicro(), tenantID, id, from))
	if errors.Is(err, sql.ErrNoRows) {
		var cur store.Journey
		if cur, err = s.selectJourney(ctx, s.reads, tenantID, id, false); err == nil {
			err = fmt.Errorf("%w: status is %s, not %s", store.ErrConflict, cur.Status, from)
		}
	}
	if err != nil {
		return store.Journey{}, fmt.Errorf("set journey %s status %s: %w", id, to, s.classify(err))
	}
	return j, nil
}

// DeleteJourney relies on the foreign key from journey_versions to cascade.
func (s *Store) DeleteJourney(ctx context.Context, tenantID, id string) error {
	err := s.execOne(ctx, s.db, `DELETE FROM journeys WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return fmt.Errorf("delete journey %s: %w", id, s.classify(err))
	}
	return nil
}

// insertVersion stores a new draft. Graphs travel as text so that SQLite
// stores them as TEXT, which json_valid checks, and PostgreSQL parses them
// into JSONB.
func (s *Store) insertVersion(ctx context.Context, tx txn, tenantID, journeyID string, number int, graph []byte, at time.Time) (store.Version, error) {
	v := store.Version{TenantID: tenantID, JourneyID: journeyID, Number: number, Status: store.VersionDraft,
		Graph: graph, CreatedAt: at, UpdatedAt: at}
	_, err := s.exec(ctx, tx, `INSERT INTO journey_versions (`+versionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)`,
		tenantID, journeyID, number, v.Status, string(graph), at.UnixMicro(), at.UnixMicro())
	return v, err
}

// CreateVersion locks the journey row so that concurrent calls take the
// next number one after the other.
func (s *Store) CreateVersion(ctx context.Context, tenantID, journeyID string, graph []byte, at time.Time) (store.Version, error) {
	var v store.Version
	err := s.inTx(ctx, func(tx txn) error {
		if _, err := s.selectJourney(ctx, tx, tenantID, journeyID, true); err != nil {
			return err
		}
		var next int
		err := s.queryRow(ctx, tx, `SELECT COALESCE(MAX(number), 0) + 1 FROM journey_versions
			WHERE tenant_id = ? AND journey_id = ?`, tenantID, journeyID).Scan(&next)
		if err != nil {
			return err
		}
		v, err = s.insertVersion(ctx, tx, tenantID, journeyID, next, graph, stamp(at))
		return err
	})
	if err != nil {
		return store.Version{}, fmt.Errorf("create version of journey %s: %w", journeyID, s.classify(err))
	}
	return v, nil
}

func (s *Store) selectVersion(ctx context.Context, q querier, tenantID, journeyID string, number int) (store.Version, error) {
	return scanVersion(s.queryRow(ctx, q, `SELECT `+versionCols+` FROM journey_versions
		WHERE tenant_id = ? AND journey_id = ? AND number = ?`, tenantID, journeyID, number))
}

func (s *Store) GetVersion(ctx context.Context, tenantID, journeyID string, number int) (store.Version, error) {
	v, err := s.selectVersion(ctx, s.reads, tenantID, journeyID, number)
	if err != nil {
		return store.Version{}, fmt.Errorf("get version %d of journey %s: %w", number, journeyID, s.classify(err))
	}
	return v, nil
}

// ListVersions tells a missing journey (ErrNotFound) from one without versions.
func (s *Store) ListVersions(ctx context.Context, tenantID, journeyID string) ([]store.Version, error) {
	_, err := s.selectJourney(ctx, s.reads, tenantID, journeyID, false)
	var vs []store.Version
	if err == nil {
		vs, err = selectAll(ctx, s, scanVersion, `SELECT `+versionCols+` FROM journey_versions
			WHERE tenant_id = ? AND journey_id = ? ORDER BY number DESC`, tenantID, journeyID)
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of journey %s: %w", journeyID, s.classify(err))
	}
	return vs, nil
}

func (s *Store) UpdateDraft(ctx context.Context, tenantID, journeyID string, number int, graph []byte, at time.Time) (store.Version, error) {
	v, err := scanVersion(s.queryRow(ctx, s.db, `UPDATE journey_versions SET graph = ?, updated_at = ?
		WHERE tenant_id = ? AND journey_id = ? AND number = ? AND status = ? RETURNING `+versionCols,
		string(graph), stamp(at).UnixMicro(), tenantID, journeyID, number, store.VersionDraft))
	if errors.Is(err, sql.ErrNoRows) {
		if _, err = s.selectVersion(ctx, s.reads, tenantID, journeyID, number); err == nil {
			err = store.ErrNotDraft
		}
	}
	if err != nil {
		return store.Version{}, fmt.Errorf("update draft %d of journey %s: %w", number, journeyID, s.classify(err))
	}
	return v, nil
}

// PublishVersion shares StartMigration's checks (lockToActivate) and its
// publishing (activate).
func (s *Store) PublishVersion(ctx context.Context, tenantID, journeyID string, number int, at time.Time) (store.Journey, store.Version, error) {
	var j store.Journey
	var v store.Version
	err := s.inTx(ctx, func(tx txn) error {
		var err error
		if j, err = s.lockToActivate(ctx, tx, tenantID, journeyID); err != nil {
			return err
		}
		if v, err = s.selectVersion(ctx, tx, tenantID, journeyID, number); err != nil {
			return err
		}
		if v.Status != store.VersionDraft {
			return store.ErrNotDraft
		}
		j, v, err = s.activate(ctx, tx, j, v, stamp(at))
		return err
	})
	if err != nil {
		return store.Journey{}, store.Version{}, fmt.Errorf("publish version %d of journey %s: %w", number, journeyID, s.classify(err))
	}
	return j, v, nil
}
