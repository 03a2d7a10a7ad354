package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/store"
)

// requireAccounts answers 503 on the provider routes when the server runs
// without provider accounts, instead of leaving the routes unknown.
func (s *Server) requireAccounts(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.accounts == nil {
			return channelsUnavailable()
		}
		return next(c)
	}
}

func channelsUnavailable() *Error {
	return apiError(http.StatusServiceUnavailable, "channels_unavailable", "this server runs without delivery channels")
}

// providerKind is a provider implementation as GET /provider-kinds lists it.
type providerKind struct {
	Name     string   `json:"name"`
	Channels []string `json:"channels"`
	// Idempotent says a send whose outcome is unknown may be repeated.
	Idempotent bool `json:"idempotent"`
	// Secrets are the configuration fields that are credentials: stored
	// sealed and never returned.
	Secrets []string `json:"secrets"`
	// Callbacks says the provider posts status callbacks.
	Callbacks bool `json:"callbacks"`
}

func (s *Server) listProviderKinds(c echo.Context) error {
	kinds := s.accounts.Kinds()
	out := make([]providerKind, len(kinds))
	for i, k := range kinds {
		out[i] = providerKind{Name: k.Name, Channels: nonNil(k.Channels), Idempotent: k.Idempotent,
			Secrets: nonNil(k.Secrets), Callbacks: k.Statuses != nil}
	}
	return c.JSON(http.StatusOK, list[providerKind]{Data: out})
}

