package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/cluster"
)

// clusterView is GET /cluster: the members as the answering node sees them.
type clusterView struct {
	Self    string                `json:"self"`
	Members []cluster.MemberState `json:"members"`
}

func (s *Server) getCluster(c echo.Context) error {
	members := s.engine.Members(c.Request().Context())
	view := clusterView{Members: members}
	for _, m := range members {
		if m.Self {
			view.Self = m.ID
		}
	}
	return c.JSON(http.StatusOK, view)
}
