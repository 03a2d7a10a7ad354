package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// terminal is the SQL list of terminal statuses. It is spelled as in the
// partial index instances_one_active so that the planners match the two.
const terminal = `('` + store.InstanceCompleted + `', '` + store.InstanceFailed + `', '` + store.InstanceExited + `')`

func isTerminal(status string) bool {
	return status == store.InstanceCompleted || status == store.InstanceFailed || status == store.InstanceExited
}

const instanceCols = `tenant_id, id, journey_id, version, customer_id, status, nodes, entry_key,
	snapshot, epoch, error, created_at, updated_at, ended_at`

func scanInstance(r scanner) (store.Instance, error) {
	var in store.Instance
	var nodes, snapshot []byte
	var created, updated int64
	var ended sql.NullInt64
	err := r.Scan(&in.TenantID, &in.ID, &in.JourneyID, &in.Version, &in.CustomerID, &in.Status, &nodes, &in.EntryKey,
		&snapshot, &in.Epoch, &in.Error, &created, &updated, &ended)
	if err != nil {
		return in, err
	}
	in.Snapshot = snapshot
	in.CreatedAt, in.UpdatedAt, in.EndedAt = fromMicros(created), fromMicros(updated), fromNullMicros(ended)
	in.Nodes = []string{}
	if err := json.Unmarshal(nodes, &in.Nodes); err != nil {
		return in, fmt.Errorf("decode nodes of instance %s: %w", in.ID, err)
	}
	return in, nil
}

// Commit writes the batch in one transaction and, as the commits rarely
// fail, first as one unit: the instance rows one by one, then the rows the
// commits add, table by table, each in as few multi-row statements as it
// can. A commit whose instance row is refused (stale epoch, ended, entry
// seen) fails alone then, having written nothing. Any other failure could
// be any commit's, so the batch is written again with a savepoint per
// commit, where only the commit at fault fails. A batch with two commits
// of one instance goes that way at once: each must see the one before.
func (s *Store) Commit(ctx context.Context, commits []store.Commit) []error {
	errs := make([]error, len(commits))
	if len(commits) == 0 {
		return errs
	}
	cs := make([]store.Commit, len(commits))
	for i, c := range commits {
		cs[i] = stamped(c)
	}
	apart := len(cs) > 1 && !distinctInstances(cs)
	var err error
	if !apart {
		failed := false
		err = s.inTx(ctx, func(tx txn) error {
			err := s.commitTogether(ctx, tx, cs, errs)
			failed = err != nil
			return err
		})
		apart = failed && len(cs) > 1
	}
	if apart {
		clear(errs)
		err = s.inTx(ctx, func(tx txn) error { return s.commitApart(ctx, tx, cs, errs) })
	}
	for i := range errs {
		if errs[i] == nil && err != nil {
			errs[i] = err
		}
		if errs[i] != nil {
			errs[i] = fmt.Errorf("commit instance %s: %w", cs[i].Instance.ID, s.classify(errs[i]))
		}
	}
	return errs
}

// stamped is c as written: updated at its time as stored, and with an id
// if it creates an instance without one.
func stamped(c store.Commit) store.Commit {
	c.Instance.UpdatedAt = stamp(c.Instance.UpdatedAt)
	if c.Create && c.Instance.ID == "" {
		c.Instance.ID = store.NewID("ins", c.Instance.UpdatedAt)
	}
	return c
}

func distinctInstances(cs []store.Commit) bool {
	seen := make(map[[2]string]bool, len(cs))
	for _, c := range cs {
		k := [2]string{c.Instance.TenantID, c.Instance.ID}
		if seen[k] {
			return false
		}
		seen[k] = true
	}
	return true
}

// commitTogether writes the commits as one unit; errs[i] is set for the
// commits whose instance row was refused. An error means the unit failed.
func (s *Store) commitTogether(ctx context.Context, tx txn, cs []store.Commit, errs []error) error {
	live := make([]store.Commit, 0, len(cs))
	for i, c := range cs {
		refused, err := s.writeInstance(ctx, tx, c)
		if err != nil {
			return err
		}
		if refused != nil {
			errs[i] = refused
			continue
		}
		live = append(live, c)
	}
	if err := s.patchCustomers(ctx, tx, live); err != nil {
		return err
	}
	return s.addRows(ctx, tx, live)
}

