package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/store"
)

var instanceStatuses = []string{store.InstanceRunning, store.InstanceWaiting, store.InstancePaused, store.InstanceHeld,
	store.InstanceCompleted, store.InstanceFailed, store.InstanceExited}

// instanceDetail is an instance with its timeline and the engine's state.
type instanceDetail struct {
	store.Instance
	State    json.RawMessage `json:"state"`
	Timeline []store.Step    `json:"timeline"`
}

// instanceFilter reads the query filters of the instance lists for the
// journey journeyID ("" for all).
func instanceFilter(c echo.Context, journeyID string) (store.InstanceFilter, error) {
	status, err := oneOf(c, "status", instanceStatuses)
	if err != nil {
		return store.InstanceFilter{}, err
	}
	f := store.InstanceFilter{JourneyID: journeyID, Status: status,
		CustomerID: c.QueryParam("customer_id"), NodeID: c.QueryParam("node")}
	if raw := c.QueryParam("version"); raw != "" {
		if f.Version, err = strconv.Atoi(raw); err != nil || f.Version < 1 {
			return store.InstanceFilter{}, invalidParameter("version", "must be a positive whole number")
		}
	}
	return f, nil
}

func (s *Server) listInstances(c echo.Context) error {
	f, err := instanceFilter(c, c.QueryParam("journey_id"))
	if err != nil {
		return err
	}
	return s.instancePage(c, f)
}

// listJourneyInstances checks the journey first so that another tenant's
// journey is a 404 rather than an empty list.
func (s *Server) listJourneyInstances(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	f, err := instanceFilter(c, j.ID)
	if err != nil {
		return err
	}
	return s.instancePage(c, f)
}

// versionInstances is how many of a journey's instances run each version.
type versionInstances struct {
	Version int `json:"version"`
	// Active counts those that have not ended (running, waiting, paused, held).
	Active   int            `json:"active"`
	Total    int            `json:"total"`
	ByStatus map[string]int `json:"by_status"`
}

// instancesByVersion counts the journey's instances on each version, as a
// migration moves them from one to the next.
func (s *Server) instancesByVersion(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	counts, err := s.store.Instances().CountByVersion(c.Request().Context(), j.TenantID, j.ID)
	if err != nil {
		return err
	}
	versions := []versionInstances{}
	for _, vc := range counts {
		if len(versions) == 0 || versions[len(versions)-1].Version != vc.Version {
			versions = append(versions, versionInstances{Version: vc.Version, ByStatus: map[string]int{}})
		}
		v := &versions[len(versions)-1]
		v.ByStatus[vc.Status] = vc.Count
		v.Total += vc.Count
		if !engine.Terminal(vc.Status) {
			v.Active += vc.Count
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"data": versions})
}

func (s *Server) instancePage(c echo.Context, f store.InstanceFilter) error {
	return listPage(c, func(in store.Instance) string { return in.ID }, func(after string, limit int) ([]store.Instance, error) {
		f.After, f.Limit = after, limit
		return s.store.Instances().ListInstances(c.Request().Context(), tenantID(c), f)
	})
}

func (s *Server) getInstance(c echo.Context) error {
	ctx := c.Request().Context()
	in, err := s.store.Instances().GetInstance(ctx, tenantID(c), c.Param("id"))
	if err != nil {
		return storeError(err, "instance_not_found", "instance")
	}
	steps, err := s.store.Instances().ListSteps(ctx, in.TenantID, in.ID)
	if err != nil {
		return storeError(err, "instance_not_found", "instance timeline")
	}
	return c.JSON(http.StatusOK, instanceDetail{Instance: in, State: in.Snapshot, Timeline: nonNil(steps)})
}

// instanceAction applies a pause, resume or cancel through the engine.
func (s *Server) instanceAction(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req instanceActionRequest
		if err := decodeOptionalBody(c, &req); err != nil {
			return err
		}
		in, err := s.engine.InstanceAction(c.Request().Context(), tenantID(c), c.Param("id"), action, req.Reason)
		var ge *cluster.GrainError
		switch {
		case err == nil:
			return c.JSON(http.StatusOK, in)
		case errors.Is(err, actors.ErrNoChange):
			e := apiError(http.StatusConflict, "invalid_transition",
				fmt.Sprintf("an instance that is %s cannot %s", in.Status, action))
			e.Details = map[string]string{"status": in.Status, "action": action}
			return e
		case errors.Is(err, store.ErrNotFound), errors.As(err, &ge) && ge.Code == "instance_not_found":
			return apiError(http.StatusNotFound, "instance_not_found", "instance not found")
		default:
			return s.engineError(c, err)
		}
	}
}
