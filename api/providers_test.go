package api_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/providers"
	"github.com/kalcifer/kalcifer/channels/status"
	"github.com/kalcifer/kalcifer/secrets"
	"github.com/kalcifer/kalcifer/store"
)

// rig is the delivery side of a server: provider accounts over its store
// and a status intake whose events are recorded instead of ingested.
type rig struct {
	accounts *accounts.Manager
	mu       sync.Mutex
	emitted  []emitted
}

type emitted struct {
	tenantID, externalID string
	event                status.Event
}

func (r *rig) events() []emitted {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.emitted)
}

// channelsOn gives the server accounts and an intake; sealed says whether
// the accounts have a secret key to seal credentials with.
func channelsOn(r *rig, sealed bool) func(*api.Options) {
	return func(o *api.Options) {
		var box *secrets.Box
		if sealed {
			key := make([]byte, secrets.KeySize)
			_, _ = rand.Read(key)
			var err error
			if box, err = secrets.New(key); err != nil {
				panic(err)
			}
		}
		now := func() time.Time { return start }
		m, err := accounts.New(accounts.Options{Store: o.Store.Providers(), Kinds: providers.All(), Box: box,
			Deps: channels.Deps{HTTP: http.DefaultClient, Now: now, Logger: o.Logger}})
		if err != nil {
			panic(err)
		}
		r.accounts = m
		o.Accounts = m
		o.Intake = &status.Intake{Store: o.Store, Accounts: m, Now: now,
			Emit: func(_ context.Context, tenant store.Tenant, externalID string, e status.Event) error {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.emitted = append(r.emitted, emitted{tenant.ID, externalID, e})
				return nil
			}}
	}
}

// withChannels runs test on both stores with provider accounts and a
// status intake behind the API.
func withChannels(t *testing.T, sealed bool, test func(t *testing.T, e *env, r *rig)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			r := &rig{}
			test(t, newEnv(t, b.open(t), channelsOn(r, sealed)), r)
		})
	}
}

