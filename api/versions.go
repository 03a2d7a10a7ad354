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

// loadGraph fetches the version named by a path parameter and decodes its graph.
func (s *Server) loadGraph(c echo.Context, param string) (store.Version, journey.Graph, error) {
	v, err := s.loadVersion(c, param)
	if err != nil {
		return v, journey.Graph{}, err
	}
	g, err := storedGraph(v)
	return v, g, err
}

// storedGraph decodes a stored version's graph. Stored graphs passed
// journey.Decode on the way in, so a failure here is corruption, not bad input.
func storedGraph(v store.Version) (journey.Graph, error) {
	g, err := journey.Decode(v.Graph)
	if err != nil {
		return g, fmt.Errorf("stored graph of journey %s version %d: %w", v.JourneyID, v.Number, err)
	}
	return g, nil
}

// versionGraph is the graph of version n of the :id journey.
func (s *Server) versionGraph(c echo.Context, n int) (journey.Graph, error) {
	v, err := s.findVersion(c, n)
	if err != nil {
		return journey.Graph{}, err
	}
	return storedGraph(v)
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
