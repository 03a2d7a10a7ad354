// Package api is Kalcifer's HTTP API: routing, authentication, rate limits,
// uniform JSON errors, metrics and the OpenAPI document. Handlers only
// translate between HTTP and the store, journey and engine packages.
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/compose"
	"github.com/kalcifer/kalcifer/channels/status"
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
	// Events come from tracking SDKs and backends in bursts, so their
	// family allows far more than the other calls.
	DefaultEventRateLimit = 1000
	DefaultEventRateBurst = 2000
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
	// EventRateLimit and EventRateBurst are the same for the event routes,
	// which have their own buckets; 0 means the defaults.
	EventRateLimit float64
	EventRateBurst int
	// Engine runs journeys; without one the engine routes answer 503.
	Engine Engine
	// Accounts manages the tenants' provider accounts; without it the
	// provider routes answer 503.
	Accounts *accounts.Manager
	// Intake records providers' status callbacks; without it the callback
	// routes answer 503.
	Intake *status.Intake
	// Renderer renders template previews; nil means a new one.
	Renderer *compose.Renderer
	// Metrics is the registry /metrics serves; the API adds its collectors to
	// it, so that the engine's metrics appear beside them. Nil means a new one.
	Metrics *prometheus.Registry
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
	events  *bucketFamily
	engine  Engine
	// accounts and intake are nil in a process without channels.
	accounts *accounts.Manager
	intake   *status.Intake
	renderer *compose.Renderer
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
	if opts.BodyLimit < 0 || opts.RateLimit < 0 || opts.RateBurst < 0 || opts.EventRateLimit < 0 || opts.EventRateBurst < 0 {
		return nil, errors.New("api: BodyLimit and the rate limits must not be negative")
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
	if opts.EventRateLimit == 0 {
		opts.EventRateLimit = DefaultEventRateLimit
	}
	if opts.EventRateBurst == 0 {
		opts.EventRateBurst = DefaultEventRateBurst
	}
	if opts.Renderer == nil {
		opts.Renderer = compose.NewRenderer()
	}
	m, err := newMetrics(opts.Version, opts.Metrics)
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
		events:  newBucketFamily(opts.EventRateLimit, opts.EventRateBurst, opts.Now),
		engine:  opts.Engine,

		accounts: opts.Accounts,
		intake:   opts.Intake,
		renderer: opts.Renderer,
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
	auth := []echo.MiddlewareFunc{s.authenticate, s.rateLimit(s.general), textParams}
	g.GET("/tenant", s.getTenant, auth...)
	g.PATCH("/tenant", s.updateTenant, auth...)
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
	g.POST("/journeys/:id/versions/:version/rollback", s.rollbackVersion, auth...)
	g.GET("/journeys/:id/migrations", s.listMigrations, auth...)
	g.GET("/journeys/:id/migrations/:migration", s.getMigration, auth...)
	g.GET("/journeys/:id/instances", s.listJourneyInstances, auth...)
	g.GET("/journeys/:id/instances/by-version", s.instancesByVersion, auth...)

	// PUT names the customer by the tenant's external id, the other routes
	// by Kalcifer id unless ?by=external_id; the parameter has one name
	// because OpenAPI forbids two templates of the same path.
	g.PUT("/customers/:id", s.upsertCustomer, auth...)
	g.GET("/customers", s.listCustomers, auth...)
	g.GET("/customers/:id", s.getCustomer, auth...)
	g.PATCH("/customers/:id", patchCustomer[customerRequest](s), auth...)
	g.POST("/customers/:id/tags", patchCustomer[tagsRequest](s), auth...)
	g.PUT("/customers/:id/preferences", patchCustomer[preferencesRequest](s), auth...)
	g.GET("/customers/:id/events", s.listCustomerEvents, auth...)
	g.GET("/customers/:id/instances", s.listCustomerInstances, auth...)

	g.GET("/instances", s.listInstances, auth...)
	g.GET("/instances/:id", s.getInstance, auth...)
	g.GET("/deliveries", s.listDeliveries, auth...)
	g.GET("/deliveries/counts", s.countDeliveries, auth...)
	g.GET("/deliveries/:id", s.getDelivery, auth...)

	g.POST("/templates", s.createTemplate, auth...)
	g.GET("/templates", s.listTemplates, auth...)
	g.POST("/templates/preview", s.previewContent, auth...)
	g.GET("/templates/:id", s.getTemplate, auth...)
	g.PUT("/templates/:id", s.updateTemplate, auth...)
	g.DELETE("/templates/:id", s.deleteTemplate, auth...)
	g.GET("/templates/:id/versions", s.listTemplateVersions, auth...)
	g.GET("/templates/:id/versions/:version", s.getTemplateVersion, auth...)
	g.POST("/templates/:id/preview", s.previewTemplate, auth...)

	// The provider and callback routes, like the engine routes, stay
	// registered in a process without channels and answer 503 there.
	providers := []echo.MiddlewareFunc{s.authenticate, s.rateLimit(s.general), textParams, s.requireAccounts}
	g.GET("/provider-kinds", s.listProviderKinds, providers...)
	g.POST("/providers", s.createProvider, providers...)
	g.GET("/providers", s.listProviders, providers...)
	g.GET("/providers/:id", s.getProvider, providers...)
	g.PUT("/providers/:id", s.updateProvider, providers...)
	g.DELETE("/providers/:id", s.deleteProvider, providers...)

	// Providers cannot send an API key: callbacks carry no bearer auth and
	// Intake checks each provider's own signature instead. They have no
	// rate limit either: the limiter's buckets are keyed by the
	// authenticated tenant, and charging the tenant the path names would let
	// anyone who knows it exhaust that tenant's bucket.
	callbacks := []echo.MiddlewareFunc{textParams, s.requireIntake}
	g.POST("/callbacks/:tenant_id/:provider_id", s.receiveCallback, callbacks...)
	g.GET("/callbacks/:tenant_id/:provider_id", s.verifyCallback, callbacks...)

	// The engine routes stay registered without an engine, answering 503,
	// so clients and the OpenAPI document see one API whatever the process runs.
	engine := []echo.MiddlewareFunc{s.authenticate, s.rateLimit(s.general), textParams, s.requireEngine}
	events := []echo.MiddlewareFunc{s.authenticate, s.rateLimit(s.events), textParams, s.requireEngine}
	segment := []echo.MiddlewareFunc{s.authenticateSegment, s.rateLimit(s.events), textParams, s.requireEngine}
	g.POST("/events", s.postEvent, events...)
	g.POST("/events/batch", s.postEventBatch, events...)
	g.POST("/identify", s.segmentCall(segmentIdentify), segment...)
	g.POST("/track", s.segmentCall(segmentTrack), segment...)
	g.POST("/batch", s.segmentBatch, segment...)
	g.POST("/journeys/:id/trigger", s.triggerJourney, engine...)
	g.POST("/webhooks/:journey_id", s.webhookEntry, engine...)
	g.GET("/cluster", s.getCluster, engine...)
	for _, action := range []string{actors.ActionPause, actors.ActionResume, actors.ActionCancel} {
		g.POST("/instances/:id/"+action, s.instanceAction(action), engine...)
	}
	g.POST("/instances/:id/release", s.releaseInstance, engine...)
	g.POST("/journeys/:id/instances/release", s.releaseHeld, engine...)
	for _, action := range []string{actors.MigrationPause, actors.MigrationResume, actors.MigrationAbort, actors.MigrationRollout} {
		g.POST("/journeys/:id/migrations/:migration/"+action, s.controlMigration(action), engine...)
	}
}

// textParams decodes path parameters and refuses parameters that are not
// text. Echo matches on the escaped path when the URL has one (an external
// id with an escaped slash, say) and then hands its parameters over still
// escaped; decoding them here gives handlers one value however the client
// escaped it. NUL and invalid UTF-8 are refused because PostgreSQL refuses
// them in any text column, which would otherwise surface as a 500.
func textParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().URL.RawPath != ""
		values := slices.Clone(c.ParamValues())
		for i, name := range c.ParamNames() {
			if raw {
				v, err := url.PathUnescape(values[i])
				if err != nil {
					return invalidParameter(name, "is not a validly escaped path segment")
				}
				values[i] = v
			}
			if !isText(values[i]) {
				return invalidParameter(name, notText)
			}
		}
		c.SetParamValues(values...)
		for name, vs := range c.QueryParams() {
			if !isText(name) || slices.ContainsFunc(vs, func(v string) bool { return !isText(v) }) {
				return invalidParameter(name, notText)
			}
		}
		return next(c)
	}
}

const notText = "must be UTF-8 text without NUL characters"

func isText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
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
