package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/actors"
)

// ingested is the outcome of one event the engine committed.
type ingested struct {
	EventID string `json:"event_id"`
	// CustomerID is the external id the request named.
	CustomerID string `json:"customer_id"`
	// Duplicate says the message id was seen before: nothing new was stored
	// and EventID is the earlier event.
	Duplicate bool `json:"duplicate"`
}

// refused is the slot of a batch input the engine turned down.
type refused struct {
	Error *actors.Error `json:"error"`
}

type batchResults struct {
	Results []any `json:"results"`
}

// ingest hands inputs to the engine; it returns once they are committed.
func (s *Server) ingest(c echo.Context, in []actors.Incoming) ([]actors.Result, error) {
	tenant, err := s.callerTenant(c)
	if err != nil {
		return nil, err
	}
	results, err := s.engine.Ingest(c.Request().Context(), tenant, in)
	if err != nil {
		return nil, s.engineError(c, err)
	}
	return results, nil
}

func (s *Server) postEvent(c echo.Context) error {
	var req eventRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	results, err := s.ingest(c, []actors.Incoming{req.incoming})
	if err != nil {
		return err
	}
	r := results[0]
	if r.Error != nil {
		return refusalError(r.Error)
	}
	return c.JSON(http.StatusAccepted, ingested{EventID: r.EventID, CustomerID: req.incoming.ExternalID, Duplicate: r.Duplicate})
}

// postEventBatch commits the batch at once; an input the engine refuses is
// reported in its slot and does not fail the others.
func (s *Server) postEventBatch(c echo.Context) error {
	var req eventBatchRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	in := req.incoming()
	results, err := s.ingest(c, in)
	if err != nil {
		return err
	}
	out := batchResults{Results: make([]any, len(results))}
	for i, r := range results {
		if r.Error != nil {
			out.Results[i] = refused{Error: r.Error}
			continue
		}
		out.Results[i] = ingested{EventID: r.EventID, CustomerID: in[i].ExternalID, Duplicate: r.Duplicate}
	}
	return c.JSON(http.StatusAccepted, out)
}
