package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/logprovider"
	"github.com/kalcifer/kalcifer/channels/outbox"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/supervisor"
)

// Grain kinds.
const (
	KindInstance = "instance"
	KindCustomer = "customer"
	KindJourney  = "journey"
)

// Options configure a Runtime. Zero values take the defaults noted per field.
type Options struct {
	Store  store.Store
	Nodes  *nodes.Registry
	Logger *slog.Logger
	// Now is the clock of the engine and the services; default time.Now.
	Now func() time.Time
	// Registerer receives the runtime's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Cluster configures this node's membership (see cluster.Config); the
	// runtime sets its kinds, logger and registerer. The zero value is a
	// single node on 127.0.0.1 with a free gRPC port.
	Cluster cluster.Config
	// RecoverEvery is how often the runtime re-drives instances left
	// running for that long (by a node that died mid-step); default 15 s.
	RecoverEvery time.Duration
	// TimerPoll is how often the timer service looks for due timers; default 1 s.
	TimerPoll time.Duration
	// DispatchPoll is how often the outbox is polled besides wake-ups; default 1 s.
	DispatchPoll time.Duration
	// Accounts are the tenants' provider accounts deliveries go out
	// through; default: every channel to the log provider.
	Accounts *accounts.Manager
	// DeliveryWorkers is how many sends run at once; default 8.
	DeliveryWorkers int
	// IdleTimeout passivates idle grains; default 2 minutes.
	IdleTimeout time.Duration
	// OnCommit, if set, is told about every instance commit once it is
	// durable: live monitoring and latency measurements hang off it.
	OnCommit func(store.Commit)
}

// Runtime is the running engine of one node: the grains, the services that
// feed them (timers, event routing, recovery, the outbox) and the entry
// points the API calls.
type Runtime struct {
	store      store.Store
	nodes      *nodes.Registry
	log        *slog.Logger
	now        func() time.Time
	node       *cluster.Node
	committer  *store.GroupCommitter
	timers     *TimerService
	router     *Router
	dispatcher *outbox.Dispatcher
	plans      *plans
	entries    *entries
	timerPoll  time.Duration
	escalation *escalation
	onCommit   func(store.Commit)
	// migrated counts the instances migrations asked, by outcome.
	migrated *prometheus.CounterVec
	// customerLocks serialise the steps of one customer's instances on
	// this node. Across nodes that takes the cluster's placement (a later issue).
	customerLocks stripedLocks

	// The services run in two trees so that Stop can end them in order:
	// the feeders (timers, router, outbox, recovery) before the grains,
	// the committer the grains write through after them.
	stopFeeders, stopCommitter context.CancelFunc
	feedersDone, committerDone chan struct{}
	stopOnce                   sync.Once
	stopErr                    error
}

// clusterSize is how many members the cluster has; 1 until the node has
// started (the dispatcher runs only after).
func (r *Runtime) clusterSize() int {
	if r.node == nil {
		return 1
	}
	return r.node.Size()
}

