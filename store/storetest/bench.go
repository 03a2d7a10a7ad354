package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// BenchmarkCommit measures Commit with batches of 1 and 64 commits, each
// the size of one step of a running journey: an instance update with a
// step, a timer and a delivery. open returns a fresh, migrated store.
func BenchmarkCommit(b *testing.B, open func(b testing.TB) store.Store) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			benchmarkCommit(b, open(b), batch)
		})
	}
}

func benchmarkCommit(b *testing.B, s store.Store, batch int) {
	ctx := context.Background()
	w := newWorld(b, s, "bench")
	ins := make([]store.Instance, batch)
	for i := range ins {
		ins[i] = w.create(b, w.instance(w.newCustomer(b, fmt.Sprintf("c%d", i)), ""))
	}
	commits := make([]store.Commit, batch)
	rounds := 0
	for b.Loop() {
		rounds++
		now := time.Now()
		for i, in := range ins {
			in.Status, in.UpdatedAt = store.InstanceWaiting, now
			commits[i] = store.Commit{
				Instance: in,
				Steps: []store.Step{{NodeID: "mail", NodeType: "send_email", Version: 1, TokenID: "t1", Outcome: "completed",
					StartedAt: now, FinishedAt: now}},
				Deliveries: []store.Delivery{{Key: fmt.Sprintf("%s/mail/%d", in.ID, rounds), NodeID: "mail", Channel: "email",
					Payload: json.RawMessage(`{"template_id": "welcome"}`)}},
				Timers: []store.Timer{{TokenID: "t1", DueAt: now.Add(time.Hour)}},
			}
		}
		for _, err := range s.Instances().Commit(ctx, commits) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(rounds*batch)/b.Elapsed().Seconds(), "commits/s")
}
