package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

var strategies = []string{store.StrategyNewEntriesOnly, store.StrategyMigrateAll, store.StrategyGradual}

// defaultBatchSize is how many instances a migration looks at per batch
// unless told otherwise. A batch is one message of the journey's grain,
// which answers enrolments between batches: maxBatchSize keeps a batch
// well within a request's deadline.
const (
	defaultBatchSize = 500
	maxBatchSize     = 1000
)

var removedPolicies = []string{journey.RemovedExit, journey.RemovedSkipToNext, journey.RemovedHold}

// publishRequest says how customers in flight move to the version a
// publish or a rollback makes active. Every field may be left out.
type publishRequest struct {
	Strategy          string            `json:"strategy"`
	RolloutPercent    *int              `json:"rollout_percent"`
	BatchSize         *int              `json:"batch_size"`
	NodeMapping       map[string]string `json:"node_mapping"`
	RemovedNodePolicy string            `json:"removed_node_policy"`
}

func (r *publishRequest) check() error {
	if r.Strategy != "" && !slices.Contains(strategies, r.Strategy) {
		return invalidField("strategy", fmt.Sprintf("must be one of %v", strategies))
	}
	switch {
	case r.Strategy == store.StrategyGradual && r.RolloutPercent == nil:
		return missingField("rollout_percent")
	case r.RolloutPercent != nil && r.Strategy != store.StrategyGradual:
		return invalidField("rollout_percent", "is only for the gradual strategy")
	case r.RolloutPercent != nil && (*r.RolloutPercent < 1 || *r.RolloutPercent > 100):
		return invalidField("rollout_percent", "must be from 1 to 100")
	case r.BatchSize != nil && (*r.BatchSize < 1 || *r.BatchSize > maxBatchSize):
		return invalidField("batch_size", fmt.Sprintf("must be from 1 to %d", maxBatchSize))
	case r.RemovedNodePolicy != "" && !slices.Contains(removedPolicies, r.RemovedNodePolicy):
		return invalidField("removed_node_policy", fmt.Sprintf("must be one of %v", removedPolicies))
	}
	return nil
}

func (r *publishRequest) options() journey.MigrationOptions {
	return journey.MigrationOptions{NodeMapping: r.NodeMapping, Removed: r.RemovedNodePolicy}
}

type publishResponse struct {
	Journey   store.Journey   `json:"journey"`
	Version   versionBody     `json:"version"`
	Migration store.Migration `json:"migration"`
}

// dryRunPlacement is where the customers at one node of the active
// version would go, and how many there are now.
type dryRunPlacement struct {
	journey.Placement
	Customers int `json:"customers"`
}

// versionPlan is where the customers in flight on one version would go.
type versionPlan struct {
	FromVersion int               `json:"from_version"`
	Placements  []dryRunPlacement `json:"placements"`
	// Totals counts the customers by what would become of them.
	Totals   map[string]int    `json:"totals"`
	Problems []journey.Problem `json:"problems"`
}

type dryRunResponse struct {
	DryRun bool `json:"dry_run"`
	// Valid is false when a plan, of any version, has problems.
	Valid bool              `json:"valid"`
	Diff  journey.GraphDiff `json:"diff"`
	// The plan of the active version's customers.
	versionPlan
	// OtherVersions are the plans of the older versions customers are
	// still on, which a migration moves too.
	OtherVersions []versionPlan `json:"other_versions"`
}

// source is a version customers are in flight on: its graph and how many
// are at each of its nodes.
type source struct {
	version int
	graph   journey.Graph
	counts  map[string]int
	// instances counts the customers in flight on it.
	instances int
}

