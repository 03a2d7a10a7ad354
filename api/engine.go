package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/store"
)

// Engine is the running engine as the API uses it; *actors.Runtime is the
// implementation, tests may substitute their own.
type Engine interface {
	// Ingest commits a batch of events (or profile updates) and returns once
	// they are durable; refusals are reported per input.
	Ingest(ctx context.Context, tenant store.Tenant, in []actors.Incoming) ([]actors.Result, error)
	// Enrol starts the journey for each target at its first entry node of
	// entryType ("" for any); refusals are reported per target.
	Enrol(ctx context.Context, tenant store.Tenant, journeyID, entryType string, targets []actors.Target) ([]actors.Result, error)
	// InstanceAction pauses, resumes or cancels an instance; actors.ErrNoChange
	// when its status does not allow the action.
	InstanceAction(ctx context.Context, tenantID, instanceID, action, reason string) (store.Instance, error)
	// RunMigration has the journey's grain carry out a running migration.
	RunMigration(ctx context.Context, tenantID, journeyID, migrationID string) error
	// ControlMigration pauses, resumes, aborts or raises the rollout of a
	// migration; a refusal is a *cluster.GrainError with an actors code.
	ControlMigration(ctx context.Context, tenantID, journeyID, migrationID, action string, rolloutPercent int) (store.Migration, error)
	// ReleaseInstance sends a held instance to a node of its version.
	ReleaseInstance(ctx context.Context, tenantID, instanceID, nodeID string) (store.Instance, error)
	// JourneyChanged makes new entries see a publish or a status change at once.
	JourneyChanged(ctx context.Context, tenantID, journeyID string)
	// Members reports the cluster's members and the grains each hosts.
	Members(ctx context.Context) []cluster.MemberState
}

var _ Engine = (*actors.Runtime)(nil)

// requireEngine answers 503 on engine routes when the server runs without
// an engine (an API-only process), instead of leaving the routes unknown.
func (s *Server) requireEngine(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.engine == nil {
			return apiError(http.StatusServiceUnavailable, "engine_unavailable", "this server runs without the engine")
		}
		return next(c)
	}
}

// engineError maps a failure of the engine: a transient one (a grain
// unavailable, a timeout) is a 503 the client may retry, anything else a 500.
func (s *Server) engineError(c echo.Context, err error) error {
	if !cluster.Retryable(err) {
		return fmt.Errorf("engine: %w", err)
	}
	s.log.WarnContext(c.Request().Context(), "engine unavailable",
		slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
		slog.String("route", routeOf(c)),
		slog.Any("error", err))
	return apiError(http.StatusServiceUnavailable, "engine_unavailable", "the engine is unavailable; retry shortly")
}

// journeyChanged tells the engine, if there is one, that a journey's
// published version or status changed.
func (s *Server) journeyChanged(c echo.Context, j store.Journey) {
	if s.engine != nil {
		s.engine.JourneyChanged(c.Request().Context(), j.TenantID, j.ID)
	}
}

// callerTenant is the caller's tenant with its current settings, which
// decide how the engine treats unknown customers.
func (s *Server) callerTenant(c echo.Context) (store.Tenant, error) {
	t, err := s.store.Tenants().GetTenant(c.Request().Context(), tenantID(c))
	if err != nil {
		return store.Tenant{}, storeError(err, "tenant_not_found", "tenant")
	}
	return t, nil
}

// grainInternal is the code cluster.ReplyFromError gives a grain failure
// that was not a refusal; it arrives in a per-target result all the same.
const grainInternal = "internal"

// conflictRefusals are the refusals that clash with an instance the
// customer has or had; the others say the journey cannot take anyone.
var conflictRefusals = []string{"active_instance", "already_entered", "duplicate_entry"}

// refusalError is the HTTP error of a route that names a single input.
func refusalError(r *actors.Error) *Error {
	status := http.StatusUnprocessableEntity
	if slices.Contains(conflictRefusals, r.Code) {
		status = http.StatusConflict
	}
	return apiError(status, r.Code, r.Message)
}

// enrolment is the outcome for one target of a trigger or webhook.
type enrolment struct {
	// CustomerID is the external id the request named.
	CustomerID string        `json:"customer_id"`
	InstanceID string        `json:"instance_id,omitempty"`
	Status     string        `json:"status,omitempty"`
	Error      *actors.Error `json:"error,omitempty"`
}

// enrol starts the journey for the targets. key makes the request
// idempotent: each target's entry key is key:customer, so a retried request
// cannot enrol anyone twice; without a key every request is new.
func (s *Server) enrol(c echo.Context, j store.Journey, entryType, key string, targets []actors.Target) ([]enrolment, error) {
	tenant, err := s.callerTenant(c)
	if err != nil {
		return nil, err
	}
	if key == "" {
		key = store.NewID("ent", s.now())
	}
	for i := range targets {
		targets[i].Key = key + ":" + targets[i].ExternalID
	}
	results, err := s.engine.Enrol(c.Request().Context(), tenant, j.ID, entryType, targets)
	if err != nil {
		return nil, s.engineError(c, err)
	}
	out := make([]enrolment, len(results))
	for i, r := range results {
		if r.Error != nil && r.Error.Code == grainInternal {
			return nil, fmt.Errorf("enrol customer %q into journey %s: %s", targets[i].ExternalID, j.ID, r.Error.Message)
		}
		out[i] = enrolment{CustomerID: targets[i].ExternalID, InstanceID: r.InstanceID, Status: r.Status, Error: r.Error}
	}
	return out, nil
}
