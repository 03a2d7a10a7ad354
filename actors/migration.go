package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

// Codes of refused migration controls and releases.
const (
	CodeNotHeld            = "not_held"
	CodeUnknownNode        = "unknown_node"
	CodeMigrationNotFound  = "migration_not_found"
	CodeMigrationState     = "invalid_migration_state"
	CodeInvalidRollout     = "invalid_rollout_percent"
	codeMigrationElsewhere = "migration_of_another_journey"
)

// Migration control actions.
const (
	MigrationPause   = "pause"
	MigrationResume  = "resume"
	MigrationAbort   = "abort"
	MigrationRollout = "rollout"
)

// migrationParallel is how many instances of a batch migrate at once: each
// is its own grain and commit, and the group committer writes the
// concurrent commits together.
const migrationParallel = 64

// pendingStale is how long a batch the grain sent itself may take to
// arrive before a kick may start the next one: a Tell is at most once.
const pendingStale = time.Minute

// migrationRun is the migration a journey grain is carrying out.
type migrationRun struct {
	m store.Migration
	// plans hold, by version, the journey.MigrationPlan (as JSON) the
	// instances on that version apply.
	plans map[int][]byte
	// pendingSince is when the grain sent itself its next batch, zero
	// when none is on its way.
	pendingSince time.Time
}

// onMigrationRun migrates the next batch of a running migration and sends
// the grain the next one, unless asked to drain: then it answers after the
// batch, and the caller asks again (Runtime.Settle). A kick while a batch
// is on its way is ignored, so there is one chain of batches.
func (g *journeyGrain) onMigrationRun(ctx Context, msg *actorpb.MigrationRun) error {
	if g.run != nil && g.run.m.ID == msg.GetMigrationId() {
		switch {
		case msg.GetContinued(), !msg.GetDrain() && g.rt.now().Sub(g.run.pendingSince) >= pendingStale:
			// The batch sent arrived, or was lost: this message goes on.
			g.run.pendingSince = time.Time{}
		case msg.GetDrain():
		case !g.run.pendingSince.IsZero():
			return nil
		}
	}
	run, err := g.loadRun(ctx, msg.GetMigrationId())
	if err != nil || run.m.Status != store.MigrationRunning {
		return err
	}
	if err := g.migrateBatch(ctx, run); err != nil {
		// What the store holds is the truth; the next kick starts from it.
		g.run = nil
		return err
	}
	if !msg.GetDrain() && run.m.Status == store.MigrationRunning && run.pendingSince.IsZero() {
		g.continueMigration(ctx, run)
	}
	return nil
}

// continueMigration sends the grain its next batch.
func (g *journeyGrain) continueMigration(ctx context.Context, run *migrationRun) {
	err := g.rt.node.Tell(ctx, identity(g.tenantID, g.journeyID), KindJourney,
		&actorpb.MigrationRun{TenantId: g.tenantID, JourneyId: g.journeyID, MigrationId: run.m.ID, Continued: true})
	if err != nil {
		g.rt.log.Warn("continue migration; the recovery pass will", "migration_id", run.m.ID, "error", err)
		return
	}
	run.pendingSince = g.rt.now()
}

// loadRun returns the journey's migration id, loading it unless it is the
// one the grain carries out.
func (g *journeyGrain) loadRun(ctx context.Context, id string) (*migrationRun, error) {
	if g.run != nil && g.run.m.ID == id {
		return g.run, nil
	}
	m, err := g.rt.store.Migrations().GetMigration(ctx, g.tenantID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &cluster.GrainError{Code: CodeMigrationNotFound, Message: id}
	}
	if err != nil {
		return nil, err
	}
	if m.JourneyID != g.journeyID {
		return nil, &cluster.GrainError{Code: codeMigrationElsewhere, Message: fmt.Sprintf("migration %s is of journey %s", id, m.JourneyID)}
	}
	// Enrolments read the active version from the grain's info: reading it
	// again now, the migration's first message, makes every enrolment from
	// here on run the version the migration moves customers to.
	g.info = nil
	g.run = &migrationRun{m: m, plans: map[int][]byte{}}
	return g.run, nil
}