// plan is where source's customers would go in graph to.
func (src source) plan(to journey.Graph, opts journey.MigrationOptions) versionPlan {
	occupied := map[string]bool{}
	for node := range src.counts {
		occupied[node] = true
	}
	plan, problems := journey.PlanMigration(src.graph, to, opts, occupied)
	vp := versionPlan{FromVersion: src.version, Placements: make([]dryRunPlacement, 0, len(plan.Placements)), Problems: nonNil(problems),
		Totals: map[string]int{journey.ActionStay: 0, journey.ActionMove: 0, journey.ActionSkip: 0, journey.ActionExit: 0, journey.ActionHold: 0}}
	for _, pl := range plan.Placements {
		vp.Placements = append(vp.Placements, dryRunPlacement{Placement: pl, Customers: src.counts[pl.From]})
		vp.Totals[pl.Action] += src.counts[pl.From]
	}
	return vp
}

// planSources plans the move of the customers on every version in flight
// to graph to. A mapping names nodes of any version in flight: each older
// version takes the entries for the nodes it has, and a node is unknown
// only when no version in flight has it.
func planSources(sources []source, to journey.Graph, opts journey.MigrationOptions) dryRunResponse {
	res := dryRunResponse{DryRun: true, Valid: true, Diff: journey.Diff(sources[0].graph, to), OtherVersions: []versionPlan{}}
	for i, src := range sources {
		own := opts
		if i > 0 {
			own.NodeMapping = maps.Clone(opts.NodeMapping)
			maps.DeleteFunc(own.NodeMapping, func(node, _ string) bool { _, ok := src.graph.Node(node); return !ok })
		}
		vp := src.plan(to, own)
		if i == 0 {
			vp.Problems = slices.DeleteFunc(vp.Problems, func(p journey.Problem) bool {
				return p.Code == journey.CodeUnknownMappingSource && slices.ContainsFunc(sources[1:], func(o source) bool {
					_, ok := o.graph.Node(p.NodeID)
					return ok
				})
			})
			res.versionPlan = vp
		} else {
			res.OtherVersions = append(res.OtherVersions, vp)
		}
		res.Valid = res.Valid && len(vp.Problems) == 0
	}
	return res
}

func (s *Server) publishVersion(c echo.Context) error {
	return s.changeVersion(c, store.MigrationPublish)
}

func (s *Server) rollbackVersion(c echo.Context) error {
	return s.changeVersion(c, store.MigrationRollback)
}

// changeVersion makes the version active, by publishing a draft or rolling
// back to a published version, and starts moving the customers in flight
// as the strategy says: new_entries_only (a publish's default) leaves them
// on their version, migrate_all (a rollback's default) and gradual move
// them. With dry_run=true it only answers what would happen. A migration
// whose plan has problems would leave customers without a place, so it is
// refused; the graph is validated before publishing so that an invalid
// graph never becomes immutable.
func (s *Server) changeVersion(c echo.Context, kind string) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	v, to, err := s.loadGraph(c, "version")
	if err != nil {
		return err
	}
	if err := s.checkChange(j, v, to, kind); err != nil {
		return err
	}
	dry, err := oneOf(c, "dry_run", []string{"true", "false"})
	if err != nil {
		return err
	}
	var req publishRequest
	if err := decodeOptionalBody(c, &req); err != nil {
		return err
	}
	sources, err := s.inFlight(c, j, v.Number)
	if err != nil {
		return err
	}
	res := planSources(sources, to, req.options())
	if dry == "true" {
		return c.JSON(http.StatusOK, res)
	}
	m, err := s.newMigration(c, j, v.Number, kind, req)
	if err != nil {
		return err
	}
	if m.Strategy != store.StrategyNewEntriesOnly {
		if !res.Valid {
			e := apiError(http.StatusUnprocessableEntity, "invalid_migration",
				"the migration's plan would leave customers without a place; a dry run lists each problem")
			e.Details = map[string]any{"problems": res.Problems, "other_versions": res.OtherVersions}
			return e
		}
		for _, src := range sources {
			m.Counts.Total += src.instances
		}
	}
	ctx := c.Request().Context()
	j, m, err = s.store.Migrations().StartMigration(ctx, m)
	switch {
	case errors.Is(err, store.ErrMigrationInProgress):
		return apiError(http.StatusConflict, "migration_in_progress",
			"the journey has a migration in progress; let it complete or abort it first")
	case errors.Is(err, store.ErrConflict):
		return apiError(http.StatusConflict, "conflict", "the journey's active version changed meanwhile; retry")
	case err != nil:
		return s.versionError(c, err)
	}
	s.journeyChanged(c, j)
	if m.Status == store.MigrationRunning && s.engine != nil {
		if err := s.engine.RunMigration(ctx, j.TenantID, j.ID, m.ID); err != nil {
			// The engine's recovery pass starts running migrations too.
			s.log.WarnContext(ctx, "start migration", slog.String("migration_id", m.ID), slog.Any("error", err))
		}
	}
	if v, err = s.findVersion(c, v.Number); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, publishResponse{Journey: j, Version: withGraph(v), Migration: m})
}

