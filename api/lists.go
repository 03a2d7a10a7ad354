package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"
)

// Page sizes of every paginated list.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// page is the envelope of a paginated list.
type page[T any] struct {
	Data []T `json:"data"`
	// NextAfter is the after parameter for the next page, empty on the last.
	NextAfter string `json:"next_after"`
}

func invalidParameter(name, message string) *Error {
	e := apiError(http.StatusBadRequest, "invalid_parameter", fmt.Sprintf("parameter %q %s", name, message))
	e.Details = map[string]string{"parameter": name}
	return e
}

// pageLimit is the limit query parameter, or the default page size.
func pageLimit(c echo.Context) (int, error) {
	raw := c.QueryParam("limit")
	if raw == "" {
		return defaultPageSize, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > maxPageSize {
		return 0, invalidParameter("limit", fmt.Sprintf("must be a whole number from 1 to %d", maxPageSize))
	}
	return n, nil
}

// oneOf is the query parameter name, which must be empty or one of allowed.
func oneOf(c echo.Context, name string, allowed []string) (string, error) {
	v := c.QueryParam(name)
	if v != "" && !slices.Contains(allowed, v) {
		return "", invalidParameter(name, fmt.Sprintf("must be one of %v", allowed))
	}
	return v, nil
}

// listPage answers one page of a list ordered by id. fetch is asked for one
// row more than the page holds, which says whether another page exists
// without a count query.
func listPage[T any](c echo.Context, id func(T) string, fetch func(after string, limit int) ([]T, error)) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	rows, err := fetch(c.QueryParam("after"), limit+1)
	if err != nil {
		return fmt.Errorf("list %s: %w", c.Path(), err)
	}
	p := page[T]{Data: nonNil(rows)}
	if len(rows) > limit {
		p.Data = rows[:limit]
		p.NextAfter = id(p.Data[limit-1])
	}
	return c.JSON(http.StatusOK, p)
}
