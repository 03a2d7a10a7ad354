// Package accounts manages tenants' provider accounts: it turns what the
// API receives into stored configurations, with the credential fields
// sealed, and stored configurations back into working providers for the
// outbox and the status callbacks.
package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/secrets"
	"github.com/kalcifer/kalcifer/store"
)

var (
	// ErrNoAccount is a node naming an account the tenant does not have,
	// or a channel the named account does not serve.
	ErrNoAccount = errors.New("no such provider account")
	// ErrUnknownKind is a configuration of a kind no provider implements.
	ErrUnknownKind = errors.New("unknown provider kind")
	// ErrNoSecretKey is a credential to store in a process without a
	// secret key to seal it with.
	ErrNoSecretKey = errors.New("no secret key is configured (set KALCIFER_SECRET_KEY) to store provider credentials")
)

// InvalidError is a configuration its provider refuses.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Account is a working provider account.
type Account struct {
	ID   string
	Name string
	Kind channels.Kind
	channels.Provider
	// Rate is the messages per second it may send (0: no limit), in
	// bursts of up to Burst.
	Rate  float64
	Burst int
	// Version changes whenever the configuration does.
	Version time.Time
}

// Manager builds and caches accounts.
type Manager struct {
	store    store.Providers
	kinds    map[string]channels.Kind
	box      *secrets.Box
	deps     channels.Deps
	fallback *Account
	ttl      time.Duration

	mu      sync.Mutex
	tenants map[string]*tenantAccounts
}

type tenantAccounts struct {
	loaded   time.Time
	accounts []*Account
	// defaults are the accounts that serve channels by default, by channel.
	defaults map[string]*Account
}

// Options configure a Manager.
type Options struct {
	Store store.Providers
	Kinds []channels.Kind
	// Box seals credentials; nil refuses configurations that have any.
	Box  *secrets.Box
	Deps channels.Deps
	// Fallback is the kind that sends on a channel a tenant has no account
	// for; empty fails such deliveries with no_provider.
	Fallback string
	// TTL is how long a tenant's accounts are used before they are read
	// again, which is how changes made on other nodes arrive; default 10 s.
	TTL time.Duration
}

// New returns a manager.
func New(o Options) (*Manager, error) {
	m := &Manager{store: o.Store, kinds: map[string]channels.Kind{}, box: o.Box, deps: o.Deps, ttl: o.TTL,
		tenants: map[string]*tenantAccounts{}}
	if m.ttl <= 0 {
		m.ttl = 10 * time.Second
	}
	if m.deps.Now == nil {
		m.deps.Now = time.Now
	}
	for _, k := range o.Kinds {
		m.kinds[k.Name] = k
	}
	if o.Fallback != "" {
		k, ok := m.kinds[o.Fallback]
		if !ok {
			return nil, fmt.Errorf("fallback provider %q: %w", o.Fallback, ErrUnknownKind)
		}
		p, err := k.New(nil, m.deps)
		if err != nil {
			return nil, fmt.Errorf("fallback provider %q: %w", o.Fallback, err)
		}
		m.fallback = &Account{ID: k.Name, Name: k.Name, Kind: k, Provider: p}
	}
	return m, nil
}

// Kinds lists the provider kinds, by name.
func (m *Manager) Kinds() []channels.Kind {
	ks := make([]channels.Kind, 0, len(m.kinds))
	for _, k := range m.kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}

// Deps are what the manager builds providers with.
func (m *Manager) Deps() channels.Deps { return m.deps }

// Kind returns the kind named name.
func (m *Manager) Kind(name string) (channels.Kind, bool) {
	k, ok := m.kinds[name]
	return k, ok
}