// checkChange refuses a publish of anything but a valid draft and a
// rollback to anything but another published version.
func (s *Server) checkChange(j store.Journey, v store.Version, g journey.Graph, kind string) error {
	switch {
	case j.Status == store.JourneyArchived:
		return apiError(http.StatusConflict, "journey_archived", "an archived journey cannot change its active version")
	case kind == store.MigrationRollback && v.Status != store.VersionPublished:
		return apiError(http.StatusConflict, "version_not_published", "only a published version can be rolled back to")
	case kind == store.MigrationRollback && v.Number == j.ActiveVersion:
		return apiError(http.StatusConflict, "version_active", "the version is already the active one")
	case kind == store.MigrationPublish && v.Status != store.VersionDraft:
		return versionNotDraft()
	}
	if result := s.validate(g); !result.Valid {
		e := apiError(http.StatusUnprocessableEntity, "invalid_graph",
			fmt.Sprintf("the graph has %d problem(s); fix them before publishing", len(result.Problems)))
		e.Details = map[string]any{"problems": result.Problems}
		return e
	}
	return nil
}

// inFlight are the versions customers are in flight on, but the version
// to: the active version first (its empty graph before the first publish,
// for the diff), then the older ones in order.
func (s *Server) inFlight(c echo.Context, j store.Journey, to int) ([]source, error) {
	ctx := c.Request().Context()
	versions := []int{j.ActiveVersion}
	instances := map[int]int{}
	if j.ActiveVersion > 0 {
		counts, err := s.store.Instances().CountByVersion(ctx, j.TenantID, j.ID)
		if err != nil {
			return nil, err
		}
		for _, vc := range counts {
			if engine.Terminal(vc.Status) || vc.Version == to {
				continue
			}
			if instances[vc.Version] == 0 && vc.Version != j.ActiveVersion {
				versions = append(versions, vc.Version)
			}
			instances[vc.Version] += vc.Count
		}
		slices.Sort(versions[1:])
	}
	sources := make([]source, 0, len(versions))
	for _, n := range versions {
		src := source{version: n, counts: map[string]int{}, instances: instances[n]}
		if n > 0 {
			var err error
			if src.graph, err = s.versionGraph(c, n); err != nil {
				return nil, err
			}
			if src.counts, err = s.store.Instances().CountAtNodes(ctx, j.TenantID, j.ID, n); err != nil {
				return nil, err
			}
		}
		sources = append(sources, src)
	}
	return sources, nil
}

