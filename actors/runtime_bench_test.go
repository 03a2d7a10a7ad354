package actors_test

// Benchmarks of the whole runtime: grains, engine and store together. They
// start Proto.Actor in-process, so like the rest of this package they run
// without -race. Run them with
//
//	go test -run XXX -bench Runtime -benchtime 1x ./actors/ -args -kalcifer.bench.n=20000
//
// and on PostgreSQL by setting KALCIFER_BENCH_DATABASE_URL to an empty
// database's URL.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/postgres"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

var benchN = flag.Int("kalcifer.bench.n", 2000, "customers per runtime benchmark")

type benchRig struct {
	st      store.Store
	rt      *actors.Runtime
	tenant  store.Tenant
	commits sync.Map // instance id → chan time.Time of its commits
	onAny   atomic.Int64
}

func newBenchRig(b *testing.B) *benchRig {
	b.Helper()
	ctx := context.Background()
	var (
		st  store.Store
		err error
	)
	if url := os.Getenv("KALCIFER_BENCH_DATABASE_URL"); url != "" {
		st, err = postgres.Open(ctx, url, 32)
	} else {
		st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	rig := &benchRig{st: st}
	rig.tenant, err = st.Tenants().CreateTenant(ctx, fmt.Sprintf("bench-%d", time.Now().UnixNano()), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	rig.rt, err = actors.Start(ctx, actors.Options{
		Store: st, Nodes: nodes.Default(), Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		// Short, so the RSS measured below is that of waiting instances
		// that cost a row, as in production once grains passivate.
		IdleTimeout: 2 * time.Second,
		OnCommit: func(c store.Commit) {
			rig.onAny.Add(1)
			if ch, ok := rig.commits.Load(c.Instance.ID); ok {
				select {
				case ch.(chan time.Time) <- time.Now():
				default:
				}
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rig.rt.Stop(context.Background()) })
	return rig
}

func (rig *benchRig) publish(b *testing.B, graph string) string {
	b.Helper()
	ctx := context.Background()
	j, err := rig.st.Journeys().CreateJourney(ctx, store.Journey{TenantID: rig.tenant.ID, Name: "bench"}, []byte(graph))
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := rig.st.Journeys().PublishVersion(ctx, rig.tenant.ID, j.ID, 1, time.Now()); err != nil {
		b.Fatal(err)
	}
	return j.ID
}

// enrolAll triggers the journey for n customers from 32 goroutines and
// returns each trigger's latency (until its first step is committed).
func (rig *benchRig) enrolAll(b *testing.B, journeyID string, n int) ([]string, []time.Duration) {
	b.Helper()
	ids := make([]string, n)
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				start := time.Now()
				res, err := rig.rt.Enrol(context.Background(), rig.tenant, journeyID, "", []actors.Target{{ExternalID: fmt.Sprintf("c%d", i), Key: fmt.Sprintf("k%d", i)}})
				if err != nil || res[0].Error != nil {
					b.Errorf("enrol %d: %v %+v", i, err, res)
					return
				}
				lat[i], ids[i] = time.Since(start), res[0].InstanceID
			}
		}()
	}
	wg.Wait()
	return ids, lat
}

func reportPercentiles(b *testing.B, name string, lat []time.Duration) {
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.5), name+"_p50_ms")
	b.ReportMetric(p(0.99), name+"_p99_ms")
}

