package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/store"
)

// maxExternalIDLength keeps external ids within what a unique index entry
// can hold in both databases.
const maxExternalIDLength = 255

// customerKeys are the values of ?by: which id the {id} of a customer route is.
var customerKeys = []string{"id", "external_id"}

func (s *Server) upsertCustomer(c echo.Context) error {
	externalID := c.Param("id")
	if len(externalID) > maxExternalIDLength {
		return invalidParameter("id", fmt.Sprintf("must be an external id of at most %d bytes", maxExternalIDLength))
	}
	var req customerRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	cu, created, err := s.store.Customers().UpsertCustomer(c.Request().Context(), tenantID(c), externalID, req.patch(), s.now())
	if err != nil {
		return storeError(err, "customer_not_found", "customer")
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, cu)
}

func (s *Server) listCustomers(c echo.Context) error {
	return listPage(c, func(cu store.Customer) string { return cu.ID }, func(after string, limit int) ([]store.Customer, error) {
		return s.store.Customers().ListCustomers(c.Request().Context(), tenantID(c),
			store.CustomerFilter{Tag: c.QueryParam("tag"), After: after, Limit: limit})
	})
}

// loadCustomer fetches the customer the :id path parameter names within the
// caller's tenant, by Kalcifer id or, with ?by=external_id, by external id.
func (s *Server) loadCustomer(c echo.Context) (store.Customer, error) {
	by, err := oneOf(c, "by", customerKeys)
	if err != nil {
		return store.Customer{}, err
	}
	get := s.store.Customers().GetCustomer
	if by == "external_id" {
		get = s.store.Customers().GetCustomerByExternalID
	}
	cu, err := get(c.Request().Context(), tenantID(c), c.Param("id"))
	if err != nil {
		return store.Customer{}, storeError(err, "customer_not_found", "customer")
	}
	return cu, nil
}

func (s *Server) getCustomer(c echo.Context) error {
	cu, err := s.loadCustomer(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, cu)
}

// customerPatcher is a request body that changes a customer.
type customerPatcher interface {
	checker
	patch() store.CustomerPatch
}

// patchCustomer is the handler of every route that changes an existing
// customer with a body of type R.
func patchCustomer[R any, P interface {
	*R
	customerPatcher
}](s *Server) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := P(new(R))
		if err := decodeBody(c, req); err != nil {
			return err
		}
		cu, err := s.loadCustomer(c)
		if err != nil {
			return err
		}
		cu, err = s.store.Customers().PatchCustomer(c.Request().Context(), cu.TenantID, cu.ID, req.patch(), s.now())
		if err != nil {
			return storeError(err, "customer_not_found", "customer")
		}
		return c.JSON(http.StatusOK, cu)
	}
}

// listCustomerEvents answers the customer's most recent events, newest
// first; limit bounds how far back the list goes.
func (s *Server) listCustomerEvents(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	cu, err := s.loadCustomer(c)
	if err != nil {
		return err
	}
	events, err := s.store.Events().ListCustomerEvents(c.Request().Context(), cu.TenantID, cu.ID, limit)
	if err != nil {
		return storeError(err, "customer_not_found", "customer events")
	}
	return c.JSON(http.StatusOK, list[store.Event]{Data: nonNil(events)})
}

// listCustomerInstances answers the journeys the customer is in now; a
// customer has at most one active instance per journey, so there is no page.
func (s *Server) listCustomerInstances(c echo.Context) error {
	cu, err := s.loadCustomer(c)
	if err != nil {
		return err
	}
	instances, err := s.store.Instances().CustomerInstances(c.Request().Context(), cu.TenantID, cu.ID)
	if err != nil {
		return storeError(err, "customer_not_found", "customer instances")
	}
	return c.JSON(http.StatusOK, list[store.Instance]{Data: nonNil(instances)})
}
