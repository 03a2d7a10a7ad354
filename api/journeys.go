package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

func (s *Server) createJourney(c echo.Context) error {
	var req createJourneyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	j := store.Journey{TenantID: tenantID(c), Name: *req.Name, CreatedAt: s.now()}
	if req.Description != nil {
		j.Description = *req.Description
	}
	j, err := s.store.Journeys().CreateJourney(c.Request().Context(), j, req.parsed.encoded)
	if err != nil {
		return storeError(err, "journey_not_found", "create journey")
	}
	return c.JSON(http.StatusCreated, j)
}

func (s *Server) listJourneys(c echo.Context) error {
	status, err := oneOf(c, "status", journeyStatuses)
	if err != nil {
		return err
	}
	return listPage(c, func(j store.Journey) string { return j.ID }, func(after string, limit int) ([]store.Journey, error) {
		return s.store.Journeys().ListJourneys(c.Request().Context(), tenantID(c),
			store.JourneyFilter{Status: status, After: after, Limit: limit})
	})
}

var journeyStatuses = []string{store.JourneyDraft, store.JourneyActive, store.JourneyPaused, store.JourneyArchived}

// loadJourney fetches the journey named by the :id path parameter.
func (s *Server) loadJourney(c echo.Context) (store.Journey, error) {
	return s.findJourney(c, c.Param("id"))
}

// findJourney fetches a journey within the caller's tenant; another
// tenant's journey is simply not found.
func (s *Server) findJourney(c echo.Context, id string) (store.Journey, error) {
	j, err := s.store.Journeys().GetJourney(c.Request().Context(), tenantID(c), id)
	if err != nil {
		return store.Journey{}, storeError(err, "journey_not_found", "journey")
	}
	return j, nil
}

func (s *Server) getJourney(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, j)
}

func (s *Server) updateJourney(c echo.Context) error {
	var req updateJourneyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	patch := store.JourneyPatch{Name: req.Name, Description: req.Description}
	j, err := s.store.Journeys().UpdateJourney(c.Request().Context(), tenantID(c), c.Param("id"), patch, s.now())
	if err != nil {
		return storeError(err, "journey_not_found", "journey")
	}
	return c.JSON(http.StatusOK, j)
}

// deleteJourney only removes journeys no customer can be in: drafts that
// never ran and archived ones.
func (s *Server) deleteJourney(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	if j.Status != store.JourneyDraft && j.Status != store.JourneyArchived {
		e := apiError(http.StatusConflict, "journey_not_deletable",
			fmt.Sprintf("a journey that is %s cannot be deleted; archive it first", j.Status))
		e.Details = map[string]string{"status": j.Status}
		return e
	}
	if err := s.store.Journeys().DeleteJourney(c.Request().Context(), j.TenantID, j.ID); err != nil {
		return storeError(err, "journey_not_found", "journey")
	}
	return c.NoContent(http.StatusNoContent)
}

// transition applies a lifecycle action. The status change is a compare and
// swap on the status read here, so two racing actions cannot both win.
func (s *Server) transition(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		j, err := s.loadJourney(c)
		if err != nil {
			return err
		}
		to, err := journey.Transition(j.Status, action)
		if err != nil {
			e := apiError(http.StatusConflict, "invalid_transition", err.Error())
			e.Details = map[string]string{"status": j.Status, "action": action}
			return e
		}
		if action == journey.ActionActivate && j.ActiveVersion == 0 {
			return apiError(http.StatusUnprocessableEntity, "no_published_version",
				"publish a version before activating the journey")
		}
		j, err = s.store.Journeys().SetJourneyStatus(c.Request().Context(), j.TenantID, j.ID, j.Status, to, s.now())
		if err != nil {
			return storeError(err, "journey_not_found", "journey")
		}
		s.journeyChanged(c, j)
		return c.JSON(http.StatusOK, j)
	}
}
