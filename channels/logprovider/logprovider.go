// Package logprovider is the provider of channels that have no account
// configured: it writes each message to the process's log and reports it
// sent, so that journeys run end to end before any provider is set up.
package logprovider

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/kalcifer/kalcifer/channels"
)

// Kind sends on every channel. Logging a message twice is harmless, so a
// send whose outcome is unknown is simply logged again.
var Kind = channels.Kind{
	Name:       "log",
	Channels:   []string{channels.Email, channels.SMS, channels.WhatsApp, channels.Push, channels.Webhook},
	Idempotent: true,
	New: func(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
		var none struct{}
		if len(config) > 0 {
			if err := channels.DecodeConfig(config, &none); err != nil {
				return nil, err
			}
		}
		return provider{log: deps.Logger}, nil
	},
}

type provider struct{ log *slog.Logger }

// Send logs the message; the key doubles as the message id, so a replay
// logs the same id.
func (p provider) Send(_ context.Context, m channels.Message) (string, error) {
	p.log.Info("delivery sent", "provider", "log", "tenant_id", m.TenantID, "delivery_id", m.DeliveryID, "key", m.Key,
		"channel", m.Channel)
	return m.Key, nil
}
