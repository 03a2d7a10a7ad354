package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

func (s *Store) CreateTenant(ctx context.Context, name string, at time.Time) (store.Tenant, error) {
	at = stamp(at)
	t := store.Tenant{ID: store.NewID("ten", at), Name: name, CreatedAt: at}
	_, err := s.exec(ctx, s.db, `INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)`,
		t.ID, t.Name, at.UnixMicro())
	if err != nil {
		return store.Tenant{}, fmt.Errorf("create tenant %q: %w", name, s.classify(err))
	}
	return t, nil
}

const tenantCols = `id, name, settings, created_at`

func scanTenant(r scanner) (store.Tenant, error) {
	var t store.Tenant
	var created int64
	var settings []byte
	if err := r.Scan(&t.ID, &t.Name, &settings, &created); err != nil {
		return t, err
	}
	t.CreatedAt = fromMicros(created)
	return t, json.Unmarshal(settings, &t.Settings)
}

func (s *Store) UpdateTenantSettings(ctx context.Context, tenantID string, settings store.TenantSettings) (store.Tenant, error) {
	text, err := jsonText(settings)
	var t store.Tenant
	if err == nil {
		t, err = scanTenant(s.queryRow(ctx, s.db, `UPDATE tenants SET settings = ? WHERE id = ? RETURNING `+tenantCols,
			text, tenantID))
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("update settings of tenant %s: %w", tenantID, s.classify(err))
	}
	return t, nil
}

func (s *Store) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := scanTenant(s.queryRow(ctx, s.reads, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id))
	if err != nil {
		return store.Tenant{}, fmt.Errorf("get tenant %s: %w", id, s.classify(err))
	}
	return t, nil
}

func (s *Store) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	ts, err := selectAll(ctx, s, scanTenant, `SELECT `+tenantCols+` FROM tenants ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return ts, nil
}

const apiKeyCols = `id, tenant_id, name, prefix, key_hash, created_at, revoked_at, last_used_at`

func scanAPIKey(r scanner) (store.APIKey, error) {
	var k store.APIKey
	var created int64
	var revoked, used sql.NullInt64
	err := r.Scan(&k.ID, &k.TenantID, &k.Name, &k.Prefix, &k.Hash, &created, &revoked, &used)
	k.CreatedAt, k.RevokedAt, k.LastUsedAt = fromMicros(created), fromNullMicros(revoked), fromNullMicros(used)
	return k, err
}

func (s *Store) CreateAPIKey(ctx context.Context, key store.APIKey) (store.APIKey, error) {
	key.CreatedAt = stamp(key.CreatedAt)
	key.ID = store.NewID("key", key.CreatedAt)
	key.RevokedAt, key.LastUsedAt = nil, nil
	_, err := s.exec(ctx, s.db, `INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		key.ID, key.TenantID, key.Name, key.Prefix, key.Hash, key.CreatedAt.UnixMicro())
	if err != nil {
		return store.APIKey{}, fmt.Errorf("create api key for tenant %s: %w", key.TenantID, s.classify(err))
	}
	return key, nil
}

func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]store.APIKey, error) {
	ks, err := selectAll(ctx, s, scanAPIKey, `SELECT `+apiKeyCols+` FROM api_keys WHERE tenant_id = ? ORDER BY id`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("list api keys of tenant %s: %w", tenantID, err)
	}
	return ks, nil
}

func (s *Store) RevokeAPIKey(ctx context.Context, tenantID, keyID string, at time.Time) (store.APIKey, error) {
	k, err := scanAPIKey(s.queryRow(ctx, s.db, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?)
		WHERE tenant_id = ? AND id = ? RETURNING `+apiKeyCols,
		stamp(at).UnixMicro(), tenantID, keyID))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("revoke api key %s: %w", keyID, s.classify(err))
	}
	return k, nil
}

// APIKeyByHash is the one lookup across tenants: authentication starts
// from the secret alone and learns the tenant from the key.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	k, err := scanAPIKey(s.queryRow(ctx, s.reads, `SELECT `+apiKeyCols+` FROM api_keys WHERE key_hash = ?`, hash))
	if err != nil {
		return store.APIKey{}, fmt.Errorf("api key by hash: %w", s.classify(err))
	}
	return k, nil
}

// TouchAPIKey keeps the latest time: requests finishing out of order must
// not move last_used_at backwards.
func (s *Store) TouchAPIKey(ctx context.Context, keyID string, at time.Time) error {
	us := stamp(at).UnixMicro()
	err := s.execOne(ctx, s.db, `UPDATE api_keys SET last_used_at =
		CASE WHEN last_used_at IS NULL OR last_used_at < ? THEN ? ELSE last_used_at END
		WHERE id = ?`, us, us, keyID)
	if err != nil {
		return fmt.Errorf("touch api key %s: %w", keyID, s.classify(err))
	}
	return nil
}
