package main

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/providers"
	"github.com/kalcifer/kalcifer/channels/status"
	"github.com/kalcifer/kalcifer/config"
	"github.com/kalcifer/kalcifer/netguard"
	"github.com/kalcifer/kalcifer/secrets"
	"github.com/kalcifer/kalcifer/store"
)

// providerAccounts builds the tenants' provider accounts: every provider
// kind, reaching out only through the SSRF guard, with credentials sealed
// under the secret key.
func providerAccounts(cfg config.Config, st store.Store, logger *slog.Logger) (*accounts.Manager, error) {
	box, err := secretBox(cfg, logger)
	if err != nil {
		return nil, err
	}
	guard := netguard.New(cfg.Delivery.OutboundAllow)
	deps := channels.Deps{HTTP: guard.HTTPClient(time.Minute, nil), Dial: guard.DialContext, Now: time.Now, Logger: logger}
	return accounts.New(accounts.Options{Store: st.Providers(), Kinds: providers.All(), Box: box, Deps: deps, Fallback: cfg.Delivery.Fallback})
}

// secretBox seals credentials with the configured key; without one, a
// single node on SQLite keeps a key beside its database, and PostgreSQL,
// whose nodes must share a key, gets none.
func secretBox(cfg config.Config, logger *slog.Logger) (*secrets.Box, error) {
	key := cfg.Delivery.SecretKey
	if key == nil {
		if cfg.DatabaseURL != "" {
			logger.Warn("no secret_key is set: provider credentials cannot be stored until KALCIFER_SECRET_KEY is set")
			return nil, nil
		}
		path := filepath.Join(cfg.DataDir, "secret.key")
		var created bool
		var err error
		if key, created, err = secrets.LoadOrCreateKey(path); err != nil {
			return nil, err
		}
		if created {
			logger.Info("created a secret key for provider credentials; back it up with the database", "path", path)
		}
	}
	return secrets.New(key)
}

// statusIntake records providers' status callbacks and makes them the
// customers' events.
func statusIntake(st store.Store, accts *accounts.Manager, rt *actors.Runtime) *status.Intake {
	return &status.Intake{Store: st, Accounts: accts, Now: time.Now, Emit: rt.IngestStatus}
}