type providerJSON struct {
	ID          string          `json:"id"`
	TenantID    string          `json:"tenant_id"`
	Name        string          `json:"name"`
	Kind        string          `json:"kind"`
	DefaultFor  []string        `json:"default_for"`
	Settings    map[string]any  `json:"settings"`
	SecretsSet  []string        `json:"secrets_set"`
	Secrets     json.RawMessage `json:"secrets"`
	Rate        float64         `json:"rate"`
	Burst       int             `json:"burst"`
	CallbackURL string          `json:"callback_url"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// The credentials of the Postmark account the tests configure.
const (
	serverToken     = "pm-server-token-5f2b9"
	webhookPassword = "pm-webhook-password-81c3"
)

func postmarkAccount(name string) map[string]any {
	return map[string]any{"name": name, "kind": "postmark", "default_for": []string{"email"}, "rate": 10, "burst": 20,
		"config": map[string]any{"server_token": serverToken, "from": "Acme <hello@acme.test>",
			"webhook_username": "hooks", "webhook_password": webhookPassword}}
}

// noCredentials fails the test if an answer carries a credential.
func noCredentials(t testing.TB, r response) response {
	t.Helper()
	for _, secret := range []string{serverToken, webhookPassword, "rotated-token"} {
		if strings.Contains(string(r.body), secret) {
			t.Fatalf("the answer carries a credential: %s", r.body)
		}
	}
	return r
}

// storedConfig opens the account's stored configuration as the outbox would.
func storedConfig(t *testing.T, e *env, r *rig, id string) map[string]string {
	t.Helper()
	p, err := e.store.Providers().GetProvider(t.Context(), e.tenant.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.accounts.Config(p)
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]string
	if err := json.Unmarshal(raw, &config); err != nil {
		t.Fatal(err)
	}
	return config
}

func TestProviderKinds(t *testing.T) {
	withChannels(t, true, func(t *testing.T, e *env, _ *rig) {
		type kindJSON struct {
			Name       string   `json:"name"`
			Channels   []string `json:"channels"`
			Idempotent bool     `json:"idempotent"`
			Secrets    []string `json:"secrets"`
			Callbacks  bool     `json:"callbacks"`
		}
		got := ok[struct{ Data []kindJSON }](e.do("GET", "/provider-kinds", nil), http.StatusOK)
		byName := map[string]kindJSON{}
		var names []string
		for _, k := range got.Data {
			byName[k.Name] = k
			names = append(names, k.Name)
		}
		if len(names) != len(providers.All()) || !slices.IsSorted(names) {
			t.Fatalf("kinds %v", names)
		}
		if pm := byName["postmark"]; !slices.Equal(pm.Channels, []string{"email"}) || pm.Idempotent || !pm.Callbacks ||
			!slices.Equal(pm.Secrets, []string{"server_token", "webhook_password"}) {
			t.Fatalf("postmark %+v", pm)
		}
		if lg := byName["log"]; lg.Callbacks || !lg.Idempotent || lg.Secrets == nil || len(lg.Channels) != 5 {
			t.Fatalf("log %+v", lg)
		}
	})
}

func TestProviderCRUD(t *testing.T) {
	withChannels(t, true, func(t *testing.T, e *env, r *rig) {
		created := ok[providerJSON](noCredentials(t, e.do("POST", "/providers", postmarkAccount("pm"))), http.StatusCreated)
		if !strings.HasPrefix(created.ID, "prv_") || created.Name != "pm" || created.Kind != "postmark" ||
			!slices.Equal(created.DefaultFor, []string{"email"}) || created.Rate != 10 || created.Burst != 20 ||
			created.Settings["from"] != "Acme <hello@acme.test>" || created.Settings["webhook_username"] != "hooks" ||
			created.Settings["server_token"] != nil || created.Secrets != nil ||
			!slices.Equal(created.SecretsSet, []string{"server_token", "webhook_password"}) ||
			created.CallbackURL != "/api/v1/callbacks/"+e.tenant.ID+"/"+created.ID || !created.CreatedAt.Equal(start) {
			t.Fatalf("created %+v", created)
		}
		got := ok[providerJSON](noCredentials(t, e.do("GET", "/providers/"+created.ID, nil)), http.StatusOK)
		if got.ID != created.ID || !slices.Equal(got.SecretsSet, created.SecretsSet) {
			t.Fatalf("got %+v", got)
		}
		all := ok[struct{ Data []providerJSON }](noCredentials(t, e.do("GET", "/providers", nil)), http.StatusOK)
		if len(all.Data) != 1 || all.Data[0].ID != created.ID {
			t.Fatalf("list %+v", all.Data)
		}

		// A change of settings that leaves the credentials out keeps them.
		e.clock.Advance(time.Minute)
		change := postmarkAccount("pm-main")
		change["config"] = map[string]any{"from": "Acme News <news@acme.test>", "webhook_username": "hooks"}
		change["default_for"] = nil
		updated := ok[providerJSON](noCredentials(t, e.do("PUT", "/providers/"+created.ID, change)), http.StatusOK)
		if updated.ID != created.ID || updated.Name != "pm-main" || len(updated.DefaultFor) != 0 || updated.DefaultFor == nil ||
			updated.Settings["from"] != "Acme News <news@acme.test>" ||
			!slices.Equal(updated.SecretsSet, []string{"server_token", "webhook_password"}) ||
			!updated.CreatedAt.Equal(start) || !updated.UpdatedAt.After(start) {
			t.Fatalf("updated %+v", updated)
		}
		config := storedConfig(t, e, r, created.ID)
		if config["server_token"] != serverToken || config["webhook_password"] != webhookPassword || config["from"] != "Acme News <news@acme.test>" {
			t.Fatalf("stored config %v", config)
		}
		p, err := e.store.Providers().GetProvider(t.Context(), e.tenant.ID, created.ID)
		if err != nil || strings.Contains(string(p.Secrets), serverToken) || strings.Contains(string(p.Settings), serverToken) {
			t.Fatalf("credentials stored in the clear: %s %q (%v)", p.Settings, p.Secrets, err)
		}
		// One credential sent replaces that one only.
		change["config"] = map[string]any{"from": "Acme <hello@acme.test>", "webhook_username": "hooks", "server_token": "rotated-token"}
		noCredentials(t, e.do("PUT", "/providers/"+created.ID, change))
		if config := storedConfig(t, e, r, created.ID); config["server_token"] != "rotated-token" || config["webhook_password"] != webhookPassword {
			t.Fatalf("stored config %v", config)
		}
		// A change of kind keeps none.
		changed := ok[providerJSON](e.do("PUT", "/providers/"+created.ID, map[string]any{"name": "pm-main", "kind": "log"}), http.StatusOK)
		if changed.Kind != "log" || len(changed.SecretsSet) != 0 || changed.CallbackURL != "" || len(changed.Settings) != 0 {
			t.Fatalf("changed kind %+v", changed)
		}
		if p, err := e.store.Providers().GetProvider(t.Context(), e.tenant.ID, created.ID); err != nil || len(p.Secrets) != 0 {
			t.Fatalf("credentials kept across kinds: %q (%v)", p.Secrets, err)
		}

		e.do("DELETE", "/providers/"+created.ID, nil).expect(http.StatusNoContent)
		e.do("GET", "/providers/"+created.ID, nil).fails(http.StatusNotFound, "provider_not_found")
		e.do("DELETE", "/providers/"+created.ID, nil).fails(http.StatusNotFound, "provider_not_found")
		e.do("PUT", "/providers/prv_nope", postmarkAccount("pm")).fails(http.StatusNotFound, "provider_not_found")
	})
}

func TestProviderValidation(t *testing.T) {
	withChannels(t, true, func(t *testing.T, e *env, _ *rig) {
		first := ok[providerJSON](e.do("POST", "/providers", postmarkAccount("pm")), http.StatusCreated)
		second := ok[providerJSON](e.do("POST", "/providers", map[string]any{"name": "logs", "kind": "log"}), http.StatusCreated)
		if second.CallbackURL != "" || second.SecretsSet == nil || string(mustJSON(t, second.Settings)) != "{}" {
			t.Fatalf("log account %+v", second)
		}
		e.do("POST", "/providers", postmarkAccount("pm")).fails(http.StatusConflict, "provider_name_taken")
		e.do("PUT", "/providers/"+second.ID, map[string]any{"name": "pm", "kind": "log"}).fails(http.StatusConflict, "provider_name_taken")

		withConfig := func(name string, config map[string]any) map[string]any {
			body := postmarkAccount(name)
			body["config"] = config
			return body
		}
		for _, tc := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"unknown kind", map[string]any{"name": "x", "kind": "carrier_pigeon"}, 422, "unknown_provider_kind"},
			{"refused config", withConfig("x", map[string]any{"server_token": "t"}), 422, "invalid_provider_config"},
			{"unknown config field", withConfig("x", map[string]any{"server_token": "t", "from": "a@b.test", "colour": "red"}), 422, "invalid_provider_config"},
			{"default for a channel the kind lacks", map[string]any{"name": "x", "kind": "postmark", "default_for": []string{"sms"},
				"config": map[string]any{"server_token": "t", "from": "a@b.test"}}, 422, "invalid_provider_config"},
			{"default for no channel", map[string]any{"name": "x", "kind": "log", "default_for": []string{"fax"}}, 400, "invalid_field"},
			{"missing name", map[string]any{"kind": "log"}, 400, "missing_field"},
			{"missing kind", map[string]any{"name": "x"}, 400, "missing_field"},
			{"name with capitals", map[string]any{"name": "Main", "kind": "log"}, 400, "invalid_field"},
			{"name too long", map[string]any{"name": strings.Repeat("a", 65), "kind": "log"}, 400, "invalid_field"},
			{"empty name", map[string]any{"name": "", "kind": "log"}, 400, "invalid_field"},
			{"negative rate", map[string]any{"name": "x", "kind": "log", "rate": -1}, 400, "invalid_field"},
			{"negative burst", map[string]any{"name": "x", "kind": "log", "burst": -1}, 400, "invalid_field"},
			{"config not an object", map[string]any{"name": "x", "kind": "log", "config": []int{1}}, 400, "invalid_field"},
			{"unknown field", map[string]any{"name": "x", "kind": "log", "secrets": map[string]any{}}, 400, "unknown_field"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := e.with(t)
				got := e.do("POST", "/providers", tc.body).fails(tc.status, tc.code)
				if tc.code == "invalid_provider_config" && !strings.Contains(got.Error.Message, " ") {
					t.Fatalf("message %q does not say what is wrong", got.Error.Message)
				}
			})
		}
		if got := ok[struct{ Data []providerJSON }](e.do("GET", "/providers", nil), http.StatusOK); len(got.Data) != 2 {
			t.Fatalf("refused accounts were stored: %+v", got.Data)
		}

		// Another tenant's accounts are unknown here.
		_, otherKey := e.newTenant("other")
		e.as(otherKey, "GET", "/providers/"+first.ID, nil).fails(http.StatusNotFound, "provider_not_found")
		e.as(otherKey, "PUT", "/providers/"+first.ID, postmarkAccount("pm")).fails(http.StatusNotFound, "provider_not_found")
		e.as(otherKey, "DELETE", "/providers/"+first.ID, nil).fails(http.StatusNotFound, "provider_not_found")
		if got := ok[struct{ Data []providerJSON }](e.as(otherKey, "GET", "/providers", nil), http.StatusOK); got.Data == nil || len(got.Data) != 0 {
			t.Fatalf("another tenant sees %+v", got.Data)
		}
		// The same name is free in another tenant.
		ok[providerJSON](e.as(otherKey, "POST", "/providers", postmarkAccount("pm")), http.StatusCreated)
		e.do("GET", "/providers/"+first.ID, nil).expect(http.StatusOK)
	})
}

// TestProviderCredentialsNeedAKey: without a secret key, credentials are
// refused with a message that says what to set, and accounts without any
// are still stored.
func TestProviderCredentialsNeedAKey(t *testing.T) {
	withChannels(t, false, func(t *testing.T, e *env, _ *rig) {
		got := e.do("POST", "/providers", postmarkAccount("pm")).fails(http.StatusConflict, "secret_key_not_configured")
		if !strings.Contains(got.Error.Message, "KALCIFER_SECRET_KEY") {
			t.Fatalf("message %q", got.Error.Message)
		}
		ok[providerJSON](e.do("POST", "/providers", map[string]any{"name": "logs", "kind": "log"}), http.StatusCreated)
	})
}

func TestChannelRoutesWithoutChannels(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/provider-kinds", ""},
			{"GET", "/providers", ""},
			{"POST", "/providers", `{"name":"logs","kind":"log"}`},
			{"GET", "/providers/prv_1", ""},
			{"PUT", "/providers/prv_1", `{"name":"logs","kind":"log"}`},
			{"DELETE", "/providers/prv_1", ""},
		} {
			e.do(r.method, r.path, r.body).fails(http.StatusServiceUnavailable, "channels_unavailable")
			e.as("kal_wrong", r.method, r.path, r.body).fails(http.StatusUnauthorized, "invalid_api_key")
		}
		for _, method := range []string{"GET", "POST"} {
			e.send(request{method: method, path: "/callbacks/" + e.tenant.ID + "/prv_1", body: "{}", key: new("")}).
				fails(http.StatusServiceUnavailable, "channels_unavailable")
		}
	})
}

// expect asserts the status of an answer that has no body to decode.
func (r response) expect(status int) {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