// commitApart writes each commit inside its own savepoint, so that a
// commit that fails rolls back alone. A lone commit needs no savepoint,
// the transaction being its unit.
func (s *Store) commitApart(ctx context.Context, tx txn, cs []store.Commit, errs []error) error {
	for i, c := range cs {
		own, err := s.savepoint(ctx, tx, func() error {
			refused, err := s.writeInstance(ctx, tx, c)
			if err != nil || refused != nil {
				return errors.Join(err, refused)
			}
			one := []store.Commit{c}
			if err := s.patchCustomers(ctx, tx, one); err != nil {
				return err
			}
			return s.addRows(ctx, tx, one)
		})
		errs[i] = own
		if err != nil {
			return err
		}
	}
	return nil
}

// savepoint runs fn so that its failure undoes only what fn wrote; own is
// fn's error. err means the transaction itself can go no further, and
// takes every commit of the batch down with it.
func (s *Store) savepoint(ctx context.Context, tx txn, fn func() error) (own, err error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT one_commit`); err != nil {
		return nil, err
	}
	if own = fn(); own != nil {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT one_commit`); err != nil {
			return own, err
		}
	}
	_, err = tx.ExecContext(ctx, `RELEASE SAVEPOINT one_commit`)
	return own, err
}

// writeInstance creates or updates the commit's instance row. refused is
// the commit's own failure, with nothing written; err is a failed statement.
func (s *Store) writeInstance(ctx context.Context, tx txn, c store.Commit) (refused, err error) {
	if c.Create {
		return s.createInstance(ctx, tx, c.Instance)
	}
	return s.updateInstance(ctx, tx, c.Instance)
}

// patchCustomers applies the commits' customer patches, in order.
func (s *Store) patchCustomers(ctx context.Context, tx txn, cs []store.Commit) error {
	for _, c := range cs {
		if c.Customer == nil {
			continue
		}
		in := c.Instance
		if _, err := s.patchCustomer(ctx, tx, in.TenantID, `id`, in.CustomerID, *c.Customer, in.UpdatedAt); err != nil {
			return fmt.Errorf("patch customer %s: %w", in.CustomerID, err)
		}
	}
	return nil
}

// addRows writes the rows the commits add, whose instance rows are
// written, each table in few statements. The rows belong to their commit's
// instance: their tenant and instance come from it, whatever the caller
// put there. Timers and waits replace those of the instances updated.
func (s *Store) addRows(ctx context.Context, tx txn, cs []store.Commit) error {
	var steps, deliveries, timers, waits, updated [][]any
	for _, c := range cs {
		in := c.Instance
		rows, err := s.stepRows(ctx, tx, in, c.Create, c.Steps)
		if err != nil {
			return fmt.Errorf("steps: %w", err)
		}
		steps = append(steps, rows...)
		deliveries = append(deliveries, deliveryRows(in, c.Deliveries)...)
		for _, t := range c.Timers {
			timers = append(timers, []any{in.TenantID, in.ID, t.TokenID, stamp(t.DueAt).UnixMicro(), in.CustomerID})
		}
		for _, w := range c.Waits {
			waits = append(waits, []any{in.TenantID, in.ID, orDefault(w.CustomerID, in.CustomerID), w.EventType})
		}
		if !c.Create {
			updated = append(updated, []any{in.TenantID, in.ID})
		}
	}
	if err := s.insertRows(ctx, tx, `instance_steps`, stepCols, false, steps); err != nil {
		return fmt.Errorf("steps: %w", err)
	}
	if err := s.insertRows(ctx, tx, `deliveries`, deliveryInsertCols, true, deliveries); err != nil {
		return fmt.Errorf("deliveries: %w", err)
	}
	if err := s.replaceRows(ctx, tx, `timers`, timerCols, updated, timers); err != nil {
		return fmt.Errorf("timers: %w", err)
	}
	if err := s.replaceRows(ctx, tx, `waits`, `tenant_id, instance_id, customer_id, event_type`, updated, waits); err != nil {
		return fmt.Errorf("waits: %w", err)
	}
	return nil
}

