package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrCommitterStopped is returned for commits submitted after the committer stopped.
var ErrCommitterStopped = errors.New("group committer stopped")

// GroupCommitter funnels commits from many grains into few transactions:
// while one batch is being written, the commits that arrive queue up and go
// together in the next. A lone commit is written at once, so grouping costs
// no latency when the system is quiet and saves a transaction per commit
// when it is busy.
type GroupCommitter struct {
	instances Instances
	maxBatch  int
	requests  chan commitRequest
	// stopped is closed once Run has failed every queued commit; a commit
	// queued later is never written, and its caller learns so from stopped.
	stopped chan struct{}
}

type commitRequest struct {
	commit Commit
	result chan error
}

// NewGroupCommitter returns a committer writing batches of at most maxBatch commits.
func NewGroupCommitter(instances Instances, maxBatch int) *GroupCommitter {
	return &GroupCommitter{
		instances: instances,
		maxBatch:  max(maxBatch, 1),
		requests:  make(chan commitRequest, 4*max(maxBatch, 1)),
		stopped:   make(chan struct{}),
	}
}

// Name identifies the committer in the supervision tree.
func (g *GroupCommitter) Name() string { return "group-committer" }

// Run writes batches until ctx ends; commits still queued then get ErrCommitterStopped.
func (g *GroupCommitter) Run(ctx context.Context) error {
	batch := make([]commitRequest, 0, g.maxBatch)
	for {
		select {
		case <-ctx.Done():
			g.drain()
			close(g.stopped)
			return nil
		case first := <-g.requests:
			batch = append(batch[:0], first)
		fill:
			for len(batch) < g.maxBatch {
				select {
				case r := <-g.requests:
					batch = append(batch, r)
				default:
					break fill
				}
			}
			g.write(ctx, batch)
		}
	}
}

func (g *GroupCommitter) write(ctx context.Context, batch []commitRequest) {
	commits := make([]Commit, len(batch))
	for i, r := range batch {
		commits[i] = r.commit
	}
	// Every request of the batch gets an answer even if the store panics:
	// its grain waits for one. The panic goes on to the supervisor.
	answered := false
	defer func() {
		if answered {
			return
		}
		if p := recover(); p != nil {
			for _, r := range batch {
				r.result <- fmt.Errorf("commit instance %s: store panicked: %v", r.commit.Instance.ID, p)
			}
			panic(p)
		}
	}()
	errs := g.instances.Commit(ctx, commits)
	answered = true
	for i, r := range batch {
		var err error
		if i < len(errs) {
			err = errs[i]
		} else {
			err = fmt.Errorf("commit instance %s: no result from the store", r.commit.Instance.ID)
		}
		r.result <- err
	}
}

// drain fails the commits nobody will write.
func (g *GroupCommitter) drain() {
	for {
		select {
		case r := <-g.requests:
			r.result <- ErrCommitterStopped
		default:
			return
		}
	}
}

// Commit queues c and waits until it is written or ctx ends. When ctx ends
// first, the commit may still be written: callers treat that as unknown and
// reload, as after any timeout.
func (g *GroupCommitter) Commit(ctx context.Context, c Commit) error {
	r := commitRequest{commit: c, result: make(chan error, 1)}
	select {
	case g.requests <- r:
	case <-g.stopped:
		return ErrCommitterStopped
	case <-ctx.Done():
		return fmt.Errorf("queue commit of instance %s: %w", c.Instance.ID, ctx.Err())
	}
	select {
	case err := <-r.result:
		return err
	case <-g.stopped:
		select {
		case err := <-r.result:
			return err
		default:
			return ErrCommitterStopped
		}
	case <-ctx.Done():
		return fmt.Errorf("commit instance %s: %w", c.Instance.ID, ctx.Err())
	}
}
