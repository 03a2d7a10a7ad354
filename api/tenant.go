package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/channels/outbox"
	"github.com/kalcifer/kalcifer/store"
)

// list is the envelope of every collection response, so that fields such as
// a cursor can be added without breaking clients.
type list[T any] struct {
	Data []T `json:"data"`
}

func (s *Server) getTenant(c echo.Context) error {
	t, err := s.store.Tenants().GetTenant(c.Request().Context(), tenantID(c))
	if err != nil {
		return storeError(err, "tenant_not_found", "tenant")
	}
	return c.JSON(http.StatusOK, t)
}

func (s *Server) listAPIKeys(c echo.Context) error {
	keys, err := s.store.Tenants().ListAPIKeys(c.Request().Context(), tenantID(c))
	if err != nil {
		return storeError(err, "api_key_not_found", "api keys")
	}
	return c.JSON(http.StatusOK, list[store.APIKey]{Data: nonNil(keys)})
}

// issuedAPIKey is the only response that ever carries a key's secret.
type issuedAPIKey struct {
	store.APIKey
	Secret string `json:"secret"`
}

func (s *Server) createAPIKey(c echo.Context) error {
	var req createAPIKeyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	key, secret, err := store.IssueAPIKey(c.Request().Context(), s.store.Tenants(), tenantID(c), *req.Name, s.now())
	if err != nil {
		return storeError(err, "tenant_not_found", "api key")
	}
	return c.JSON(http.StatusCreated, issuedAPIKey{APIKey: key, Secret: secret})
}

// revokeAPIKey refuses to revoke a tenant's last active key: with none left
// the tenant could not call the API to issue another.
func (s *Server) revokeAPIKey(c echo.Context) error {
	ctx := c.Request().Context()
	s.revoking.Lock()
	defer s.revoking.Unlock()
	keys, err := s.store.Tenants().ListAPIKeys(ctx, tenantID(c))
	if err != nil {
		return storeError(err, "api_key_not_found", "api keys")
	}
	id := c.Param("id")
	var target *store.APIKey
	active := 0
	for i, k := range keys {
		if k.RevokedAt == nil {
			active++
		}
		if k.ID == id {
			target = &keys[i]
		}
	}
	switch {
	case target == nil:
		return apiError(http.StatusNotFound, "api_key_not_found", "api key not found")
	case target.RevokedAt == nil && active <= 1:
		return apiError(http.StatusConflict, "last_api_key",
			"this is the tenant's last active API key; issue another before revoking it")
	}
	key, err := s.store.Tenants().RevokeAPIKey(ctx, tenantID(c), id, s.now())
	if err != nil {
		return storeError(err, "api_key_not_found", "api key")
	}
	return c.JSON(http.StatusOK, key)
}

// nonNil makes an empty result encode as [] rather than null.
func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// updateTenant merges the settings sent onto the stored ones. The read and
// the write are not one transaction: two concurrent changes of different
// settings could lose one, which is acceptable for an admin call.
func (s *Server) updateTenant(c echo.Context) error {
	var req updateTenantRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	t, err := s.store.Tenants().GetTenant(ctx, tenantID(c))
	if err != nil {
		return storeError(err, "tenant_not_found", "tenant")
	}
	t, err = s.store.Tenants().UpdateTenantSettings(ctx, t.ID, req.Settings.apply(t.Settings))
	if err != nil {
		return storeError(err, "tenant_not_found", "tenant")
	}
	return c.JSON(http.StatusOK, t)
}

// quietChannels are the channels quiet hours can hold back: those that
// reach the customer. Webhooks call other systems, which keep no hours.
var quietChannels = templateChannels

// quietHoursRequest is the quiet_hours setting as PATCH /tenant sends it.
type quietHoursRequest struct {
	Start    *string  `json:"start"`
	End      *string  `json:"end"`
	Channels []string `json:"channels"`
}

const quietHoursField = "settings.quiet_hours"

// checkQuietHours decodes and checks the quiet hours sent, if any; null
// leaves p.quietHours nil, which removes them.
func (p *settingsPatch) checkQuietHours() error {
	if !present(p.QuietHours) {
		return nil
	}
	var req quietHoursRequest
	if err := decodeField(quietHoursField, p.QuietHours, &req); err != nil {
		return err
	}
	switch {
	case req.Start == nil:
		return missingField(quietHoursField + ".start")
	case req.End == nil:
		return missingField(quietHoursField + ".end")
	case req.Channels == nil:
		return missingField(quietHoursField + ".channels")
	case len(req.Channels) == 0:
		return invalidField(quietHoursField+".channels", fmt.Sprintf("must name at least one of %v; send null to remove the quiet hours", quietChannels))
	}
	for i, ch := range req.Channels {
		if !slices.Contains(quietChannels, ch) {
			return invalidField(fmt.Sprintf("%s.channels[%d]", quietHoursField, i), fmt.Sprintf("must be one of %v", quietChannels))
		}
	}
	q := store.QuietHours{Start: *req.Start, End: *req.End, Channels: slices.Compact(slices.Sorted(slices.Values(req.Channels)))}
	if err := outbox.CheckQuietHours(q); err != nil {
		// The check names the part that is wrong first.
		field, msg := quietHoursField, err.Error()
		for _, part := range []string{"start", "end"} {
			if rest, ok := strings.CutPrefix(msg, part+": "); ok {
				field, msg = quietHoursField+"."+part, rest
			}
		}
		return invalidField(field, "is invalid: "+msg)
	}
	p.quietHours = &q
	return nil
}