// newMigration is the record of the change the request asks for: who, what
// and how.
func (s *Server) newMigration(c echo.Context, j store.Journey, to int, kind string, req publishRequest) (store.Migration, error) {
	m := store.Migration{TenantID: j.TenantID, JourneyID: j.ID, Kind: kind, FromVersion: j.ActiveVersion, ToVersion: to,
		Strategy: req.Strategy, BatchSize: defaultBatchSize, CreatedAt: s.now()}
	if m.Strategy == "" {
		m.Strategy = store.StrategyNewEntriesOnly
		if kind == store.MigrationRollback {
			m.Strategy = store.StrategyMigrateAll
		}
	}
	if j.ActiveVersion == 0 {
		m.Strategy = store.StrategyNewEntriesOnly // nobody is in flight
	}
	switch m.Strategy {
	case store.StrategyMigrateAll:
		m.RolloutPercent = 100
	case store.StrategyGradual:
		m.RolloutPercent = *req.RolloutPercent
	}
	if req.BatchSize != nil {
		m.BatchSize = *req.BatchSize
	}
	if key, ok := callerKey(c); ok {
		m.CreatedBy = fmt.Sprintf("%s (%s)", key.Name, key.ID)
	}
	options, err := json.Marshal(req.options())
	if err != nil {
		return m, fmt.Errorf("encode migration options: %w", err)
	}
	m.Options = options
	return m, nil
}

// loadMigration fetches the :migration of the :id journey.
func (s *Server) loadMigration(c echo.Context) (store.Migration, error) {
	m, err := s.store.Migrations().GetMigration(c.Request().Context(), tenantID(c), c.Param("migration"))
	if err == nil && m.JourneyID != c.Param("id") {
		err = store.ErrNotFound
	}
	if err != nil {
		return m, storeError(err, "migration_not_found", "migration")
	}
	return m, nil
}

func (s *Server) listMigrations(c echo.Context) error {
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	status, err := oneOf(c, "status", []string{store.MigrationRunning, store.MigrationPaused, store.MigrationPartial,
		store.MigrationCompleted, store.MigrationAborted, store.MigrationFailed})
	if err != nil {
		return err
	}
	return listPage(c, func(m store.Migration) string { return m.ID }, func(after string, limit int) ([]store.Migration, error) {
		return s.store.Migrations().ListMigrations(c.Request().Context(), j.TenantID,
			store.MigrationFilter{JourneyID: j.ID, Status: status, After: after, Limit: limit})
	})
}