const chainGraph = `{"nodes":[{"id":"in","type":"webhook_entry"},
 {"id":"c1","type":"condition","config":{"expression":"profile.external_id != ''"}},
 {"id":"u1","type":"update_profile","config":{"fields":{"seen":true}}},
 {"id":"c2","type":"condition","config":{"expression":"context.trigger != nil"}},
 {"id":"t1","type":"add_tag","config":{"tag":"bench"}},
 {"id":"a1","type":"ab_split","config":{"variants":[{"key":"a","weight":1},{"key":"b","weight":1}]}},
 {"id":"x","type":"journey_exit"}],
 "edges":[{"id":"e1","source":"in","target":"c1"},{"id":"e2","source":"c1","target":"u1","branch":"true"},
  {"id":"e3","source":"c1","target":"x","branch":"false"},{"id":"e4","source":"u1","target":"c2"},
  {"id":"e5","source":"c2","target":"t1","branch":"true"},{"id":"e6","source":"c2","target":"t1","branch":"false"},
  {"id":"e7","source":"t1","target":"a1"},{"id":"e8","source":"a1","target":"x","branch":"a"},{"id":"e9","source":"a1","target":"x","branch":"b"}]}`

// BenchmarkRuntimeTrigger: trigger → first commit latency and node
// executions per second through grains and the store (7 nodes per customer).
func BenchmarkRuntimeTrigger(b *testing.B) {
	rig := newBenchRig(b)
	journeyID := rig.publish(b, chainGraph)
	for b.Loop() {
		start := time.Now()
		_, lat := rig.enrolAll(b, journeyID, *benchN)
		elapsed := time.Since(start)
		b.ReportMetric(float64(*benchN)/elapsed.Seconds(), "instances/s")
		b.ReportMetric(float64(*benchN*6)/elapsed.Seconds(), "nodes/s")
		reportPercentiles(b, "trigger", lat)
	}
}

const waitGraph = `{"nodes":[{"id":"in","type":"webhook_entry"},
 {"id":"w","type":"wait_for_event","config":{"event_type":"ping","timeout":"30d"}},
 {"id":"done","type":"journey_exit"},{"id":"late","type":"journey_exit"}],
 "edges":[{"id":"e1","source":"in","target":"w"},{"id":"e2","source":"w","target":"done","branch":"event_received"},
  {"id":"e3","source":"w","target":"late","branch":"timed_out"}]}`

// BenchmarkRuntimeEvents: events ingested per second, routed to instances
// waiting for them, and the latency from ingestion to the resumed
// instance's commit. Reports the process's RSS with the instances waiting.
func BenchmarkRuntimeEvents(b *testing.B) {
	rig := newBenchRig(b)
	journeyID := rig.publish(b, waitGraph)
	ids, _ := rig.enrolAll(b, journeyID, *benchN)
	time.Sleep(3 * time.Second) // let the idle grains passivate
	runtime.GC()
	rss := float64(rssKB()) / 1024
	chans := make([]chan time.Time, len(ids))
	for i, id := range ids {
		chans[i] = make(chan time.Time, 1)
		rig.commits.Store(id, chans[i])
	}
	for b.Loop() {
		const batch = 500
		sent := make([]time.Time, len(ids))
		start := time.Now()
		for lo := 0; lo < len(ids); lo += batch {
			hi := min(lo+batch, len(ids))
			in := make([]actors.Incoming, 0, hi-lo)
			for i := lo; i < hi; i++ {
				in = append(in, actors.Incoming{ExternalID: fmt.Sprintf("c%d", i), Type: "ping", MessageID: fmt.Sprintf("m%d", i)})
			}
			now := time.Now()
			for i := lo; i < hi; i++ {
				sent[i] = now
			}
			if _, err := rig.rt.Ingest(context.Background(), rig.tenant, in); err != nil {
				b.Fatal(err)
			}
		}
		ingested := time.Since(start)
		lat := make([]time.Duration, len(ids))
		deadline := time.After(10 * time.Minute)
		for i, ch := range chans {
			select {
			case at := <-ch:
				lat[i] = at.Sub(sent[i])
			case <-deadline:
				b.Fatalf("instance %d was not resumed", i)
			}
		}
		routed := time.Since(start)
		b.ReportMetric(rss, "rss_waiting_MB")
		b.ReportMetric(float64(len(ids))/ingested.Seconds(), "ingested_events/s")
		b.ReportMetric(float64(len(ids))/routed.Seconds(), "routed_events/s")
		reportPercentiles(b, "resume", lat)
	}
}

