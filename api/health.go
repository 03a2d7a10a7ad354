package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

//go:embed openapi.json
var openAPIDocument []byte

func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
}

func (s *Server) health(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyTimeout keeps a hung database from hanging the probe: orchestrators
// treat a slow answer as a failure anyway.
const readyTimeout = 2 * time.Second

func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.WarnContext(ctx, "readiness check failed", slog.String("store", s.store.Driver()), slog.Any("error", err))
		e := apiError(http.StatusServiceUnavailable, "not_ready", "the store is not answering")
		e.Details = map[string]string{"store": s.store.Driver()}
		return e
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready", "store": s.store.Driver()})
}
