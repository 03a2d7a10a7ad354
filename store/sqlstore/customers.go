package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

const customerCols = `tenant_id, id, external_id, email, phone, name, timezone,
	properties, tags, preferences, push_tokens, created_at, updated_at`

// scanCustomer returns empty maps and slices rather than nil ones, so that a
// customer encodes as {} and [] and callers can add to it.
func scanCustomer(r scanner) (store.Customer, error) {
	var c store.Customer
	var props, tags, prefs, tokens []byte
	var created, updated int64
	err := r.Scan(&c.TenantID, &c.ID, &c.ExternalID, &c.Email, &c.Phone, &c.Name, &c.Timezone,
		&props, &tags, &prefs, &tokens, &created, &updated)
	if err != nil {
		return c, err
	}
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	c.Properties, c.Tags, c.Preferences, c.PushTokens = map[string]any{}, []string{}, map[string]bool{}, []string{}
	for _, f := range []struct {
		raw []byte
		v   any
	}{{props, &c.Properties}, {tags, &c.Tags}, {prefs, &c.Preferences}, {tokens, &c.PushTokens}} {
		if err := json.Unmarshal(f.raw, f.v); err != nil {
			return c, fmt.Errorf("decode customer %s: %w", c.ID, err)
		}
	}
	return c, nil
}

// customerJSON encodes the customer's JSON columns in customerCols order.
func customerJSON(c store.Customer) ([]any, error) {
	out := make([]any, 0, 4)
	for _, v := range []any{c.Properties, c.Tags, c.Preferences, c.PushTokens} {
		text, err := jsonText(v)
		if err != nil {
			return nil, fmt.Errorf("encode customer %s: %w", c.ID, err)
		}
		out = append(out, text)
	}
	return out, nil
}

// applyPatch changes c as p says. A tag both added and removed ends up
// removed; tags keep the order they were first added in.
func applyPatch(c *store.Customer, p store.CustomerPatch, at time.Time) {
	for field, v := range map[*string]*string{&c.Email: p.Email, &c.Phone: p.Phone, &c.Name: p.Name, &c.Timezone: p.Timezone} {
		if v != nil {
			*field = *v
		}
	}
	for k, v := range p.Properties {
		if v == nil {
			delete(c.Properties, k)
		} else {
			c.Properties[k] = v
		}
	}
	for _, tag := range p.AddTags {
		if !slices.Contains(c.Tags, tag) {
			c.Tags = append(c.Tags, tag)
		}
	}
	c.Tags = slices.DeleteFunc(c.Tags, func(tag string) bool { return slices.Contains(p.RemoveTags, tag) })
	maps.Copy(c.Preferences, p.Preferences)
	if p.PushTokens != nil {
		c.PushTokens = append([]string{}, *p.PushTokens...)
	}
	c.UpdatedAt = at
}

// UpsertCustomer inserts first and patches on conflict, so that two calls
// racing for a new external id both succeed, one creating and one patching.
func (s *Store) UpsertCustomer(ctx context.Context, tenantID, externalID string, p store.CustomerPatch, at time.Time) (store.Customer, bool, error) {
	at = stamp(at)
	c := store.Customer{ID: store.NewID("cus", at), TenantID: tenantID, ExternalID: externalID,
		Properties: map[string]any{}, Tags: []string{}, Preferences: map[string]bool{}, PushTokens: []string{}, CreatedAt: at}
	applyPatch(&c, p, at)
	created := false
	err := s.inTx(ctx, func(tx txn) error {
		js, err := customerJSON(c)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `INSERT INTO customers (`+customerCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, external_id) DO NOTHING`,
			append([]any{c.TenantID, c.ID, c.ExternalID, c.Email, c.Phone, c.Name, c.Timezone}, append(js, at.UnixMicro(), at.UnixMicro())...)...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			created = true
			return err
		}
		c, err = s.patchCustomer(ctx, tx, tenantID, `external_id`, externalID, p, at)
		return err
	})
	if err != nil {
		return store.Customer{}, false, fmt.Errorf("upsert customer %q of tenant %s: %w", externalID, tenantID, s.classify(err))
	}
	return c, created, nil
}

// selectCustomer reads the customer whose column key (id or external_id)
// equals value; with lock it holds the row until the transaction ends.
func (s *Store) selectCustomer(ctx context.Context, q querier, tenantID, key, value string, lock bool) (store.Customer, error) {
	query := `SELECT ` + customerCols + ` FROM customers WHERE tenant_id = ? AND ` + key + ` = ?`
	if lock {
		query += s.d.ForUpdate
	}
	return scanCustomer(s.queryRow(ctx, q, query, tenantID, value))
}

// patchCustomer locks the customer whose column key equals value, applies p
// and writes it back.
func (s *Store) patchCustomer(ctx context.Context, tx txn, tenantID, key, value string, p store.CustomerPatch, at time.Time) (store.Customer, error) {
	c, err := s.selectCustomer(ctx, tx, tenantID, key, value, true)
	if err != nil {
		return c, err
	}
	applyPatch(&c, p, at)
	js, err := customerJSON(c)
	if err != nil {
		return c, err
	}
	_, err = s.exec(ctx, tx, `UPDATE customers SET email = ?, phone = ?, name = ?, timezone = ?,
		properties = ?, tags = ?, preferences = ?, push_tokens = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ?`,
		append([]any{c.Email, c.Phone, c.Name, c.Timezone}, append(js, at.UnixMicro(), c.TenantID, c.ID)...)...)
	return c, err
}

func (s *Store) PatchCustomer(ctx context.Context, tenantID, id string, p store.CustomerPatch, at time.Time) (store.Customer, error) {
	var c store.Customer
	err := s.inTx(ctx, func(tx txn) error {
		var err error
		c, err = s.patchCustomer(ctx, tx, tenantID, `id`, id, p, stamp(at))
		return err
	})
	if err != nil {
		return store.Customer{}, fmt.Errorf("patch customer %s: %w", id, s.classify(err))
	}
	return c, nil
}

func (s *Store) GetCustomer(ctx context.Context, tenantID, id string) (store.Customer, error) {
	c, err := s.selectCustomer(ctx, s.reads, tenantID, `id`, id, false)
	if err != nil {
		return store.Customer{}, fmt.Errorf("get customer %s: %w", id, s.classify(err))
	}
	return c, nil
}

func (s *Store) GetCustomerByExternalID(ctx context.Context, tenantID, externalID string) (store.Customer, error) {
	c, err := s.selectCustomer(ctx, s.reads, tenantID, `external_id`, externalID, false)
	if err != nil {
		return store.Customer{}, fmt.Errorf("get customer %q: %w", externalID, s.classify(err))
	}
	return c, nil
}

func (s *Store) ListCustomers(ctx context.Context, tenantID string, f store.CustomerFilter) ([]store.Customer, error) {
	l := newList(customerCols, `customers`).where(`tenant_id = ?`, tenantID)
	query, args := s.holding(l, `tags`, f.Tag).byID(f.After, f.Limit)
	cs, err := selectAll(ctx, s, scanCustomer, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list customers of tenant %s: %w", tenantID, err)
	}
	return cs, nil
}