// orDefault is v, or fallback when v is empty.
func orDefault(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}

func nodesJSON(nodes []string) (string, error) {
	if nodes == nil {
		nodes = []string{}
	}
	return jsonText(nodes)
}

// endedAt is when a commit to status at time at ends the instance, if it does.
func endedAt(status string, at time.Time) any {
	if !isTerminal(status) {
		return nil
	}
	return at.UnixMicro()
}

// createInstance inserts with ON CONFLICT DO NOTHING rather than failing on
// the unique indexes, because a failed statement aborts a PostgreSQL
// transaction and the reason must still be read afterwards.
func (s *Store) createInstance(ctx context.Context, tx txn, in store.Instance) (refused, err error) {
	nodes, err := nodesJSON(in.Nodes)
	if err != nil {
		return nil, err
	}
	created := in.UpdatedAt
	if !in.CreatedAt.IsZero() {
		created = stamp(in.CreatedAt)
	}
	res, err := s.exec(ctx, tx, `INSERT INTO instances (`+instanceCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		in.TenantID, in.ID, in.JourneyID, in.Version, in.CustomerID, in.Status, nodes, in.EntryKey,
		rawJSON(in.Snapshot), in.Error, created.UnixMicro(), in.UpdatedAt.UnixMicro(), endedAt(in.Status, in.UpdatedAt))
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return nil, err
	}
	return s.whyNotCreated(ctx, tx, in)
}

