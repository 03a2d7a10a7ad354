package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/status"
	"github.com/kalcifer/kalcifer/store"
)

// requireIntake answers 503 on the callback routes when the server runs
// without the status intake.
func (s *Server) requireIntake(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.intake == nil {
			return channelsUnavailable()
		}
		return next(c)
	}
}

// callbackResult is what a status callback changed.
type callbackResult struct {
	Recorded  int `json:"recorded"`
	Repeated  int `json:"repeated"`
	Unmatched int `json:"unmatched"`
}

// checkCallbackAccount answers 404 when the path names no account: an
// unknown tenant or provider, or another tenant's. It is checked before
// the intake runs so that a record the intake fails to find later (a
// delivery's customer) is not mistaken for a missing account.
func (s *Server) checkCallbackAccount(c echo.Context) error {
	_, err := s.store.Providers().GetProvider(c.Request().Context(), c.Param("tenant_id"), c.Param("provider_id"))
	if err != nil {
		return callbackError(err)
	}
	return nil
}

// callbackError maps what the intake failed with, a bad signature aside,
// whose status differs between the two routes.
func callbackError(err error) error {
	var syntax *json.SyntaxError
	var wrongType *json.UnmarshalTypeError
	var escape url.EscapeError
	switch {
	case errors.As(err, &syntax), errors.As(err, &wrongType), errors.As(err, &escape):
		// The provider checked out but its body does not parse: posting
		// it again will not help. Providers report other malformed bodies
		// as plain errors, which answer 500.
		return apiError(http.StatusBadRequest, "invalid_callback", "the callback's body cannot be read: "+err.Error())
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, "provider_not_found", "provider not found")
	case errors.Is(err, status.ErrNoCallbacks):
		return apiError(http.StatusNotFound, "no_callbacks", "this provider sends no status callbacks")
	default:
		return fmt.Errorf("status callback: %w", err)
	}
}

// receiveCallback records the statuses a provider posts. The provider
// proves itself by its own signature, which the intake checks against the
// account's configuration, not by an API key.
func (s *Server) receiveCallback(c echo.Context) error {
	if err := s.checkCallbackAccount(c); err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	// Providers that post forms (Twilio) parse the request again, so it
	// gets a body to read.
	r := c.Request()
	r.Body = io.NopCloser(bytes.NewReader(body))
	res, err := s.intake.Receive(r.Context(), c.Param("tenant_id"), c.Param("provider_id"), r, body)
	if errors.Is(err, channels.ErrBadSignature) {
		return apiError(http.StatusUnauthorized, "invalid_signature", "the callback's signature or credentials do not match the provider account")
	}
	if err != nil {
		return callbackError(err)
	}
	return c.JSON(http.StatusOK, callbackResult{Recorded: res.Recorded, Repeated: res.Repeated, Unmatched: res.Unmatched})
}

// verifyCallback answers the GET with which a provider (Meta) checks the
// callback URL before it posts there.
func (s *Server) verifyCallback(c echo.Context) error {
	answer, err := s.intake.Challenge(c.Request().Context(), c.Param("tenant_id"), c.Param("provider_id"), c.Request())
	if errors.Is(err, channels.ErrBadSignature) {
		return apiError(http.StatusForbidden, "invalid_signature", "the verification does not match the provider account")
	}
	if err != nil {
		return callbackError(err)
	}
	return c.String(http.StatusOK, answer)
}
