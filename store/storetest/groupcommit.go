package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kalcifer/kalcifer/store"
)

// testGroupCommitter checks that commits funnelled through a GroupCommitter
// keep their one-by-one results: concurrent creates all land, a stale epoch
// fails alone, and nothing is accepted after the committer stops.
func testGroupCommitter(t *testing.T, s store.Store) {
	w := newWorld(t, s, "grouped")
	ctx, cancel := context.WithCancel(context.Background())
	g := store.NewGroupCommitter(s.Instances(), 16)
	var running sync.WaitGroup
	running.Add(1)
	go func() {
		defer running.Done()
		if err := g.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	const n = 40
	customers := make([]string, n)
	for i := range customers {
		customers[i] = w.newCustomer(t, fmt.Sprintf("c%d", i))
	}
	instances := make([]store.Instance, n)
	errs := Concurrently(n, func() func() error {
		var mu sync.Mutex
		next := 0
		return func() error {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			instances[i] = w.instance(customers[i], fmt.Sprintf("entry-%d", i))
			return g.Commit(context.Background(), store.Commit{Instance: instances[i], Create: true})
		}
	}())
	for i, err := range errs {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	list, err := s.Instances().ListInstances(context.Background(), w.tenant, store.InstanceFilter{JourneyID: w.journey})
	if err != nil || len(list) != n {
		t.Fatalf("want %d instances, got %d (%v)", n, len(list), err)
	}

	stale := instances[0]
	stale.Epoch = 7
	stale.Status = store.InstanceWaiting
	fresh := instances[1]
	fresh.Epoch = 1
	fresh.Status = store.InstanceWaiting
	results := Concurrently(2, func() func() error {
		var mu sync.Mutex
		queue := []store.Instance{stale, fresh}
		return func() error {
			mu.Lock()
			in := queue[0]
			queue = queue[1:]
			mu.Unlock()
			err := g.Commit(context.Background(), store.Commit{Instance: in})
			if in.ID == stale.ID {
				if !errors.Is(err, store.ErrStaleEpoch) {
					return fmt.Errorf("stale commit: got %v, want ErrStaleEpoch", err)
				}
				return nil
			}
			return err
		}
	}())
	for _, err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Instances().GetInstance(context.Background(), w.tenant, fresh.ID)
	if err != nil || got.Status != store.InstanceWaiting {
		t.Fatalf("the fresh commit beside a stale one must land: %+v %v", got, err)
	}

	cancel()
	running.Wait()
	if err := g.Commit(context.Background(), store.Commit{Instance: instances[2]}); !errors.Is(err, store.ErrCommitterStopped) {
		t.Fatalf("commit after stop: got %v, want ErrCommitterStopped", err)
	}
}