// plan is the plan, as JSON, of the move from version to the migration's
// version. It was checked against the nodes customers were at when the
// migration started; a node with a problem that customers have reached
// since holds them, since a plan with problems could lose them or move
// them backwards.
func (g *journeyGrain) plan(ctx context.Context, run *migrationRun, version int) ([]byte, error) {
	if p, ok := run.plans[version]; ok {
		return p, nil
	}
	from, err := g.rt.plans.get(ctx, g.tenantID, g.journeyID, version)
	if err != nil {
		return nil, err
	}
	to, err := g.rt.plans.get(ctx, g.tenantID, g.journeyID, run.m.ToVersion)
	if err != nil {
		return nil, err
	}
	var opts journey.MigrationOptions
	if len(run.m.Options) > 0 {
		if err := json.Unmarshal(run.m.Options, &opts); err != nil {
			return nil, fmt.Errorf("decode options of migration %s: %w", run.m.ID, err)
		}
	}
	plan, problems := journey.PlanMigration(from.Graph(), to.Graph(), opts, nil)
	for _, p := range problems {
		for i := range plan.Placements {
			if plan.Placements[i].From == p.NodeID {
				plan.Placements[i] = journey.Placement{From: p.NodeID, Action: journey.ActionHold}
			}
		}
	}
	encoded, err := json.Marshal(plan)
	if err != nil {
		return nil, fmt.Errorf("encode plan of migration %s from version %d: %w", run.m.ID, version, err)
	}
	run.plans[version] = encoded
	return encoded, nil
}

// migrateBatch migrates the batch a crash interrupted, or else the next
// one, and records the progress. A pass goes through the instances of
// every version but the migration's, a version at a time in order, each
// in id order; the cursor says where it is ("<version>/<last id>"). The
// batch is stored before any instance of it is asked, so that a migration
// resumed after a crash asks the same instances again; an instance asked
// twice moves once, and says so.
func (g *journeyGrain) migrateBatch(ctx context.Context, run *migrationRun) error {
	m := &run.m
	if len(m.Batch) == 0 {
		version, keys, err := g.nextBatch(ctx, m)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return g.finishPass(ctx, m)
		}
		for _, k := range keys {
			if journey.InRollout(k.ID, m.RolloutPercent) {
				m.Batch = append(m.Batch, fmt.Sprintf("%d/%s/%s", version, k.CustomerID, k.ID))
			} else {
				m.Counts.Skipped++
			}
		}
		m.Cursor = fmt.Sprintf("%d/%s", version, keys[len(keys)-1].ID)
		if err := g.saveMigration(ctx, m); err != nil || len(m.Batch) == 0 {
			return err
		}
	}
	// Every instance of a batch is on one version, which its entries
	// name ("<version>/<customer>/<instance>"): a raised rollout resets
	// the cursor, not the batch.
	version, _ := splitCursor(m.Batch[0])
	plan, err := g.plan(ctx, run, version)
	if errors.Is(err, store.ErrNotFound) {
		// A version gone (its journey deleted) never comes back.
		now := g.rt.now()
		m.Status, m.Error, m.FinishedAt = store.MigrationFailed, err.Error(), &now
		return g.saveMigration(ctx, m)
	}
	if err != nil {
		return err
	}
	g.migrateInstances(ctx, m, version, plan)
	m.Batch = nil
	return g.saveMigration(ctx, m)
}

// nextBatch lists the instances after the cursor: on the cursor's version,
// else on the next version that has instances in flight.
func (g *journeyGrain) nextBatch(ctx context.Context, m *store.Migration) (int, []store.InstanceKey, error) {
	version, after := splitCursor(m.Cursor)
	for {
		if version > 0 {
			keys, err := g.rt.store.Instances().ActiveKeys(ctx, g.tenantID, g.journeyID, version, after, m.BatchSize)
			if err != nil || len(keys) > 0 {
				return version, keys, err
			}
		}
		next, err := g.nextVersion(ctx, m, version)
		if err != nil || next == 0 {
			return 0, nil, err
		}
		version, after = next, ""
	}
}

