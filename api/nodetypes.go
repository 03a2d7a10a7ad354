package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/nodes"
)

func (s *Server) listNodeTypes(c echo.Context) error {
	return c.JSON(http.StatusOK, list[nodes.Info]{Data: nonNil(s.nodes.Catalog())})
}

func (s *Server) getNodeType(c echo.Context) error {
	name := c.Param("type")
	for _, info := range s.nodes.Catalog() {
		if info.Type == name {
			return c.JSON(http.StatusOK, info)
		}
	}
	return apiError(http.StatusNotFound, "unknown_node_type", fmt.Sprintf("no node type named %q", name))
}
