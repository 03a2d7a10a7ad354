package sqlstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/kalcifer/kalcifer/store"
)

const providerCols = `tenant_id, id, name, kind, default_for, settings, secrets, rate, burst, created_at, updated_at`

func scanProvider(r scanner) (store.ProviderConfig, error) {
	var p store.ProviderConfig
	var defaults, settings []byte
	var secrets string
	var created, updated int64
	if err := r.Scan(&p.TenantID, &p.ID, &p.Name, &p.Kind, &defaults, &settings, &secrets, &p.Rate, &p.Burst, &created, &updated); err != nil {
		return p, err
	}
	p.Settings = settings
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	var err error
	if p.Secrets, err = base64.StdEncoding.DecodeString(secrets); err != nil {
		return p, fmt.Errorf("decode sealed secrets of provider %s: %w", p.ID, err)
	}
	return p, json.Unmarshal(defaults, &p.DefaultFor)
}

// providerArgs are the columns a create or update writes, in providerCols'
// order from name to burst.
func providerArgs(p store.ProviderConfig) ([]any, error) {
	defaults, err := jsonText(orNone(p.DefaultFor))
	if err != nil {
		return nil, err
	}
	return []any{p.Name, p.Kind, defaults, orEmpty(p.Settings), base64.StdEncoding.EncodeToString(p.Secrets), p.Rate, p.Burst}, nil
}

func orNone(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Store) CreateProvider(ctx context.Context, p store.ProviderConfig) (store.ProviderConfig, error) {
	p.ID = store.NewID("prv", stamp(p.CreatedAt))
	args, err := providerArgs(p)
	if err == nil {
		p, err = scanProvider(s.queryRow(ctx, s.db, `INSERT INTO providers (`+providerCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+providerCols,
			append(append([]any{p.TenantID, p.ID}, args...), stamp(p.CreatedAt).UnixMicro(), stamp(p.UpdatedAt).UnixMicro())...))
	}
	if err != nil {
		return store.ProviderConfig{}, fmt.Errorf("create provider %q: %w", p.Name, s.classify(err))
	}
	return p, nil
}

func (s *Store) GetProvider(ctx context.Context, tenantID, id string) (store.ProviderConfig, error) {
	p, err := scanProvider(s.queryRow(ctx, s.reads, `SELECT `+providerCols+` FROM providers WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if err != nil {
		return store.ProviderConfig{}, fmt.Errorf("get provider %s: %w", id, s.classify(err))
	}
	return p, nil
}

func (s *Store) ListProviders(ctx context.Context, tenantID string) ([]store.ProviderConfig, error) {
	ps, err := selectAll(ctx, s, scanProvider, `SELECT `+providerCols+` FROM providers WHERE tenant_id = ? ORDER BY id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list providers of tenant %s: %w", tenantID, err)
	}
	return ps, nil
}

func (s *Store) UpdateProvider(ctx context.Context, p store.ProviderConfig) (store.ProviderConfig, error) {
	args, err := providerArgs(p)
	if err == nil {
		p, err = scanProvider(s.queryRow(ctx, s.db, `UPDATE providers SET name = ?, kind = ?, default_for = ?, settings = ?,
			secrets = ?, rate = ?, burst = ?, updated_at = ? WHERE tenant_id = ? AND id = ? RETURNING `+providerCols,
			append(args, stamp(p.UpdatedAt).UnixMicro(), p.TenantID, p.ID)...))
	}
	if err != nil {
		return store.ProviderConfig{}, fmt.Errorf("update provider %s: %w", p.ID, s.classify(err))
	}
	return p, nil
}

func (s *Store) DeleteProvider(ctx context.Context, tenantID, id string) error {
	if err := s.execOne(ctx, s.db, `DELETE FROM providers WHERE tenant_id = ? AND id = ?`, tenantID, id); err != nil {
		return fmt.Errorf("delete provider %s: %w", id, s.classify(err))
	}
	return nil
}
