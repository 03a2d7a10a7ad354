package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// APIKeyPrefix starts every Kalcifer API key, so that secret scanners and
// people recognise one.
const APIKeyPrefix = "kal_"

// GenerateAPIKey returns a new secret: kal_ followed by 32 random bytes in hex.
func GenerateAPIKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return APIKeyPrefix + hex.EncodeToString(b[:])
}

// HashAPIKey is the only form in which a key is stored.
func HashAPIKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// IssueAPIKey creates a key for the tenant and returns the stored record and
// the secret, which is never retrievable again.
func IssueAPIKey(ctx context.Context, t Tenants, tenantID, name string, now time.Time) (APIKey, string, error) {
	secret := GenerateAPIKey()
	key, err := t.CreateAPIKey(ctx, APIKey{
		TenantID:  tenantID,
		Name:      name,
		Prefix:    secret[:len(APIKeyPrefix)+8],
		Hash:      HashAPIKey(secret),
		CreatedAt: now,
	})
	if err != nil {
		return APIKey{}, "", fmt.Errorf("issue api key for tenant %s: %w", tenantID, err)
	}
	return key, secret, nil
}

// CreateTenantWithKey creates a tenant and its first API key.
func CreateTenantWithKey(ctx context.Context, t Tenants, name string, now time.Time) (Tenant, string, error) {
	tenant, err := t.CreateTenant(ctx, name, now)
	if err != nil {
		return Tenant{}, "", fmt.Errorf("create tenant %q: %w", name, err)
	}
	_, secret, err := IssueAPIKey(ctx, t, tenant.ID, "default", now)
	if err != nil {
		return Tenant{}, "", err
	}
	return tenant, secret, nil
}
