package actors

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/store"
)

// journeyGrain is the authority on what a journey admits: its status and
// the version new entries run. It keeps them in memory until told the
// journey changed, so enrolments do not read the journey row each time; a
// lost refresh (a Tell is at most once) is bounded by infoTTL. It also
// carries out the journey's migrations, a batch per message, so that
// enrolments asking for the journey's info wait for one batch at most.
type journeyGrain struct {
	rt        *Runtime
	tenantID  string
	journeyID string
	info      *actorpb.JourneyInfo
	loadedAt  time.Time
	run       *migrationRun
}

const infoTTL = 5 * time.Second

func (g *journeyGrain) Receive(ctx Context, msg proto.Message) (proto.Message, error) {
	switch m := msg.(type) {
	case *actorpb.MigrationRun:
		return nil, g.onMigrationRun(ctx, m)
	case *actorpb.MigrationControl:
		return nil, g.onMigrationControl(ctx, m)
	case *actorpb.JourneyRefresh:
		g.info = nil
		return nil, nil
	case *actorpb.JourneyInfoRequest:
		if g.info == nil || g.rt.now().Sub(g.loadedAt) > infoTTL {
			j, err := g.rt.store.Journeys().GetJourney(ctx, g.tenantID, g.journeyID)
			if errors.Is(err, store.ErrNotFound) {
				return nil, &cluster.GrainError{Code: "journey_not_found", Message: g.journeyID}
			}
			if err != nil {
				return nil, err
			}
			g.info = &actorpb.JourneyInfo{Status: j.Status, ActiveVersion: int32(j.ActiveVersion)}
			g.loadedAt = g.rt.now()
		}
		return g.info, nil
	}
	return nil, &cluster.GrainError{Code: "unexpected_message", Message: fmt.Sprintf("journey grain got %T", msg)}
}