// Start starts the node's grains and services.
func Start(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Store == nil || opts.Nodes == nil {
		return nil, errors.New("actors: Options.Store and Options.Nodes are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TimerPoll <= 0 {
		opts.TimerPoll = time.Second
	}
	if opts.DispatchPoll <= 0 {
		opts.DispatchPoll = time.Second
	}
	if opts.Accounts == nil {
		m, err := accounts.New(accounts.Options{Store: opts.Store.Providers(), Kinds: []channels.Kind{logprovider.Kind},
			Fallback: logprovider.Kind.Name, Deps: channels.Deps{Now: opts.Now, Logger: opts.Logger}})
		if err != nil {
			return nil, err
		}
		opts.Accounts = m
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	if opts.RecoverEvery <= 0 {
		opts.RecoverEvery = 15 * time.Second
	}
	r := &Runtime{
		store: opts.Store, nodes: opts.Nodes, log: opts.Logger, now: opts.Now, timerPoll: opts.TimerPoll, onCommit: opts.OnCommit,
		committer:   store.NewGroupCommitter(opts.Store.Instances(), 256),
		feedersDone: make(chan struct{}), committerDone: make(chan struct{}),
	}
	r.migrated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kalcifer_migration_instances_total",
		Help: "Instances migrations asked to move, by outcome: migrated, exited, held, failed, or skipped (ended first).",
	}, []string{"outcome"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(r.migrated)
	}
	r.plans = newPlans(opts.Store.Journeys(), opts.Nodes)
	r.entries = newEntries(opts.Store.Journeys(), r.plans, opts.Now, 5*time.Second)
	r.escalation = newEscalation(opts.Now, 10*time.Minute, 5)
	r.timers = NewTimerService(opts.Store.Instances(), r.fireTimer, opts.Now, opts.TimerPoll, opts.Logger, opts.Registerer)
	r.router = NewRouter(opts.Store.Events(), r.routeEvent, opts.Now, 64, 30*time.Second, opts.Logger)
	dispatcher, err := outbox.New(outbox.Options{Store: opts.Store, Accounts: opts.Accounts, Now: opts.Now, Poll: opts.DispatchPoll,
		Logger: opts.Logger, Registerer: opts.Registerer, Workers: opts.DeliveryWorkers,
		// Every member sends: each takes its share of an account's rate.
		Nodes: r.clusterSize})
	if err != nil {
		return nil, err
	}
	r.dispatcher = dispatcher

	// Instances get their own supervisor: its give-up marks the instance failed.
	grainOpts := KindOptions{IdleTimeout: opts.IdleTimeout, Logger: opts.Logger}
	instanceOpts := grainOpts
	instanceOpts.Supervisor = supervisor.NewGrainSupervisor(supervisor.GrainOptions{Policy: supervisor.Policy{Logger: opts.Logger}, OnGiveUp: r.giveUp})
	ccfg := opts.Cluster
	ccfg.Logger, ccfg.Registerer = opts.Logger, opts.Registerer
	ccfg.Placement = placeWithCustomer
	ccfg.OnBroadcast = func(m proto.Message) {
		if changed, ok := m.(*actorpb.EntriesChanged); ok {
			r.entries.invalidate(changed.GetTenantId())
		}
	}
	ccfg.Kinds = []*pcluster.Kind{
		Kind(KindInstance, func(id string) Grain {
			tenantID, customerID, instanceID := splitInstanceIdentity(id)
			return &instanceGrain{rt: r, tenantID: tenantID, customerID: customerID, instanceID: instanceID}
		}, instanceOpts),
		Kind(KindCustomer, grainFor(func(t, id string) Grain { return &customerGrain{rt: r, tenantID: t, customerID: id} }), grainOpts),
		Kind(KindJourney, grainFor(func(t, id string) Grain { return &journeyGrain{rt: r, tenantID: t, journeyID: id} }), grainOpts),
	}
	node, err := cluster.Start(ctx, ccfg)
	if err != nil {
		return nil, err
	}
	r.node = node

	policy := supervisor.Policy{Logger: opts.Logger}
	r.stopCommitter = r.run(ctx, r.committerDone, supervisor.NewTree(supervisor.TreeOptions{Name: "store", Policy: policy}, r.committer))
	r.stopFeeders = r.run(ctx, r.feedersDone, supervisor.NewTree(supervisor.TreeOptions{Name: "services", Strategy: supervisor.OneForOne, Policy: policy},
		r.timers, r.router, r.dispatcher, recovery{r: r, every: opts.RecoverEvery, started: opts.Now()}))
	return r, nil
}

// run runs a service tree until the returned function is called, then closes done.
func (r *Runtime) run(ctx context.Context, done chan struct{}, tree *supervisor.Tree) context.CancelFunc {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(done)
		if err := tree.Run(runCtx); err != nil {
			r.log.Error("runtime services stopped", "tree", tree.Name(), "error", err)
		}
	}()
	return cancel
}

// identity names a tenant's grain: tenant id and grain id, which never
// contain a slash.
func identity(tenantID, id string) string { return tenantID + "/" + id }

// instanceIdentity names an instance's grain after its customer too, so
// that the cluster places it with the customer's grain (placeWithCustomer):
// then one node runs all of a customer's steps, and its customer locks
// serialise them (frequency caps across journeys).
func instanceIdentity(tenantID, customerID, instanceID string) string {
	return tenantID + "/" + customerID + "/" + instanceID
}

func splitInstanceIdentity(id string) (tenantID, customerID, instanceID string) {
	tenantID, rest, _ := strings.Cut(id, "/")
	customerID, instanceID, _ = strings.Cut(rest, "/")
	return tenantID, customerID, instanceID
}