// rssKB is the resident set size of this process.
func rssKB() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var kb int
	for line := range strings.Lines(string(data)) {
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			return kb
		}
	}
	return 0
}

// BenchmarkRuntimeWaitingRSS reports the process's RSS once n customers wait
// in a wait_for_event and their grains have passivated: what waiting
// customers cost at rest.
func BenchmarkRuntimeWaitingRSS(b *testing.B) {
	rig := newBenchRig(b)
	journeyID := rig.publish(b, waitGraph)
	for b.Loop() {
		start := time.Now()
		rig.enrolAll(b, journeyID, *benchN)
		b.ReportMetric(float64(*benchN)/time.Since(start).Seconds(), "instances/s")
		time.Sleep(3 * time.Second) // let the idle grains passivate
		runtime.GC()
		b.ReportMetric(float64(rssKB())/1024, "rss_waiting_MB")
	}
}

// BenchmarkRuntimeMigrate: n customers wait in a wait_for_event; version 2
// changes the event it waits for and its timeout, and a migrate_all moves
// them all. Reports the dry run's time (counting the customers at each
// node and planning) and the migration's, from the kick to the record
// saying completed.
func BenchmarkRuntimeMigrate(b *testing.B) {
	rig := newBenchRig(b)
	ctx := context.Background()
	for b.Loop() {
		journeyID := rig.publish(b, waitGraph)
		rig.enrolAll(b, journeyID, *benchN)
		v2 := strings.Replace(strings.Replace(waitGraph, `"ping"`, `"pong"`, 1), `"30d"`, `"60d"`, 1)
		if _, err := rig.st.Journeys().CreateVersion(ctx, rig.tenant.ID, journeyID, []byte(v2), time.Now()); err != nil {
			b.Fatal(err)
		}
		from, to := decodeGraph(b, waitGraph), decodeGraph(b, v2)

		start := time.Now()
		counts, err := rig.st.Instances().CountAtNodes(ctx, rig.tenant.ID, journeyID, 1)
		if err != nil {
			b.Fatal(err)
		}
		occupied := map[string]bool{}
		for id := range counts {
			occupied[id] = true
		}
		if _, problems := journey.PlanMigration(from, to, journey.MigrationOptions{}, occupied); len(problems) > 0 || counts["w"] != *benchN {
			b.Fatalf("dry run: %d at w, problems %+v", counts["w"], problems)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "dry_run_ms")

		start = time.Now()
		_, m, err := rig.st.Migrations().StartMigration(ctx, store.Migration{TenantID: rig.tenant.ID, JourneyID: journeyID,
			Kind: store.MigrationPublish, FromVersion: 1, ToVersion: 2, Strategy: store.StrategyMigrateAll, RolloutPercent: 100,
			BatchSize: 500, Options: []byte(`{}`), CreatedAt: start})
		if err != nil {
			b.Fatal(err)
		}
		if err := rig.rt.RunMigration(ctx, rig.tenant.ID, journeyID, m.ID); err != nil {
			b.Fatal(err)
		}
		for !store.MigrationFinished(m.Status) {
			time.Sleep(20 * time.Millisecond)
			if m, err = rig.st.Migrations().GetMigration(ctx, rig.tenant.ID, m.ID); err != nil {
				b.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		if m.Status != store.MigrationCompleted || m.Counts.Migrated != *benchN {
			b.Fatalf("migration ended %+v", m)
		}
		b.ReportMetric(elapsed.Seconds(), "migration_s")
		b.ReportMetric(float64(*benchN)/elapsed.Seconds(), "migrated/s")
	}
}

func decodeGraph(b *testing.B, raw string) journey.Graph {
	b.Helper()
	g, err := journey.Decode([]byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	return g
}