// providerView is an account as the API answers it: its settings and the
// names of the credentials it has, never their values.
type providerView struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	DefaultFor []string        `json:"default_for"`
	Settings   json.RawMessage `json:"settings"`
	SecretsSet []string        `json:"secrets_set"`
	Rate       float64         `json:"rate"`
	Burst      int             `json:"burst"`
	// CallbackURL is the path to give the provider for its status
	// callbacks, for kinds that send them.
	CallbackURL string    `json:"callback_url,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func (s *Server) providerView(p store.ProviderConfig) providerView {
	v := providerView{ID: p.ID, Name: p.Name, Kind: p.Kind, DefaultFor: nonNil(p.DefaultFor), Settings: p.Settings,
		SecretsSet: s.accounts.SecretsSet(p), Rate: p.Rate, Burst: p.Burst, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if len(v.Settings) == 0 {
		v.Settings = json.RawMessage(`{}`)
	}
	if k, ok := s.accounts.Kind(p.Kind); ok && (k.Statuses != nil || k.Challenge != nil) {
		v.CallbackURL = callbackPath(p.TenantID, p.ID)
	}
	return v
}

func callbackPath(tenantID, providerID string) string {
	return BasePath + "/callbacks/" + url.PathEscape(tenantID) + "/" + url.PathEscape(providerID)
}

// providerName is what a node's provider field can name: short, and safe
// in logs and metrics labels.
var providerName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// providerRequest is the body of POST /providers and PUT /providers/:id.
// Config holds every field of the kind's configuration, credentials
// included; a PUT that leaves a credential out keeps the stored one.
type providerRequest struct {
	Name       *string                    `json:"name"`
	Kind       *string                    `json:"kind"`
	DefaultFor []string                   `json:"default_for"`
	Config     map[string]json.RawMessage `json:"config"`
	Rate       *float64                   `json:"rate"`
	Burst      *int                       `json:"burst"`
}

func (r *providerRequest) check() error {
	switch {
	case r.Name == nil:
		return missingField("name")
	case !providerName.MatchString(*r.Name):
		return invalidField("name", "must be 1 to 64 lowercase letters, digits, '_' or '-'")
	case r.Kind == nil:
		return missingField("kind")
	case *r.Kind == "":
		return invalidField("kind", "must not be blank")
	case r.Rate != nil && *r.Rate < 0:
		return invalidField("rate", "must not be negative")
	case r.Burst != nil && *r.Burst < 0:
		return invalidField("burst", "must not be negative")
	}
	for i, ch := range r.DefaultFor {
		if !slices.Contains(deliveryChannels, ch) {
			return invalidField(fmt.Sprintf("default_for[%d]", i), fmt.Sprintf("must be one of %v", deliveryChannels))
		}
	}
	return nil
}

func (r *providerRequest) input() accounts.Input {
	in := accounts.Input{Name: *r.Name, Kind: *r.Kind, DefaultFor: slices.Compact(slices.Sorted(slices.Values(r.DefaultFor))),
		Config: r.Config}
	if r.Rate != nil {
		in.Rate = *r.Rate
	}
	if r.Burst != nil {
		in.Burst = *r.Burst
	}
	return in
}

// providerError maps what preparing or storing an account failed with.
func providerError(err error, kind string) error {
	var invalid *accounts.InvalidError
	switch {
	case errors.Is(err, accounts.ErrUnknownKind):
		e := apiError(http.StatusUnprocessableEntity, "unknown_provider_kind",
			fmt.Sprintf("there is no provider kind %q; GET /provider-kinds lists them", kind))
		e.Details = map[string]string{"field": "kind"}
		return e
	case errors.As(err, &invalid):
		return apiError(http.StatusUnprocessableEntity, "invalid_provider_config", invalid.Error())
	case errors.Is(err, accounts.ErrNoSecretKey):
		return apiError(http.StatusConflict, "secret_key_not_configured",
			"this server has no secret key to seal provider credentials with; set KALCIFER_SECRET_KEY and restart it")
	case errors.Is(err, store.ErrConflict):
		e := apiError(http.StatusConflict, "provider_name_taken", "the tenant has another provider account of this name")
		e.Details = map[string]string{"field": "name"}
		return e
	default:
		return storeError(err, "provider_not_found", "provider")
	}
}

func (s *Server) createProvider(c echo.Context) error {
	var req providerRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	tenant := tenantID(c)
	p, err := s.accounts.Prepare(tenant, req.input(), nil, s.now())
	if err != nil {
		return providerError(err, *req.Kind)
	}
	p, err = s.store.Providers().CreateProvider(c.Request().Context(), p)
	if err != nil {
		return providerError(err, *req.Kind)
	}
	s.accounts.Invalidate(tenant)
	return c.JSON(http.StatusCreated, s.providerView(p))
}

func (s *Server) listProviders(c echo.Context) error {
	ps, err := s.store.Providers().ListProviders(c.Request().Context(), tenantID(c))
	if err != nil {
		return storeError(err, "provider_not_found", "providers")
	}
	out := make([]providerView, len(ps))
	for i, p := range ps {
		out[i] = s.providerView(p)
	}
	return c.JSON(http.StatusOK, list[providerView]{Data: out})
}

func (s *Server) loadProvider(c echo.Context) (store.ProviderConfig, error) {
	p, err := s.store.Providers().GetProvider(c.Request().Context(), tenantID(c), c.Param("id"))
	if err != nil {
		return p, storeError(err, "provider_not_found", "provider")
	}
	return p, nil
}

func (s *Server) getProvider(c echo.Context) error {
	p, err := s.loadProvider(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.providerView(p))
}

// updateProvider replaces the account. Credentials the body leaves out keep
// their stored values, unless the kind changes: one provider's credential
// is never handed to another.
func (s *Server) updateProvider(c echo.Context) error {
	var req providerRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	prev, err := s.loadProvider(c)
	if err != nil {
		return err
	}
	if prev.Kind != *req.Kind || s.sendsEveryCredential(req) {
		// Nothing stored is kept, so nothing stored need be opened: a body
		// with every credential also replaces ones sealed under a lost key.
		prev.Secrets = nil
	}
	p, err := s.accounts.Prepare(prev.TenantID, req.input(), &prev, s.now())
	if err != nil {
		return providerError(err, *req.Kind)
	}
	p, err = s.store.Providers().UpdateProvider(c.Request().Context(), p)
	if err != nil {
		return providerError(err, *req.Kind)
	}
	s.accounts.Invalidate(prev.TenantID)
	return c.JSON(http.StatusOK, s.providerView(p))
}

// sendsEveryCredential reports whether the body holds each credential
// field of its kind.
func (s *Server) sendsEveryCredential(req providerRequest) bool {
	k, ok := s.accounts.Kind(*req.Kind)
	if !ok {
		return false
	}
	for _, name := range k.Secrets {
		if _, sent := req.Config[name]; !sent {
			return false
		}
	}
	return true
}

func (s *Server) deleteProvider(c echo.Context) error {
	tenant := tenantID(c)
	if err := s.store.Providers().DeleteProvider(c.Request().Context(), tenant, c.Param("id")); err != nil {
		return storeError(err, "provider_not_found", "provider")
	}
	s.accounts.Invalidate(tenant)
	return c.NoContent(http.StatusNoContent)
}