// nextVersion is the first version after version, other than the
// migration's, that has instances in flight; 0 when there is none.
func (g *journeyGrain) nextVersion(ctx context.Context, m *store.Migration, version int) (int, error) {
	counts, err := g.rt.store.Instances().CountByVersion(ctx, g.tenantID, g.journeyID)
	if err != nil {
		return 0, fmt.Errorf("count instances for migration %s: %w", m.ID, err)
	}
	next := 0
	for _, c := range counts {
		if c.Version > version && c.Version != m.ToVersion && !engine.Terminal(c.Status) && c.Count > 0 && (next == 0 || c.Version < next) {
			next = c.Version
		}
	}
	return next, nil
}

// splitCursor reads a cursor, or a batch entry: version 0 when the pass
// has not begun.
func splitCursor(cursor string) (version int, after string) {
	v, after, _ := strings.Cut(cursor, "/")
	version, _ = strconv.Atoi(v)
	return version, after
}

// finishPass ends a pass over the instances on the old version: the
// migration is complete, or a gradual one waits for its percentage to rise.
func (g *journeyGrain) finishPass(ctx context.Context, m *store.Migration) error {
	if m.RolloutPercent < 100 {
		m.Status = store.MigrationPartial
	} else {
		m.Status = store.MigrationCompleted
		now := g.rt.now()
		m.FinishedAt = &now
	}
	return g.saveMigration(ctx, m)
}

func (g *journeyGrain) saveMigration(ctx context.Context, m *store.Migration) error {
	m.UpdatedAt = g.rt.now()
	if err := g.rt.store.Migrations().UpdateMigration(ctx, *m); err != nil {
		return fmt.Errorf("record progress of migration %s: %w", m.ID, err)
	}
	return nil
}

// migrateInstances asks every instance of the batch, on version, to
// migrate along plan, each in its own grain, and counts what became of them.
func (g *journeyGrain) migrateInstances(ctx context.Context, m *store.Migration, version int, plan []byte) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, migrationParallel)
	for _, key := range m.Batch {
		_, key, _ := strings.Cut(key, "/")
		customerID, instanceID, _ := strings.Cut(key, "/")
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			reply, err := g.rt.askInstance(ctx, &actorpb.InstanceTrigger{
				TenantId: g.tenantID, CustomerId: customerID, InstanceId: instanceID, Kind: actorpb.InstanceTrigger_KIND_MIGRATE,
				MigrationId: m.ID, FromVersion: int32(version), ToVersion: int32(m.ToVersion), PlanJson: plan,
			}, idempotent)
			mu.Lock()
			defer mu.Unlock()
			g.rt.migrated.WithLabelValues(countMigrated(m, instanceID, reply, err)).Inc()
		}()
	}
	wg.Wait()
}

// countMigrated adds one instance's outcome to the migration's counts and
// returns it. An instance the migration did not move (it ended first) was
// left on the old version, like those a rollout's percentage leaves.
func countMigrated(m *store.Migration, instanceID string, reply *actorpb.InstanceReply, err error) string {
	switch {
	case err != nil:
		m.Counts.Failed++
		if len(m.Failures) >= store.MaxMigrationFailures {
			m.Failures = m.Failures[1:]
		}
		m.Failures = append(m.Failures, store.MigrationFailure{InstanceID: instanceID, Error: err.Error()})
		return "failed"
	case reply.GetMigrationId() != m.ID:
		m.Counts.Skipped++
		return "skipped"
	case reply.GetStatus() == engine.StatusExited:
		m.Counts.Exited++
		return "exited"
	case reply.GetStatus() == engine.StatusHeld:
		m.Counts.Held++
		return "held"
	default:
		m.Counts.Migrated++
		return "migrated"
	}
}