// placeWithCustomer is the cluster's placement: an instance lives with its
// customer, every other grain by its own identity.
func placeWithCustomer(kind, id string) (string, string) {
	if kind != KindInstance {
		return kind, id
	}
	tenantID, customerID, _ := splitInstanceIdentity(id)
	return KindCustomer, identity(tenantID, customerID)
}

// grainFor adapts a constructor taking tenant and id to the kind's factory.
func grainFor(newGrain func(tenantID, id string) Grain) func(string) Grain {
	return func(identity string) Grain {
		tenantID, id, _ := strings.Cut(identity, "/")
		return newGrain(tenantID, id)
	}
}

// Stop drains the node: the services that feed grains stop first, then
// the node leaves the cluster (the others take its grains over) and its
// grains stop, and last the committer they wrote through. ctx bounds the
// whole drain; what is cut short is durable and picked up elsewhere. A
// second Stop returns what the first did.
func (r *Runtime) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() { r.stopErr = r.stop(ctx) })
	return r.stopErr
}

func (r *Runtime) stop(ctx context.Context) error {
	r.stopFeeders()
	var errs []error
	if err := wait(ctx, r.feedersDone); err != nil {
		errs = append(errs, fmt.Errorf("stop runtime services: %w", err))
	}
	errs = append(errs, r.node.Stop(ctx))
	r.stopCommitter()
	if err := wait(ctx, r.committerDone); err != nil {
		errs = append(errs, fmt.Errorf("stop the committer: %w", err))
	}
	return errors.Join(errs...)
}

func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Members reports the cluster as this node sees it.
func (r *Runtime) Members(ctx context.Context) []cluster.MemberState { return r.node.Members(ctx) }

// Port is how the API reaches grains.
func (r *Runtime) Port() cluster.Port { return r.node }

// idempotent lets an ask be sent again, within its deadline, after a
// retryable failure such as the grain's member leaving the cluster before
// it answered. Only messages safe to handle twice take it: enrolments
// keyed by their entry, events (deduplicated by id), timers and
// continues (ignored once stale), and reads. Enrolments take it only with
// an entry key.
var idempotent = cluster.WithRetry(3, 50*time.Millisecond)

func (r *Runtime) askInstance(ctx context.Context, m *actorpb.InstanceTrigger, opts ...cluster.CallOption) (*actorpb.InstanceReply, error) {
	return ask[*actorpb.InstanceReply](ctx, r.node, instanceIdentity(m.GetTenantId(), m.GetCustomerId(), m.GetInstanceId()), KindInstance, m, opts...)
}

func (r *Runtime) journeyInfo(ctx context.Context, tenantID, journeyID string) (*actorpb.JourneyInfo, error) {
	return ask[*actorpb.JourneyInfo](ctx, r.node, identity(tenantID, journeyID), KindJourney,
		&actorpb.JourneyInfoRequest{TenantId: tenantID, JourneyId: journeyID}, idempotent)
}

// ask sends a request and checks the reply's type.
func ask[T proto.Message](ctx context.Context, port cluster.Port, id, kind string, msg proto.Message, opts ...cluster.CallOption) (T, error) {
	var zero T
	reply, err := port.Ask(ctx, id, kind, msg, opts...)
	if err != nil {
		return zero, err
	}
	typed, ok := reply.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s answered %T", kind, id, reply)
	}
	return typed, nil
}

func (r *Runtime) loadCustomer(ctx context.Context, tenantID, customerID string) (nodes.Customer, error) {
	c, err := r.store.Customers().GetCustomer(ctx, tenantID, customerID)
	if err != nil {
		return nodes.Customer{}, fmt.Errorf("load customer %s: %w", customerID, err)
	}
	return toNodeCustomer(c), nil
}

// sentSince counts committed deliveries for the engine's frequency caps. A
// store error counts as the cap being reached: better to skip a message than
// to exceed a cap the marketer set.
func (r *Runtime) sentSince(ctx context.Context, tenantID, customerID string) func(string, time.Time) int {
	return func(channel string, since time.Time) int {
		if channel == "all" {
			channel = ""
		}
		n, err := r.store.Instances().CountSends(ctx, tenantID, customerID, channel, since)
		if err != nil {
			r.log.Warn("count sends for a frequency cap", "tenant_id", tenantID, "customer_id", customerID, "error", err)
			return int(^uint(0) >> 1)
		}
		return n
	}
}