// For returns the account a delivery on channel goes through: the one
// named, else the tenant's default for the channel, else the only account
// that serves it, else the fallback.
func (m *Manager) For(ctx context.Context, tenantID, channel, name string) (*Account, error) {
	t, err := m.tenant(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	if name != "" {
		for _, a := range t.accounts {
			if a.Name == name {
				if !slices.Contains(a.Kind.Channels, channel) {
					return nil, fmt.Errorf("account %q (%s) does not send %s: %w", name, a.Kind.Name, channel, ErrNoAccount)
				}
				return a, nil
			}
		}
		return nil, fmt.Errorf("the node names account %q, which the tenant does not have: %w", name, ErrNoAccount)
	}
	if a := t.defaults[channel]; a != nil {
		return a, nil
	}
	if m.fallback != nil {
		return m.fallback, nil
	}
	return nil, fmt.Errorf("no account sends %s: configure a provider for it: %w", channel, ErrNoAccount)
}

// Invalidate drops the cached accounts of a tenant whose configurations
// changed.
func (m *Manager) Invalidate(tenantID string) {
	m.mu.Lock()
	if t := m.tenants[tenantID]; t != nil {
		t.loaded = time.Time{}
	}
	m.mu.Unlock()
}

func (m *Manager) tenant(ctx context.Context, tenantID string) (*tenantAccounts, error) {
	now := m.deps.Now()
	m.mu.Lock()
	t := m.tenants[tenantID]
	fresh := t != nil && now.Sub(t.loaded) < m.ttl
	m.mu.Unlock()
	if fresh {
		return t, nil
	}
	configs, err := m.store.ListProviders(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	// Accounts whose configuration did not change are kept: providers
	// hold what is costly to make again (APNs refuses new tokens more
	// often than every 20 minutes; FCM's OAuth tokens take a request).
	kept := map[string]*Account{}
	if t != nil {
		for _, a := range t.accounts {
			kept[a.ID] = a
		}
	}
	t = &tenantAccounts{loaded: now, defaults: map[string]*Account{}}
	serving := map[string][]*Account{}
	for _, p := range configs {
		a, err := kept[p.ID], error(nil)
		if a == nil || !a.Version.Equal(p.UpdatedAt) {
			a, err = m.build(p)
		}
		if err != nil {
			// One broken account (a key rotated away) must not stop the
			// tenant's others; deliveries that name it fail with the reason.
			a = &Account{ID: p.ID, Name: p.Name, Kind: channels.Kind{Name: p.Kind}, Provider: broken{err}, Version: p.UpdatedAt}
		}
		t.accounts = append(t.accounts, a)
		for _, ch := range a.Kind.Channels {
			serving[ch] = append(serving[ch], a)
		}
		for _, ch := range p.DefaultFor {
			t.defaults[ch] = a
		}
	}
	for ch, as := range serving {
		if t.defaults[ch] == nil && len(as) == 1 {
			t.defaults[ch] = as[0]
		}
	}
	m.mu.Lock()
	m.tenants[tenantID] = t
	m.mu.Unlock()
	return t, nil
}

func (m *Manager) build(p store.ProviderConfig) (*Account, error) {
	k, ok := m.kinds[p.Kind]
	if !ok {
		return nil, fmt.Errorf("%q: %w", p.Kind, ErrUnknownKind)
	}
	config, err := m.Config(p)
	if err != nil {
		return nil, err
	}
	prov, err := k.New(config, m.deps)
	if err != nil {
		return nil, fmt.Errorf("account %s: %w", p.Name, err)
	}
	return &Account{ID: p.ID, Name: p.Name, Kind: k, Provider: prov, Rate: p.Rate, Burst: p.Burst, Version: p.UpdatedAt}, nil
}

// broken stands in for an account whose configuration no longer builds.
type broken struct{ err error }

func (b broken) Send(context.Context, channels.Message) (string, error) {
	return "", channels.Permanent("provider_misconfigured", b.err)
}

// Config returns an account's whole configuration: its settings with its
// credentials opened into them.
func (m *Manager) Config(p store.ProviderConfig) (json.RawMessage, error) {
	fields := map[string]json.RawMessage{}
	if len(p.Settings) > 0 {
		if err := json.Unmarshal(p.Settings, &fields); err != nil {
			return nil, fmt.Errorf("settings of account %s: %w", p.Name, err)
		}
	}
	creds, err := m.credentials(p)
	if err != nil {
		return nil, err
	}
	maps.Copy(fields, creds)
	return json.Marshal(fields)
}

// credentials opens an account's sealed credential fields.
func (m *Manager) credentials(p store.ProviderConfig) (map[string]json.RawMessage, error) {
	creds := map[string]json.RawMessage{}
	if len(p.Secrets) == 0 {
		return creds, nil
	}
	if m.box == nil {
		return nil, fmt.Errorf("credentials of account %s: %w", p.Name, ErrNoSecretKey)
	}
	plain, err := m.box.Open(p.Secrets, p.TenantID)
	if err == nil {
		err = json.Unmarshal(plain, &creds)
	}
	if err != nil {
		return nil, fmt.Errorf("credentials of account %s: %w", p.Name, err)
	}
	return creds, nil
}

// Input is an account as the API receives it: Config holds every field,
// credentials included.
type Input struct {
	Name       string
	Kind       string
	DefaultFor []string
	Config     map[string]json.RawMessage
	Rate       float64
	Burst      int
}

// Prepare checks in and returns the configuration to store, its
// credentials sealed. When it replaces prev, credentials that in leaves
// out keep their stored values, so a change of settings need not send the
// credentials again. The provider is built once, so that a configuration
// it refuses is refused here and not at the first send.
func (m *Manager) Prepare(tenantID string, in Input, prev *store.ProviderConfig, at time.Time) (store.ProviderConfig, error) {
	k, ok := m.kinds[in.Kind]
	if !ok {
		return store.ProviderConfig{}, &InvalidError{fmt.Errorf("kind %q: %w", in.Kind, ErrUnknownKind)}
	}
	for _, ch := range in.DefaultFor {
		if !slices.Contains(k.Channels, ch) {
			return store.ProviderConfig{}, &InvalidError{fmt.Errorf("default_for: %s does not send %s (it sends %v)", k.Name, ch, k.Channels)}
		}
	}
	if in.Rate < 0 || in.Burst < 0 {
		return store.ProviderConfig{}, &InvalidError{errors.New("rate and burst must not be negative")}
	}
	settings, creds := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	if prev != nil {
		old, err := m.credentials(*prev)
		if err != nil {
			return store.ProviderConfig{}, err
		}
		for _, name := range k.Secrets {
			if v, ok := old[name]; ok {
				creds[name] = v
			}
		}
	}
	for name, v := range in.Config {
		if slices.Contains(k.Secrets, name) {
			creds[name] = v
		} else {
			settings[name] = v
		}
	}
	whole := maps.Clone(settings)
	maps.Copy(whole, creds)
	config, err := json.Marshal(whole)
	if err != nil {
		return store.ProviderConfig{}, err
	}
	if _, err := k.New(config, m.deps); err != nil {
		return store.ProviderConfig{}, &InvalidError{err}
	}
	p := store.ProviderConfig{TenantID: tenantID, Name: in.Name, Kind: in.Kind, DefaultFor: in.DefaultFor, Rate: in.Rate, Burst: in.Burst,
		CreatedAt: at, UpdatedAt: at}
	if p.Settings, err = json.Marshal(settings); err != nil {
		return store.ProviderConfig{}, err
	}
	if len(creds) > 0 {
		if m.box == nil {
			return store.ProviderConfig{}, ErrNoSecretKey
		}
		plain, err := json.Marshal(creds)
		if err != nil {
			return store.ProviderConfig{}, err
		}
		if p.Secrets, err = m.box.Seal(plain, tenantID); err != nil {
			return store.ProviderConfig{}, err
		}
	}
	if prev != nil {
		p.ID, p.CreatedAt = prev.ID, prev.CreatedAt
	}
	return p, nil
}

// SecretsSet lists which credential fields p has, never their values.
func (m *Manager) SecretsSet(p store.ProviderConfig) []string {
	creds, err := m.credentials(p)
	if err != nil || len(creds) == 0 {
		return []string{}
	}
	return slices.Sorted(maps.Keys(creds))
}