// onMigrationControl pauses, resumes, aborts or raises the rollout of the
// journey's migration. Controls arrive between batches, since the grain
// handles one message at a time.
func (g *journeyGrain) onMigrationControl(ctx Context, msg *actorpb.MigrationControl) error {
	run, err := g.loadRun(ctx, msg.GetMigrationId())
	if err != nil {
		return err
	}
	m := &run.m
	refuse := func(why string) error {
		return &cluster.GrainError{Code: CodeMigrationState, Message: fmt.Sprintf("migration %s is %s: %s", m.ID, m.Status, why)}
	}
	kick := false
	switch msg.GetAction() {
	case MigrationPause:
		if m.Status != store.MigrationRunning {
			return refuse("only a running migration can be paused")
		}
		m.Status = store.MigrationPaused
	case MigrationResume:
		if m.Status != store.MigrationPaused {
			return refuse("only a paused migration can be resumed")
		}
		m.Status, kick = store.MigrationRunning, true
	case MigrationAbort:
		if store.MigrationFinished(m.Status) {
			return refuse("it has finished")
		}
		now := g.rt.now()
		m.Status, m.FinishedAt = store.MigrationAborted, &now
	case MigrationRollout:
		if m.Strategy != store.StrategyGradual || store.MigrationFinished(m.Status) {
			return refuse("only an unfinished gradual migration has a rollout percentage to raise")
		}
		p := int(msg.GetRolloutPercent())
		if p <= m.RolloutPercent || p > 100 {
			return &cluster.GrainError{Code: CodeInvalidRollout,
				Message: fmt.Sprintf("rollout_percent must be above the current %d and at most 100", m.RolloutPercent)}
		}
		// A new pass from the start moves those the new percentage adds.
		m.RolloutPercent, m.Cursor, m.Counts.Skipped = p, "", 0
		if m.Status == store.MigrationPartial {
			m.Status = store.MigrationRunning
		}
		kick = m.Status == store.MigrationRunning
	default:
		return &cluster.GrainError{Code: "invalid_action", Message: fmt.Sprintf("unknown migration action %q", msg.GetAction())}
	}
	if err := g.saveMigration(ctx, m); err != nil {
		g.run = nil
		return err
	}
	if kick && run.pendingSince.IsZero() {
		g.continueMigration(ctx, run)
	}
	return nil
}

// RunMigration has the journey's grain go on with its running migration.
// The recovery pass kicks running migrations too, so one a lost kick
// leaves idle resumes within a pass.
func (r *Runtime) RunMigration(ctx context.Context, tenantID, journeyID, migrationID string) error {
	return r.node.Tell(ctx, identity(tenantID, journeyID), KindJourney,
		&actorpb.MigrationRun{TenantId: tenantID, JourneyId: journeyID, MigrationId: migrationID})
}

// drainMigrations migrates one batch of every running migration and
// returns how many there were.
func (r *Runtime) drainMigrations(ctx context.Context) (int, error) {
	running, err := r.store.Migrations().RunningMigrations(ctx, r.now())
	if err != nil {
		return 0, err
	}
	for _, m := range running {
		if _, err := r.node.Ask(ctx, identity(m.TenantID, m.JourneyID), KindJourney, &actorpb.MigrationRun{
			TenantId: m.TenantID, JourneyId: m.JourneyID, MigrationId: m.ID, Drain: true}); err != nil {
			return 0, fmt.Errorf("drain migration %s: %w", m.ID, err)
		}
	}
	return len(running), nil
}

// ControlMigration pauses, resumes or aborts a journey's migration, or
// raises a gradual one's rollout percentage, and returns it as stored.
func (r *Runtime) ControlMigration(ctx context.Context, tenantID, journeyID, migrationID, action string, rolloutPercent int) (store.Migration, error) {
	_, err := r.node.Ask(ctx, identity(tenantID, journeyID), KindJourney, &actorpb.MigrationControl{
		TenantId: tenantID, JourneyId: journeyID, MigrationId: migrationID, Action: action, RolloutPercent: int32(rolloutPercent),
	})
	if err != nil {
		return store.Migration{}, err
	}
	return r.store.Migrations().GetMigration(ctx, tenantID, migrationID)
}

// ReleaseInstance sends a held instance's held customers to a node of its
// version, which then runs for them.
func (r *Runtime) ReleaseInstance(ctx context.Context, tenantID, instanceID, nodeID string) (store.Instance, error) {
	in, _, err := r.triggerInstance(ctx, tenantID, instanceID, &actorpb.InstanceTrigger{Kind: actorpb.InstanceTrigger_KIND_RELEASE, NodeId: nodeID})
	return in, err
}