// committed hands a commit's effects to the services that act on them.
func (r *Runtime) committed(c store.Commit) {
	if r.onCommit != nil {
		r.onCommit(c)
	}
	if len(c.Deliveries) > 0 {
		r.dispatcher.Wake()
	}
	horizon := r.now().Add(r.timerPoll)
	for _, t := range c.Timers {
		if t.DueAt.Before(horizon) {
			r.timers.Wake()
			break
		}
	}
}

// continueLater asks an instance to go on with its ready tokens, from
// outside the grain's current message.
func (r *Runtime) continueLater(tenantID, customerID, instanceID string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := r.askInstance(ctx, &actorpb.InstanceTrigger{
			TenantId: tenantID, CustomerId: customerID, InstanceId: instanceID, Kind: actorpb.InstanceTrigger_KIND_CONTINUE,
		}, idempotent); err != nil {
			r.log.Warn("continue instance", "tenant_id", tenantID, "instance_id", instanceID, "error", err)
		}
	}()
}

func (r *Runtime) fireTimer(ctx context.Context, t store.Timer) error {
	_, err := r.askInstance(ctx, &actorpb.InstanceTrigger{
		TenantId: t.TenantID, CustomerId: t.CustomerID, InstanceId: t.InstanceID, Kind: actorpb.InstanceTrigger_KIND_TIMER, TokenId: t.TokenID,
	}, idempotent)
	return err
}

func (r *Runtime) routeEvent(ctx context.Context, e store.Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = ask[*actorpb.CustomerEventReply](ctx, r.node, identity(e.TenantID, e.CustomerID), KindCustomer,
		&actorpb.CustomerEvent{TenantId: e.TenantID, CustomerId: e.CustomerID, EventJson: data}, idempotent)
	return err
}

// recovery re-drives the instances a stop left running (a step cut short
// at MaxSteps, or a start whose reply was lost); waiting instances need
// nothing, their timers and waits are in the store. At start it takes
// every running instance; then, every few seconds, those not updated for
// as long, which a member of the cluster left behind when it died.
type recovery struct {
	r     *Runtime
	every time.Duration
	// started is when the runtime started: the first pass takes what
	// was running then.
	started time.Time
}

func (recovery) Name() string { return "recovery" }

func (rc recovery) Run(ctx context.Context) error {
	if err := rc.pass(ctx, rc.started); err != nil {
		return err
	}
	ticker := time.NewTicker(rc.every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if err := rc.pass(ctx, rc.r.now().Add(-rc.every)); err != nil {
			return err
		}
	}
}

// pass re-drives the running instances last updated at or before cutoff,
// and kicks the running migrations no batch has recorded progress of since.
func (rc recovery) pass(ctx context.Context, cutoff time.Time) error {
	migrations, err := rc.r.store.Migrations().RunningMigrations(ctx, cutoff)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("list running migrations: %w", err)
	}
	for _, m := range migrations {
		if err := rc.r.RunMigration(ctx, m.TenantID, m.JourneyID, m.ID); err != nil && ctx.Err() == nil {
			rc.r.log.Warn("resume migration", "tenant_id", m.TenantID, "migration_id", m.ID, "error", err)
		}
	}
	after := ""
	for {
		batch, err := rc.r.store.Instances().Recoverable(ctx, cutoff, after, 500)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("list recoverable instances: %w", err)
		}
		for _, in := range batch {
			// One instance that cannot continue now (crash backoff, a
			// timeout) must not hold up the others; it stays running and
			// is tried again at the next pass.
			if _, err := rc.r.askInstance(ctx, &actorpb.InstanceTrigger{
				TenantId: in.TenantID, CustomerId: in.CustomerID, InstanceId: in.ID, Kind: actorpb.InstanceTrigger_KIND_CONTINUE,
			}, idempotent); err != nil && ctx.Err() == nil {
				rc.r.log.Warn("recover instance", "tenant_id", in.TenantID, "instance_id", in.ID, "error", err)
			}
		}
		if len(batch) < 500 {
			return nil
		}
		after = batch[len(batch)-1].ID
	}
}