// whyNotCreated names the unique index an insert ran into. An entry key
// seen before wins over an active instance: the enrolment is a replay.
func (s *Store) whyNotCreated(ctx context.Context, tx txn, in store.Instance) (refused, err error) {
	exists := func(cond string, args ...any) (bool, error) {
		var n int
		err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM instances WHERE tenant_id = ? AND journey_id = ? AND `+cond,
			append([]any{in.TenantID, in.JourneyID}, args...)...).Scan(&n)
		return n > 0, err
	}
	if in.EntryKey != "" {
		if dup, err := exists(`entry_key = ?`, in.EntryKey); err != nil || dup {
			return refusal(err, fmt.Errorf("%w: entry key %q", store.ErrDuplicateEntry, in.EntryKey))
		}
	}
	if !isTerminal(in.Status) {
		if active, err := exists(`customer_id = ? AND status NOT IN `+terminal, in.CustomerID); err != nil || active {
			return refusal(err, fmt.Errorf("%w: customer %s", store.ErrActiveInstance, in.CustomerID))
		}
	}
	return fmt.Errorf("%w: instance id %s is taken", store.ErrConflict, in.ID), nil
}

// refusal is reason, unless the query that found it failed with err.
func refusal(err, reason error) (refused, _ error) {
	if err != nil {
		return nil, err
	}
	return reason, nil
}

// updateInstance writes the instance only if its epoch is the caller's and
// it has not ended already: terminal statuses stay terminal.
func (s *Store) updateInstance(ctx context.Context, tx txn, in store.Instance) (refused, err error) {
	nodes, err := nodesJSON(in.Nodes)
	if err != nil {
		return nil, err
	}
	err = s.execOne(ctx, tx, `UPDATE instances SET version = ?, status = ?, nodes = ?, snapshot = ?, error = ?,
		updated_at = ?, ended_at = COALESCE(ended_at, ?)
		WHERE tenant_id = ? AND id = ? AND epoch = ? AND (status NOT IN `+terminal+` OR status = ?)`,
		in.Version, in.Status, nodes, rawJSON(in.Snapshot), in.Error,
		in.UpdatedAt.UnixMicro(), endedAt(in.Status, in.UpdatedAt),
		in.TenantID, in.ID, in.Epoch, in.Status)
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var epoch int64
	var status string
	err = s.queryRow(ctx, tx, `SELECT epoch, status FROM instances WHERE tenant_id = ? AND id = ?`,
		in.TenantID, in.ID).Scan(&epoch, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: no instance %s", store.ErrNotFound, in.ID), nil
	case err != nil:
		return nil, err
	case epoch != in.Epoch:
		return fmt.Errorf("%w: epoch is %d, the commit's %d", store.ErrStaleEpoch, epoch, in.Epoch), nil
	default:
		return fmt.Errorf("%w: instance has ended %s", store.ErrConflict, status), nil
	}
}

const stepCols = `tenant_id, instance_id, seq, node_id, node_type, version, token_id, outcome, branch,
	input, output, error, started_at, finished_at`

// stepRows are the rows of the steps a commit adds to in. Steps that come
// without a sequence number are numbered after the last one stored.
func (s *Store) stepRows(ctx context.Context, tx txn, in store.Instance, fresh bool, steps []store.Step) ([][]any, error) {
	var last int64
	if !fresh && slices.ContainsFunc(steps, func(st store.Step) bool { return st.Seq == 0 }) {
		err := s.queryRow(ctx, tx, `SELECT COALESCE(MAX(seq), 0) FROM instance_steps WHERE tenant_id = ? AND instance_id = ?`,
			in.TenantID, in.ID).Scan(&last)
		if err != nil {
			return nil, err
		}
	}
	rows := make([][]any, len(steps))
	for i, st := range steps {
		if st.Seq == 0 {
			st.Seq = last + 1
		}
		last = max(last, st.Seq)
		rows[i] = []any{in.TenantID, in.ID, st.Seq, st.NodeID, st.NodeType, st.Version, st.TokenID, st.Outcome, st.Branch,
			rawJSON(st.Input), rawJSON(st.Output), st.Error, stamp(st.StartedAt).UnixMicro(), stamp(st.FinishedAt).UnixMicro()}
	}
	return rows, nil
}

// replaceRows deletes the rows of table that belong to the instances
// (tenant id, id) old, then inserts rows.
func (s *Store) replaceRows(ctx context.Context, tx txn, table, cols string, old, rows [][]any) error {
	for len(old) > 0 {
		n := chunk(len(old))
		_, err := s.exec(ctx, tx, `DELETE FROM `+table+` WHERE (tenant_id, instance_id) IN (VALUES `+tuples(2, n)+`)`,
			slices.Concat(old[:n]...)...)
		if err != nil {
			return err
		}
		old = old[n:]
	}
	return s.insertRows(ctx, tx, table, cols, true, rows)
}

// maxChunk bounds the rows of one statement, keeping its placeholders far
// below both databases' limits.
const maxChunk = 256

// chunk is how many of n rows the next statement takes: the largest power
// of two up to maxChunk. The statements, prepared once each, then have a
// few texts per table rather than one per row count.
func chunk(n int) int {
	c := maxChunk
	for c > n {
		c /= 2
	}
	return c
}

// tuples is n parenthesised lists of width placeholders: (?, ?), (?, ?).
func tuples(width, n int) string {
	one := `(?` + strings.Repeat(`, ?`, width-1) + `)`
	return one + strings.Repeat(`, `+one, n-1)
}

// insertRows inserts rows, each holding the values of cols, several to a
// statement. With skipDuplicates a row that breaks a uniqueness rule is
// left out instead of failing the statement.
func (s *Store) insertRows(ctx context.Context, tx txn, table, cols string, skipDuplicates bool, rows [][]any) error {
	for len(rows) > 0 {
		n := chunk(len(rows))
		query := `INSERT INTO ` + table + ` (` + cols + `) VALUES ` + tuples(len(rows[0]), n)
		if skipDuplicates {
			query += ` ON CONFLICT DO NOTHING`
		}
		if _, err := s.exec(ctx, tx, query, slices.Concat(rows[:n]...)...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

func (s *Store) ClaimInstance(ctx context.Context, tenantID, id string) (store.Instance, error) {
	in, err := scanInstance(s.queryRow(ctx, s.db, `UPDATE instances SET epoch = epoch + 1
		WHERE tenant_id = ? AND id = ? RETURNING `+instanceCols, tenantID, id))
	if err != nil {
		return store.Instance{}, fmt.Errorf("claim instance %s: %w", id, s.classify(err))
	}
	return in, nil
}

func (s *Store) GetInstance(ctx context.Context, tenantID, id string) (store.Instance, error) {
	query, args := newList(instanceCols, `instances`).where(`tenant_id = ? AND id = ?`, tenantID, id).page(`id`, 1)
	in, err := scanInstance(s.queryRow(ctx, s.reads, query, args...))
	if err != nil {
		return store.Instance{}, fmt.Errorf("get instance %s: %w", id, s.classify(err))
	}
	return in, nil
}

func (s *Store) ListInstances(ctx context.Context, tenantID string, f store.InstanceFilter) ([]store.Instance, error) {
	l := newList(instanceCols, `instances`).where(`tenant_id = ?`, tenantID)
	eq(eq(eq(eq(l, `journey_id`, f.JourneyID), `status`, f.Status), `version`, f.Version), `customer_id`, f.CustomerID)
	query, args := s.holding(l, `nodes`, f.NodeID).byID(f.After, f.Limit)
	ins, err := selectAll(ctx, s, scanInstance, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list instances of tenant %s: %w", tenantID, err)
	}
	return ins, nil
}

func scanStep(r scanner) (store.Step, error) {
	var st store.Step
	var tenantID string
	var input, output []byte
	var started, finished int64
	err := r.Scan(&tenantID, &st.InstanceID, &st.Seq, &st.NodeID, &st.NodeType, &st.Version, &st.TokenID, &st.Outcome,
		&st.Branch, &input, &output, &st.Error, &started, &finished)
	st.Input, st.Output = input, output
	st.StartedAt, st.FinishedAt = fromMicros(started), fromMicros(finished)
	return st, err
}

// ListSteps returns the timeline in order; an instance of another tenant
// has none.
func (s *Store) ListSteps(ctx context.Context, tenantID, instanceID string) ([]store.Step, error) {
	query, args := newList(stepCols, `instance_steps`).where(`tenant_id = ? AND instance_id = ?`, tenantID, instanceID).page(`seq`, 0)
	steps, err := selectAll(ctx, s, scanStep, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list steps of instance %s: %w", instanceID, err)
	}
	return steps, nil
}

// customerInstance returns the customer's latest instance of the journey
// that passes the conditions.
func (s *Store) customerInstance(ctx context.Context, tenantID, journeyID, customerID string, conds ...string) (store.Instance, error) {
	l := newList(instanceCols, `instances`).
		where(`tenant_id = ? AND journey_id = ? AND customer_id = ?`, tenantID, journeyID, customerID)
	for _, c := range conds {
		l.where(c)
	}
	query, args := l.page(`created_at DESC, id DESC`, 1)
	in, err := scanInstance(s.queryRow(ctx, s.reads, query, args...))
	if err != nil {
		return store.Instance{}, fmt.Errorf("instance of customer %s in journey %s: %w", customerID, journeyID, s.classify(err))
	}
	return in, nil
}

func (s *Store) ActiveInstance(ctx context.Context, tenantID, journeyID, customerID string) (store.Instance, error) {
	return s.customerInstance(ctx, tenantID, journeyID, customerID, `status NOT IN `+terminal)
}

func (s *Store) LastInstance(ctx context.Context, tenantID, journeyID, customerID string) (store.Instance, error) {
	return s.customerInstance(ctx, tenantID, journeyID, customerID)
}

func (s *Store) CustomerInstances(ctx context.Context, tenantID, customerID string) ([]store.Instance, error) {
	query, args := newList(instanceCols, `instances`).where(`tenant_id = ? AND customer_id = ?`, tenantID, customerID).
		where(`status NOT IN `+terminal).page(`id`, 0)
	ins, err := selectAll(ctx, s, scanInstance, query, args...)
	if err != nil {
		return nil, fmt.Errorf("instances of customer %s: %w", customerID, err)
	}
	return ins, nil
}

func scanString(r scanner) (string, error) {
	var v string
	err := r.Scan(&v)
	return v, err
}

func (s *Store) WaitingFor(ctx context.Context, tenantID, customerID, eventType string) ([]string, error) {
	ids, err := selectAll(ctx, s, scanString, `SELECT DISTINCT instance_id FROM waits
		WHERE tenant_id = ? AND customer_id = ? AND event_type = ? ORDER BY instance_id`, tenantID, customerID, eventType)
	if err != nil {
		return nil, fmt.Errorf("instances of customer %s waiting for %q: %w", customerID, eventType, err)
	}
	return ids, nil
}

const timerCols = `tenant_id, instance_id, token_id, due_at, customer_id`

func scanTimer(r scanner) (store.Timer, error) {
	var t store.Timer
	var due int64
	err := r.Scan(&t.TenantID, &t.InstanceID, &t.TokenID, &due, &t.CustomerID)
	t.DueAt = fromMicros(due)
	return t, err
}

// dueTimers are claimed earliest first.
var dueTimers = claimable[store.Timer]{
	table: `timers`, key: `tenant_id, instance_id, token_id`, cols: timerCols,
	cond: `due_at <= ?`, order: `due_at, tenant_id, instance_id, token_id`, scan: scanTimer,
	compare: func(a, b store.Timer) int {
		return cmp.Or(a.DueAt.Compare(b.DueAt), strings.Compare(a.TenantID, b.TenantID),
			strings.Compare(a.InstanceID, b.InstanceID), strings.Compare(a.TokenID, b.TokenID))
	},
}

func (s *Store) ClaimDueTimers(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Timer, error) {
	ts, err := claim(ctx, s, dueTimers, now, lease, limit, stamp(now).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("claim due timers: %w", err)
	}
	return ts, nil
}

// Recoverable spells the status out, as in the partial index
// instances_running, so that the planners use the index.
func (s *Store) Recoverable(ctx context.Context, updatedBefore time.Time, after string, limit int) ([]store.Instance, error) {
	query, args := newList(instanceCols, `instances`).where(`status = '`+store.InstanceRunning+`'`).
		where(`updated_at <= ?`, stamp(updatedBefore).UnixMicro()).byID(after, limit)
	ins, err := selectAll(ctx, s, scanInstance, query, args...)
	if err != nil {
		return nil, fmt.Errorf("recoverable instances: %w", err)
	}
	return ins, nil
}

func (s *Store) CountSends(ctx context.Context, tenantID, customerID, channel string, since time.Time) (int, error) {
	l := newList(`COUNT(*)`, `deliveries`).where(`tenant_id = ? AND customer_id = ?`, tenantID, customerID)
	eq(l, `channel`, channel).where(`created_at >= ? AND status <> ?`, stamp(since).UnixMicro(), store.DeliverySkipped)
	var n int
	if err := s.queryRow(ctx, s.reads, l.query, l.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count sends to customer %s: %w", customerID, err)
	}
	return n, nil
}

func (s *Store) CountAtNodes(ctx context.Context, tenantID, journeyID string, version int) (map[string]int, error) {
	// An instance counts once at each node one of its tokens is at.
	rows, err := s.query(ctx, s.reads, `SELECT n.value, COUNT(*) FROM instances i, `+s.d.JSONArrayElements+`(i.nodes) n
		WHERE i.tenant_id = ? AND i.journey_id = ? AND i.version = ? AND i.status NOT IN `+terminal+` GROUP BY n.value`,
		tenantID, journeyID, version)
	if err != nil {
		return nil, fmt.Errorf("count instances of journey %s version %d by node: %w", journeyID, version, err)
	}
	counts := map[string]int{}
	_, err = scanAll(rows, func(r scanner) (struct{}, error) {
		var node string
		var n int
		err := r.Scan(&node, &n)
		counts[node] = n
		return struct{}{}, err
	})
	if err != nil {
		return nil, fmt.Errorf("count instances of journey %s version %d by node: %w", journeyID, version, err)
	}
	return counts, nil
}

func (s *Store) CountByVersion(ctx context.Context, tenantID, journeyID string) ([]store.VersionCount, error) {
	counts, err := selectAll(ctx, s, func(r scanner) (store.VersionCount, error) {
		var c store.VersionCount
		return c, r.Scan(&c.Version, &c.Status, &c.Count)
	}, `SELECT version, status, COUNT(*) FROM instances WHERE tenant_id = ? AND journey_id = ? GROUP BY version, status ORDER BY version, status`,
		tenantID, journeyID)
	if err != nil {
		return nil, fmt.Errorf("count instances of journey %s by version: %w", journeyID, err)
	}
	return counts, nil
}
