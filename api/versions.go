package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

// emptyGraph is the graph of a new draft created from nothing.
var emptyGraph = []byte(`{"nodes":[],"edges":[]}`)

// versionBody is a version with its graph inlined as JSON.
type versionBody struct {
	store.Version
	Graph json.RawMessage `json:"graph"`
}

// validation is the answer of every validate endpoint: all problems at once.
type validation struct {
	Valid    bool              `json:"valid"`
	Problems []journey.Problem `json:"problems"`
}

type publishResponse struct {
	Journey store.Journey `json:"journey"`
	Version versionBody   `json:"version"`
}

func withGraph(v store.Version) versionBody {
	return versionBody{Version: v, Graph: v.Graph}
}

func (s *Server) validate(g journey.Graph) validation {
	problems := nonNil(journey.Validate(g, s.nodes))
	return validation{Valid: len(problems) == 0, Problems: problems}
}

// versionNumber parses a version path parameter.
func versionNumber(c echo.Context, param string) (int, error) {
	raw := c.Param(param)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		e := apiError(http.StatusBadRequest, "invalid_version",
			fmt.Sprintf("version %q is not a positive whole number", raw))
		e.Details = map[string]string{"parameter": param}
		return 0, e
	}
	return n, nil
}

// versionError maps a store error about a version of the :id journey,
// telling a missing journey from a missing version.
func (s *Server) versionError(c echo.Context, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		if _, jerr := s.loadJourney(c); jerr != nil {
			return jerr
		}
	}
	return storeError(err, "version_not_found", "version")
}

// findVersion fetches version n of the :id journey within the caller's tenant.
func (s *Server) findVersion(c echo.Context, n int) (store.Version, error) {
	v, err := s.store.Journeys().GetVersion(c.Request().Context(), tenantID(c), c.Param("id"), n)
	if err != nil {
		return store.Version{}, s.versionError(c, err)
	}
	return v, nil
}

// loadVersion fetches the version named by a path parameter.
func (s *Server) loadVersion(c echo.Context, param string) (store.Version, error) {
	n, err := versionNumber(c, param)
	if err != nil {
		return store.Version{}, err
	}
	return s.findVersion(c, n)
}

// loadGraph fetches the version named by a path parameter and decodes its
// graph. Stored graphs passed journey.Decode on the way in, so a failure here
// is corruption, not bad input.
func (s *Server) loadGraph(c echo.Context, param string) (store.Version, journey.Graph, error) {
	v, err := s.loadVersion(c, param)
	if err != nil {
		return v, journey.Graph{}, err
	}
	g, err := journey.Decode(v.Graph)
	if err != nil {
		return v, g, fmt.Errorf("stored graph of journey %s version %d: %w", v.JourneyID, v.Number, err)
	}
	return v, g, nil
}

func (s *Server) createVersion(c echo.Context) error {
	var req createVersionRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	graph := emptyGraph
	switch {
	case req.parsed.encoded != nil:
		graph = req.parsed.encoded
	case req.FromVersion != nil:
		from, err := s.findVersion(c, *req.FromVersion)
		if err != nil {
			return err
		}
		graph = from.Graph
	}
	v, err := s.store.Journeys().CreateVersion(c.Request().Context(), tenantID(c), c.Param("id"), graph, s.now())
	if err != nil {
		return storeError(err, "journey_not_found", "journey")
	}
	return c.JSON(http.StatusCreated, withGraph(v))
}

// listVersions leaves the graphs out: a journey edited for months has many
// versions, and the editor fetches the one it opens.
func (s *Server) listVersions(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	versions, err := s.store.Journeys().ListVersions(c.Request().Context(), j.TenantID, j.ID)
	if err != nil {
		return storeError(err, "journey_not_found", "journey")
	}
	return c.JSON(http.StatusOK, list[store.Version]{Data: nonNil(versions)})
}

func (s *Server) getVersion(c echo.Context) error {
	v, err := s.loadVersion(c, "version")
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, withGraph(v))
}

func (s *Server) updateVersion(c echo.Context) error {
	n, err := versionNumber(c, "version")
	if err != nil {
		return err
	}
	var req graphRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	v, err := s.store.Journeys().UpdateDraft(c.Request().Context(), tenantID(c), c.Param("id"), n, req.parsed.encoded, s.now())
	if err != nil {
		return s.versionError(c, err)
	}
	return c.JSON(http.StatusOK, withGraph(v))
}

func (s *Server) validateVersion(c echo.Context) error {
	_, g, err := s.loadGraph(c, "version")
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.validate(g))
}