// giveUp marks an instance that keeps crashing failed, with the crash
// reason, and pauses its journey when too many of its instances do so.
func (r *Runtime) giveUp(id, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tenantID, _, instanceID := splitInstanceIdentity(id)
	row, err := r.store.Instances().ClaimInstance(ctx, tenantID, instanceID)
	if err != nil {
		r.log.Error("mark crashing instance failed", "instance_id", instanceID, "error", err)
		return
	}
	var s engine.State
	if err := json.Unmarshal(row.Snapshot, &s); err != nil || engine.Terminal(s.Status) {
		return
	}
	s.Status, s.Error, s.Tokens = engine.StatusFailed, "crashed repeatedly: "+reason, nil
	snapshot, _ := json.Marshal(s)
	row.Status, row.Error, row.Snapshot, row.Nodes, row.UpdatedAt = s.Status, s.Error, snapshot, nil, r.now()
	if err := r.committer.Commit(ctx, store.Commit{Instance: row}); err != nil {
		r.log.Error("mark crashing instance failed", "instance_id", instanceID, "error", err)
		return
	}
	r.log.Error("instance failed after repeated crashes", "tenant_id", tenantID, "instance_id", instanceID, "reason", reason)
	if !r.escalation.crashed(row.JourneyID) {
		return
	}
	_, err = r.store.Journeys().SetJourneyStatus(ctx, tenantID, row.JourneyID, store.JourneyActive, store.JourneyPaused, r.now())
	if err != nil {
		r.log.Error("pause journey whose instances keep crashing", "journey_id", row.JourneyID, "error", err)
		return
	}
	r.log.Error("journey paused: its instances keep crashing", "tenant_id", tenantID, "journey_id", row.JourneyID)
	r.JourneyChanged(ctx, tenantID, row.JourneyID)
}

// escalation counts instances that failed by crashing, per journey, over a
// sliding window.
type escalation struct {
	now    func() time.Time
	window time.Duration
	limit  int
	mu     sync.Mutex
	byID   map[string][]time.Time
}

func newEscalation(now func() time.Time, window time.Duration, limit int) *escalation {
	return &escalation{now: now, window: window, limit: limit, byID: map[string][]time.Time{}}
}

// crashed records one and reports whether the journey crossed the limit.
func (e *escalation) crashed(journeyID string) bool {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	recent := e.byID[journeyID][:0]
	for _, at := range e.byID[journeyID] {
		if now.Sub(at) < e.window {
			recent = append(recent, at)
		}
	}
	recent = append(recent, now)
	e.byID[journeyID] = recent
	return len(recent) >= e.limit
}

// JourneyChanged tells the runtime a journey was published or changed
// status, so new entries see it at once: every member of the cluster drops
// the tenant's cached entry points before it returns.
func (r *Runtime) JourneyChanged(ctx context.Context, tenantID, journeyID string) {
	r.entries.invalidate(tenantID)
	if err := r.node.Broadcast(ctx, &actorpb.EntriesChanged{TenantId: tenantID}); err != nil {
		// A member that missed it sees the change when its cache expires.
		r.log.Warn("tell the cluster a journey changed", "journey_id", journeyID, "error", err)
	}
	if err := r.node.Tell(ctx, identity(tenantID, journeyID), KindJourney,
		&actorpb.JourneyRefresh{TenantId: tenantID, JourneyId: journeyID}); err != nil {
		r.log.Warn("refresh journey grain", "journey_id", journeyID, "error", err)
	}
}

// Settle does synchronously what the services do on their own: it fires
// the timers due now, routes every unrouted event, dispatches the outbox
// and carries out the running migrations, until nothing is left. Tests and benchmarks call it after moving the
// clock, instead of waiting for the services' next poll.
func (r *Runtime) Settle(ctx context.Context) error {
	for {
		timers, failed, err := r.timers.FireDue(ctx)
		if err != nil {
			return err
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d due timers failed to fire", failed, timers)
		}
		events, err := r.router.Sweep(ctx, 0)
		if err != nil {
			return err
		}
		sent, err := r.dispatcher.DispatchOnce(ctx)
		if err != nil {
			return err
		}
		migrations, err := r.drainMigrations(ctx)
		if err != nil {
			return err
		}
		if timers+events+sent+migrations == 0 {
			return nil
		}
	}
}

// stripedLocks is a fixed set of mutexes picked by hashing a key: enough to
// serialise work per customer without a mutex per customer.
type stripedLocks [1024]sync.Mutex

func (l *stripedLocks) lock(tenantID, customerID string) func() {
	h := fnv.New32a()
	h.Write([]byte(tenantID))
	h.Write([]byte{'/'})
	h.Write([]byte(customerID))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}
