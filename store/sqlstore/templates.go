package sqlstore

import (
	"context"
	"fmt"

	"github.com/kalcifer/kalcifer/store"
)

const templateCols = `tenant_id, id, version, name, channel, content, created_at`

func scanTemplate(r scanner) (store.Template, error) {
	var t store.Template
	var content []byte
	var created int64
	err := r.Scan(&t.TenantID, &t.ID, &t.Version, &t.Name, &t.Channel, &content, &created)
	t.Content, t.CreatedAt = content, fromMicros(created)
	return t, err
}

func (s *Store) insertTemplate(ctx context.Context, q querier, t store.Template) (store.Template, error) {
	return scanTemplate(s.queryRow(ctx, q, `INSERT INTO templates (`+templateCols+`) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING `+templateCols,
		t.TenantID, t.ID, t.Version, t.Name, t.Channel, orEmpty(t.Content), stamp(t.CreatedAt).UnixMicro()))
}

func (s *Store) CreateTemplate(ctx context.Context, t store.Template) (store.Template, error) {
	t.ID, t.Version = store.NewID("tpl", stamp(t.CreatedAt)), 1
	t, err := s.insertTemplate(ctx, s.db, t)
	if err != nil {
		return store.Template{}, fmt.Errorf("create template %q: %w", t.Name, s.classify(err))
	}
	return t, nil
}

func (s *Store) AddTemplateVersion(ctx context.Context, t store.Template) (store.Template, error) {
	err := s.inTx(ctx, func(tx txn) error {
		latest, err := scanTemplate(s.queryRow(ctx, tx, `SELECT `+templateCols+` FROM templates WHERE tenant_id = ? AND id = ?
			ORDER BY version DESC LIMIT 1`+s.d.ForUpdate, t.TenantID, t.ID))
		if err != nil {
			return err
		}
		t.Version, t.Channel = latest.Version+1, latest.Channel
		t, err = s.insertTemplate(ctx, tx, t)
		return err
	})
	if err != nil {
		return store.Template{}, fmt.Errorf("add a version to template %s: %w", t.ID, s.classify(err))
	}
	return t, nil
}

func (s *Store) GetTemplate(ctx context.Context, tenantID, id string, version int) (store.Template, error) {
	l := newList(templateCols, `templates`).where(`tenant_id = ? AND id = ?`, tenantID, id)
	query, args := eq(l, `version`, version).page(`version DESC`, 1)
	t, err := scanTemplate(s.queryRow(ctx, s.reads, query, args...))
	if err != nil {
		return store.Template{}, fmt.Errorf("get version %d of template %s: %w", version, id, s.classify(err))
	}
	return t, nil
}

func (s *Store) ListTemplates(ctx context.Context, tenantID, channel string) ([]store.Template, error) {
	l := newList(templateCols, `templates t`).where(`tenant_id = ?`, tenantID).
		where(`version = (SELECT MAX(version) FROM templates v WHERE v.tenant_id = t.tenant_id AND v.id = t.id)`)
	query, args := eq(l, `channel`, channel).page(`id`, 0)
	ts, err := selectAll(ctx, s, scanTemplate, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list templates of tenant %s: %w", tenantID, err)
	}
	return ts, nil
}

func (s *Store) ListTemplateVersions(ctx context.Context, tenantID, id string) ([]store.Template, error) {
	ts, err := selectAll(ctx, s, scanTemplate, `SELECT `+templateCols+` FROM templates WHERE tenant_id = ? AND id = ? ORDER BY version`,
		tenantID, id)
	if err == nil && len(ts) == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("list versions of template %s: %w", id, err)
	}
	return ts, nil
}

func (s *Store) DeleteTemplate(ctx context.Context, tenantID, id string) error {
	if err := s.execOne(ctx, s.db, `DELETE FROM templates WHERE tenant_id = ? AND id = ?`, tenantID, id); err != nil {
		return fmt.Errorf("delete template %s: %w", id, s.classify(err))
	}
	return nil
}