// validateGraph validates a graph the editor has not saved yet.
func (s *Server) validateGraph(c echo.Context) error {
	var req graphRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.validate(req.parsed.graph))
}

func (s *Server) diffVersions(c echo.Context) error {
	_, from, err := s.loadGraph(c, "version")
	if err != nil {
		return err
	}
	_, to, err := s.loadGraph(c, "other")
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, journey.Diff(from, to))
}

// publishVersion validates before publishing so that an invalid graph never
// becomes immutable, and reports every problem at once.
func (s *Server) publishVersion(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	v, g, err := s.loadGraph(c, "version")
	if err != nil {
		return err
	}
	switch {
	case j.Status == store.JourneyArchived:
		return apiError(http.StatusConflict, "journey_archived", "an archived journey cannot publish versions")
	case v.Status != store.VersionDraft:
		return versionNotDraft()
	}
	if result := s.validate(g); !result.Valid {
		e := apiError(http.StatusUnprocessableEntity, "invalid_graph",
			fmt.Sprintf("the graph has %d problem(s); fix them before publishing", len(result.Problems)))
		e.Details = map[string]any{"problems": result.Problems}
		return e
	}
	dryRun, err := oneOf(c, "dry_run", []string{"true", "false"})
	if err != nil {
		return err
	}
	if dryRun == "true" {
		return s.publishDryRun(c, j, g)
	}
	j, v, err = s.store.Journeys().PublishVersion(c.Request().Context(), j.TenantID, j.ID, v.Number, s.now())
	if err != nil {
		return s.versionError(c, err)
	}
	s.journeyChanged(c, j)
	return c.JSON(http.StatusOK, publishResponse{Journey: j, Version: withGraph(v)})
}

// dryRunRequest is how a migration to the version would move the
// customers in flight.
type dryRunRequest struct {
	NodeMapping       map[string]string `json:"node_mapping"`
	RemovedNodePolicy string            `json:"removed_node_policy"`
}

func (r *dryRunRequest) check() error { return nil }

// dryRunPlacement is where the customers at one node of the active
// version would go, and how many there are now.
type dryRunPlacement struct {
	journey.Placement
	Customers int `json:"customers"`
}

type dryRunResponse struct {
	DryRun      bool              `json:"dry_run"`
	Valid       bool              `json:"valid"`
	FromVersion int               `json:"from_version"`
	Diff        journey.GraphDiff `json:"diff"`
	Placements  []dryRunPlacement `json:"placements"`
	// Totals counts the customers by what would become of them.
	Totals   map[string]int    `json:"totals"`
	Problems []journey.Problem `json:"problems"`
}

// publishDryRun answers what publishing the version would change: the
// diff from the active version, and where each of its customers in flight
// would go, counted by node, without changing anything. A plan with
// problems would leave customers without a place.
func (s *Server) publishDryRun(c echo.Context, j store.Journey, to journey.Graph) error {
	var req dryRunRequest
	if err := decodeOptionalBody(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	from := journey.Graph{}
	counts := map[string]int{}
	if j.ActiveVersion > 0 {
		active, err := s.findVersion(c, j.ActiveVersion)
		if err != nil {
			return err
		}
		if from, err = journey.Decode(active.Graph); err != nil {
			return fmt.Errorf("stored graph of journey %s version %d: %w", j.ID, active.Number, err)
		}
		if counts, err = s.store.Instances().CountAtNodes(ctx, j.TenantID, j.ID, j.ActiveVersion); err != nil {
			return err
		}
	}
	occupied := map[string]bool{}
	for node := range counts {
		occupied[node] = true
	}
	plan, problems := journey.PlanMigration(from, to,
		journey.MigrationOptions{NodeMapping: req.NodeMapping, Removed: req.RemovedNodePolicy}, occupied)
	res := dryRunResponse{DryRun: true, Valid: len(problems) == 0, FromVersion: j.ActiveVersion, Diff: journey.Diff(from, to),
		Placements: make([]dryRunPlacement, 0, len(plan.Placements)), Problems: problems,
		Totals: map[string]int{journey.ActionStay: 0, journey.ActionMove: 0, journey.ActionSkip: 0, journey.ActionExit: 0, journey.ActionHold: 0}}
	if res.Problems == nil {
		res.Problems = []journey.Problem{}
	}
	for _, pl := range plan.Placements {
		res.Placements = append(res.Placements, dryRunPlacement{Placement: pl, Customers: counts[pl.From]})
		res.Totals[pl.Action] += counts[pl.From]
	}
	return c.JSON(http.StatusOK, res)
}
