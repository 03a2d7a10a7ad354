package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/store"
)

// Error is an API error: the HTTP status and the stable code clients branch on.
// Handlers return it; the error handler renders every error as
// {"error":{"code","message","details"}}.
type Error struct {
	Status  int
	Code    string
	Message string
	Details any
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func apiError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// errorBody is the wire form of an error.
type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// echoErrorCodes names the errors Echo's router raises so they look like ours.
var echoErrorCodes = map[int]string{
	http.StatusNotFound:         "route_not_found",
	http.StatusMethodNotAllowed: "method_not_allowed",
}

// handleError is Echo's HTTPErrorHandler. Anything that is not an *Error or an
// Echo routing error is a bug or an outage: it is logged with the request id
// and answered with a generic 500 so no internals leak.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var apiErr *Error
	var httpErr *echo.HTTPError
	switch {
	case errors.As(err, &apiErr):
	case errors.As(err, &httpErr) && echoErrorCodes[httpErr.Code] != "":
		apiErr = apiError(httpErr.Code, echoErrorCodes[httpErr.Code], http.StatusText(httpErr.Code))
	default:
		s.log.ErrorContext(c.Request().Context(), "request failed",
			slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.String("method", c.Request().Method),
			slog.String("route", routeOf(c)),
			slog.Any("error", err))
		apiErr = apiError(http.StatusInternalServerError, "internal_error", "internal server error")
	}
	body := errorBody{Error: errorPayload{Code: apiErr.Code, Message: apiErr.Message, Details: apiErr.Details}}
	if writeErr := c.JSON(apiErr.Status, body); writeErr != nil {
		s.log.WarnContext(c.Request().Context(), "write error response", slog.Any("error", writeErr))
	}
}

// storeError turns a store error into the API error for the resource the
// request named; notFoundCode distinguishes journey_not_found from
// version_not_found and so on. Unknown errors keep their context and become 500s.
func storeError(err error, notFoundCode, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, notFoundCode, what+" not found")
	case errors.Is(err, store.ErrNotDraft):
		return versionNotDraft()
	case errors.Is(err, store.ErrConflict):
		return apiError(http.StatusConflict, "conflict", what+" was changed by another request; retry")
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

func versionNotDraft() *Error {
	return apiError(http.StatusConflict, "version_not_draft", "the version is published and can no longer change")
}
