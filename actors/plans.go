package actors

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
)

// plans caches compiled journey versions. Published versions never change,
// so an entry never goes stale.
type plans struct {
	journeys store.Journeys
	nodes    *nodes.Registry
	mu       sync.RWMutex
	byKey    map[string]*engine.Plan
}

func newPlans(j store.Journeys, r *nodes.Registry) *plans {
	return &plans{journeys: j, nodes: r, byKey: map[string]*engine.Plan{}}
}

func (p *plans) get(ctx context.Context, tenantID, journeyID string, version int) (*engine.Plan, error) {
	key := tenantID + "/" + journeyID + "@" + strconv.Itoa(version)
	p.mu.RLock()
	plan, ok := p.byKey[key]
	p.mu.RUnlock()
	if ok {
		return plan, nil
	}
	v, err := p.journeys.GetVersion(ctx, tenantID, journeyID, version)
	if err != nil {
		return nil, fmt.Errorf("load journey %s version %d: %w", journeyID, version, err)
	}
	if v.Status != store.VersionPublished {
		return nil, fmt.Errorf("journey %s version %d is not published", journeyID, version)
	}
	g, err := journey.Decode(v.Graph)
	if err != nil {
		return nil, fmt.Errorf("journey %s version %d: %w", journeyID, version, err)
	}
	plan, err = engine.Compile(g, p.nodes)
	if err != nil {
		return nil, fmt.Errorf("compile journey %s version %d: %w", journeyID, version, err)
	}
	p.mu.Lock()
	p.byKey[key] = plan
	p.mu.Unlock()
	return plan, nil
}

// entryPoint is an event_entry node of an active journey.
type entryPoint struct {
	journeyID string
	nodeID    string
	filter    map[string]any
}

// entries indexes each tenant's active journeys by the event types that
// enrol into them, so routing an event does not scan every journey. A
// tenant's index is rebuilt after invalidate (a journey changed, on any
// member of the cluster) and at least every ttl.
type entries struct {
	journeys store.Journeys
	plans    *plans
	now      func() time.Time
	ttl      time.Duration
	mu       sync.Mutex
	byTenant map[string]tenantEntries
	// generation counts a tenant's invalidations, so that an index built
	// from what the store said before an invalidation is not kept after it.
	generation map[string]uint64
}

type tenantEntries struct {
	built  time.Time
	byType map[string][]entryPoint
}

func newEntries(j store.Journeys, p *plans, now func() time.Time, ttl time.Duration) *entries {
	return &entries{journeys: j, plans: p, now: now, ttl: ttl, byTenant: map[string]tenantEntries{}, generation: map[string]uint64{}}
}

func (e *entries) invalidate(tenantID string) {
	e.mu.Lock()
	delete(e.byTenant, tenantID)
	e.generation[tenantID]++
	e.mu.Unlock()
}

func (e *entries) forEvent(ctx context.Context, tenantID, eventType string) ([]entryPoint, error) {
	now := e.now()
	e.mu.Lock()
	te, ok := e.byTenant[tenantID]
	gen := e.generation[tenantID]
	e.mu.Unlock()
	if ok && now.Sub(te.built) < e.ttl {
		return te.byType[eventType], nil
	}
	te, err := e.build(ctx, tenantID, now)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	if e.generation[tenantID] == gen {
		e.byTenant[tenantID] = te
	}
	e.mu.Unlock()
	return te.byType[eventType], nil
}

func (e *entries) build(ctx context.Context, tenantID string, now time.Time) (tenantEntries, error) {
	active, err := e.journeys.ListJourneys(ctx, tenantID, store.JourneyFilter{Status: store.JourneyActive})
	if err != nil {
		return tenantEntries{}, fmt.Errorf("list active journeys of tenant %s: %w", tenantID, err)
	}
	te := tenantEntries{built: now, byType: map[string][]entryPoint{}}
	for _, j := range active {
		plan, err := e.plans.get(ctx, tenantID, j.ID, j.ActiveVersion)
		if err != nil {
			return tenantEntries{}, err
		}
		for _, n := range plan.Graph().Nodes {
			if n.Type != "event_entry" {
				continue
			}
			cfg := nodes.ParseEventEntry(n.Config)
			te.byType[cfg.EventType] = append(te.byType[cfg.EventType], entryPoint{journeyID: j.ID, nodeID: n.ID, filter: cfg.Filter})
		}
	}
	return te, nil
}
