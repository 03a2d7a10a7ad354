// Package api is Kalcifer's HTTP API: routing, authentication, rate limits,
// uniform JSON errors, metrics and the OpenAPI document. Handlers only
// translate between HTTP and the store and journey packages.
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
)

// BasePath prefixes every route.
const BasePath = "/api/v1"

// Defaults for the zero values of Options.
const (
	DefaultBodyLimit = 1 << 20
	DefaultRateLimit = 100
	DefaultRateBurst = 200
)

// Options configures a Server.
type Options struct {
	Store  store.Store
	Nodes  *nodes.Registry
	Logger *slog.Logger
	// Now is the clock for timestamps, rate limits and key-usage tracking; nil means time.Now.
	Now     func() time.Time
	Version string
	// BodyLimit caps request bodies in bytes; 0 means DefaultBodyLimit.
	BodyLimit int64
	// RateLimit is the sustained requests per second allowed per tenant and
	// RateBurst the bucket size; 0 means the defaults.
	RateLimit float64
	RateBurst int
}

// Server is the HTTP API.
type Server struct {
	echo    *echo.Echo
	store   store.Store
	nodes   *nodes.Registry
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	keys    *keyUsage
	general *bucketFamily
	// revoking serialises key revocation on this node so that two concurrent
	// revocations cannot both see another active key and leave none.
	revoking sync.Mutex
}

// New builds a server from its options.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("api: Options.Store is required")
	}
	if opts.Nodes == nil {
		return nil, errors.New("api: Options.Nodes is required")
	}
	if opts.BodyLimit < 0 || opts.RateLimit < 0 || opts.RateBurst < 0 {
		return nil, errors.New("api: BodyLimit, RateLimit and RateBurst must not be negative")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BodyLimit == 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = DefaultRateLimit
	}
	if opts.RateBurst == 0 {
		opts.RateBurst = DefaultRateBurst
	}
	m, err := newMetrics(opts.Version)
	if err != nil {
		return nil, err
	}
	s := &Server{
		echo:    echo.New(),
		store:   opts.Store,
		nodes:   opts.Nodes,
		log:     opts.Logger,
		now:     opts.Now,
		metrics: m,
		keys:    newKeyUsage(),
		general: newBucketFamily(opts.RateLimit, opts.RateBurst, opts.Now),
	}
	s.echo.HideBanner = true
	s.echo.HidePort = true
	s.echo.HTTPErrorHandler = s.handleError
	s.echo.Pre(dropUnsafeRequestID)
	s.echo.Use(
		middleware.RequestID(),
		s.observe,
		middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: s.logPanic, DisableErrorHandler: true}),
		limitBody(opts.BodyLimit),
	)
	s.routes()
	return s, nil
}

// Handler returns the HTTP handler serving every route.
func (s *Server) Handler() http.Handler {
	return s.echo
}

func (s *Server) routes() {
	g := s.echo.Group(BasePath)
	g.GET("/health", s.health)
	g.GET("/health/ready", s.ready)
	g.GET("/metrics", s.metrics.handler())
	g.GET("/openapi.json", serveOpenAPI)

	// Middleware goes on each route rather than on a group: a group with
	// middleware catches unknown paths, which would then answer 401 instead
	// of route_not_found.
	auth := []echo.MiddlewareFunc{s.authenticate, s.rateLimit(s.general)}
	g.GET("/tenant", s.getTenant, auth...)
	g.GET("/api-keys", s.listAPIKeys, auth...)
	g.POST("/api-keys", s.createAPIKey, auth...)
	g.DELETE("/api-keys/:id", s.revokeAPIKey, auth...)
	g.GET("/node-types", s.listNodeTypes, auth...)
	g.GET("/node-types/:type", s.getNodeType, auth...)
	g.POST("/validate", s.validateGraph, auth...)

	g.POST("/journeys", s.createJourney, auth...)
	g.GET("/journeys", s.listJourneys, auth...)
	g.GET("/journeys/:id", s.getJourney, auth...)
	g.PATCH("/journeys/:id", s.updateJourney, auth...)
	g.DELETE("/journeys/:id", s.deleteJourney, auth...)
	for _, action := range journey.Actions() {
		g.POST("/journeys/:id/"+action, s.transition(action), auth...)
	}

	g.POST("/journeys/:id/versions", s.createVersion, auth...)
	g.GET("/journeys/:id/versions", s.listVersions, auth...)
	g.GET("/journeys/:id/versions/:version", s.getVersion, auth...)
	g.PUT("/journeys/:id/versions/:version", s.updateVersion, auth...)
	g.POST("/journeys/:id/versions/:version/validate", s.validateVersion, auth...)
	g.GET("/journeys/:id/versions/:version/diff/:other", s.diffVersions, auth...)
	g.POST("/journeys/:id/versions/:version/publish", s.publishVersion, auth...)
}

// maxRequestIDLength bounds a client-supplied request id, which ends up in
// every log line of the request.
const maxRequestIDLength = 128

// dropUnsafeRequestID discards an incoming X-Request-Id that is too long or
// not printable ASCII, so the RequestID middleware generates a fresh one.
func dropUnsafeRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); len(id) > maxRequestIDLength || !printableASCII(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// limitBody caps request bodies; a declared oversize body is refused before
// it is read, an undeclared one fails when the handler reads past the limit.
func limitBody(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if req.ContentLength > limit {
				return bodyTooLarge(limit)
			}
			req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
			return next(c)
		}
	}
}

// logPanic logs the panic with its stack once and answers a plain 500, which
// the error handler renders without logging again.
func (s *Server) logPanic(c echo.Context, err error, stack []byte) error {
	s.log.ErrorContext(c.Request().Context(), "panic in handler",
		slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
		slog.String("route", routeOf(c)),
		slog.Any("error", err),
		slog.String("stack", string(stack)))
	return apiError(http.StatusInternalServerError, "internal_error", "internal server error")
}

// routeOf is the route template that matched, or a fixed label for requests
// that matched none, so metrics labels stay bounded.
func routeOf(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}
