package api

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/store"
)

var deliveryStatuses = []string{store.DeliveryPending, store.DeliverySent, store.DeliveryDelivered,
	store.DeliveryBounced, store.DeliveryFailed, store.DeliverySkipped}

// deliveryChannels are the channels a delivery goes out on.
var deliveryChannels = []string{channels.Email, channels.SMS, channels.WhatsApp, channels.Push, channels.Webhook}

// engagements are the rows of a count that report deliveries opened or
// clicked, whatever their status; the total leaves them out, since each
// of those deliveries is counted under its status already.
var engagements = []string{channels.StatusOpened, channels.StatusClicked}

// deliveryCounts is the answer of GET /deliveries/counts.
type deliveryCounts struct {
	Counts []store.DeliveryCount `json:"counts"`
	// Total is the number of deliveries the filters select.
	Total int `json:"total"`
}

// deliveryFilter reads the query filters shared by the delivery list and
// its counts.
func deliveryFilter(c echo.Context) (store.DeliveryFilter, error) {
	status, err := oneOf(c, "status", deliveryStatuses)
	if err != nil {
		return store.DeliveryFilter{}, err
	}
	channel, err := oneOf(c, "channel", deliveryChannels)
	if err != nil {
		return store.DeliveryFilter{}, err
	}
	return store.DeliveryFilter{JourneyID: c.QueryParam("journey_id"), InstanceID: c.QueryParam("instance_id"),
		CustomerID: c.QueryParam("customer_id"), Channel: channel, Status: status}, nil
}

func (s *Server) listDeliveries(c echo.Context) error {
	f, err := deliveryFilter(c)
	if err != nil {
		return err
	}
	return listPage(c, func(d store.Delivery) string { return d.ID }, func(after string, limit int) ([]store.Delivery, error) {
		f.After, f.Limit = after, limit
		return s.store.Deliveries().ListDeliveries(c.Request().Context(), tenantID(c), f)
	})
}

func (s *Server) getDelivery(c echo.Context) error {
	d, err := s.store.Deliveries().GetDelivery(c.Request().Context(), tenantID(c), c.Param("id"))
	if err != nil {
		return storeError(err, "delivery_not_found", "delivery")
	}
	return c.JSON(http.StatusOK, d)
}

// countDeliveries counts the deliveries the filters select by channel and
// status, with a row per channel for those opened and for those clicked.
func (s *Server) countDeliveries(c echo.Context) error {
	f, err := deliveryFilter(c)
	if err != nil {
		return err
	}
	counts, err := s.store.Deliveries().CountDeliveries(c.Request().Context(), tenantID(c), f)
	if err != nil {
		return storeError(err, "delivery_not_found", "delivery counts")
	}
	out := deliveryCounts{Counts: nonNil(counts)}
	for _, n := range counts {
		if !slices.Contains(engagements, n.Status) {
			out.Total += n.Count
		}
	}
	return c.JSON(http.StatusOK, out)
}