func (s *Server) getMigration(c echo.Context) error {
	m, err := s.loadMigration(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

type rolloutRequest struct {
	RolloutPercent *int `json:"rollout_percent"`
}

func (r *rolloutRequest) check() error {
	if r.RolloutPercent == nil {
		return missingField("rollout_percent")
	}
	return nil
}

// controlMigration pauses, resumes, aborts or raises the rollout of a
// migration, through the journey's grain that carries it out.
func (s *Server) controlMigration(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		m, err := s.loadMigration(c)
		if err != nil {
			return err
		}
		percent := 0
		if action == actors.MigrationRollout {
			var req rolloutRequest
			if err := decodeBody(c, &req); err != nil {
				return err
			}
			percent = *req.RolloutPercent
		}
		m, err = s.engine.ControlMigration(c.Request().Context(), m.TenantID, m.JourneyID, m.ID, action, percent)
		if err != nil {
			return s.refusal(c, err, actors.CodeMigrationState, actors.CodeInvalidRollout, "rollout_percent")
		}
		return c.JSON(http.StatusOK, m)
	}
}

// refusal maps what the engine answered a control with: the grain code
// conflict is a 409, invalid a 400 about field, anything else an engine error.
func (s *Server) refusal(c echo.Context, err error, conflict, invalid, field string) error {
	var ge *cluster.GrainError
	switch {
	case errors.As(err, &ge) && ge.Code == conflict:
		return apiError(http.StatusConflict, ge.Code, ge.Message)
	case errors.As(err, &ge) && ge.Code == invalid:
		e := invalidField(field, ge.Message)
		e.Code = ge.Code
		return e
	}
	return s.engineError(c, err)
}

type releaseRequest struct {
	NodeID string `json:"node_id"`
}

func (r *releaseRequest) check() error {
	if r.NodeID == "" {
		return missingField("node_id")
	}
	return nil
}

// releaseInstance sends a held instance's customer to a node of its version.
func (s *Server) releaseInstance(c echo.Context) error {
	var req releaseRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	in, err := s.engine.ReleaseInstance(c.Request().Context(), tenantID(c), c.Param("id"), req.NodeID)
	var ge *cluster.GrainError
	switch {
	case err == nil:
		return c.JSON(http.StatusOK, in)
	case errors.Is(err, store.ErrNotFound), errors.As(err, &ge) && ge.Code == "instance_not_found":
		return apiError(http.StatusNotFound, "instance_not_found", "instance not found")
	}
	return s.refusal(c, err, actors.CodeNotHeld, actors.CodeUnknownNode, "node_id")
}

// maxRelease bounds the held instances one call releases; a client
// releases more by calling again while more is true.
const maxRelease = 1000

type releaseHeldRequest struct {
	NodeID string `json:"node_id"`
	// FromNode, if set, releases only the instances held at that node.
	FromNode string `json:"from_node"`
	Limit    *int   `json:"limit"`
	// After is the next_after of the previous call: the held instances
	// after it, in id order, so that instances that stay held (they failed)
	// are not taken again and again.
	After string `json:"after"`
}

func (r *releaseHeldRequest) check() error {
	switch {
	case r.NodeID == "":
		return missingField("node_id")
	case r.Limit != nil && (*r.Limit < 1 || *r.Limit > maxRelease):
		return invalidField("limit", fmt.Sprintf("must be from 1 to %d", maxRelease))
	}
	return nil
}

// releaseFailure is a held instance that could not be released.
type releaseFailure struct {
	InstanceID string `json:"instance_id"`
	Code       string `json:"code"`
	Message    string `json:"message"`
}

type releaseHeldResponse struct {
	Released int              `json:"released"`
	Failed   []releaseFailure `json:"failed"`
	// More says held instances remain that this call did not take;
	// NextAfter is then the after of the next call.
	More      bool   `json:"more"`
	NextAfter string `json:"next_after,omitempty"`
}

// releaseHeld releases a journey's held instances, those held at one node
// or all, to a node of the active version, up to limit (500 by default) per
// call, several at a time.
func (s *Server) releaseHeld(c echo.Context) error {
	var req releaseHeldRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	j, err := s.loadJourney(c)
	if err != nil {
		return err
	}
	g, err := s.versionGraph(c, j.ActiveVersion)
	if err != nil {
		return err
	}
	if _, ok := g.Node(req.NodeID); !ok {
		e := invalidField("node_id", fmt.Sprintf("the active version %d has no node %q", j.ActiveVersion, req.NodeID))
		e.Code = actors.CodeUnknownNode
		return e
	}
	limit := 500
	if req.Limit != nil {
		limit = *req.Limit
	}
	ctx := c.Request().Context()
	held, err := s.store.Instances().ListInstances(ctx, j.TenantID, store.InstanceFilter{JourneyID: j.ID,
		Status: store.InstanceHeld, NodeID: req.FromNode, After: req.After, Limit: limit + 1})
	if err != nil {
		return fmt.Errorf("list held instances: %w", err)
	}
	res := releaseHeldResponse{Failed: []releaseFailure{}, More: len(held) > limit}
	held = held[:min(len(held), limit)]
	if res.More {
		res.NextAfter = held[len(held)-1].ID
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, in := range held {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := s.engine.ReleaseInstance(ctx, j.TenantID, in.ID, req.NodeID)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				res.Released++
				return
			}
			f := releaseFailure{InstanceID: in.ID, Code: "internal", Message: "the instance could not be released"}
			var ge *cluster.GrainError
			switch {
			case errors.As(err, &ge):
				f.Code, f.Message = ge.Code, ge.Message
			case cluster.Retryable(err):
				f.Code, f.Message = "engine_unavailable", "the engine is unavailable; retry shortly"
			default:
				s.log.ErrorContext(ctx, "release held instance", slog.String("instance_id", in.ID), slog.Any("error", err))
			}
			res.Failed = append(res.Failed, f)
		}()
	}
	wg.Wait()
	return c.JSON(http.StatusOK, res)
}
