package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The cluster benchmarks run real three-node clusters (see cluster_test.go); run each once:
//
//	go test -run XXX -bench Cluster -benchtime 1x ./cmd/kalcifer/

// BenchmarkClusterFailover measures, per gossip probe interval, the time from SIGKILL of a node to the
// first successful request to a grain that node owned, and how many requests failed meanwhile (a client
// retrying every 10 ms).
func BenchmarkClusterFailover(b *testing.B) {
	for _, probe := range []time.Duration{200 * time.Millisecond, time.Second} {
		b.Run("probe="+probe.String(), func(b *testing.B) {
			for range b.N {
				failover, failed := runNodeKill(b, probe, 200)
				b.ReportMetric(float64(failover.Milliseconds()), "ms-to-first-success")
				b.ReportMetric(float64(failed), "failed-requests")
			}
		})
	}
}

// BenchmarkClusterAsk compares requests answered by a grain on the node that took the request with
// requests answered by a grain on another node: an instance action through node 0's API, whose grain
// answers "no change". The difference of the two is the cross-node hop.
func BenchmarkClusterAsk(b *testing.B) {
	c := startCluster(b, 3, clusterProbe)
	park := createAndPublish(b, c.nodes[0].server(), c.key, waitingJourney)
	c.enrolAll(park, customerIDs("ask", 300))
	var local, remote []string
	for _, in := range listAll(b, c.nodes[0].server(), c.key, "/journeys/"+park+"/instances") {
		id := in["id"].(string)
		if c.instanceOwner(in) == 0 {
			local = append(local, id)
		} else {
			remote = append(remote, id)
		}
	}
	measure := func(ids []string) (p50, p99 time.Duration) {
		var took []time.Duration
		for i := range 2000 {
			began := time.Now()
			code, body, err := tryCall(c.nodes[0].server(), http.MethodPost, "/instances/"+ids[i%len(ids)]+"/resume", c.key, "")
			if err != nil || code != http.StatusConflict {
				b.Fatalf("resume: %d %s %v", code, body, err)
			}
			took = append(took, time.Since(began))
		}
		slices.Sort(took)
		return took[len(took)/2], took[len(took)*99/100]
	}
	for range b.N {
		lp50, lp99 := measure(local)
		rp50, rp99 := measure(remote)
		b.ReportMetric(float64(lp50.Microseconds()), "local-p50-µs")
		b.ReportMetric(float64(lp99.Microseconds()), "local-p99-µs")
		b.ReportMetric(float64(rp50.Microseconds()), "remote-p50-µs")
		b.ReportMetric(float64(rp99.Microseconds()), "remote-p99-µs")
	}
}

// eventJourney waits for each customer's "go" event.
const eventJourney = `{"name":"go","graph":{
 "nodes":[{"id":"in","type":"webhook_entry"},{"id":"w","type":"wait_for_event","config":{"event_type":"go","timeout":"1h"}},
  {"id":"out","type":"journey_exit"},{"id":"late","type":"journey_exit"}],
 "edges":[{"id":"e1","source":"in","target":"w"},{"id":"e2","source":"w","target":"out","branch":"event_received"},
  {"id":"e3","source":"w","target":"late","branch":"timed_out"}]}}`

// BenchmarkClusterEvents routes one event to each of 3,000 waiting customers, posted in batches of 500
// through every node's API at once, on one node and on three, and reports events routed per second
// (from the first post to the last instance completed).
func BenchmarkClusterEvents(b *testing.B) {
	const customers = 3000
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			for range b.N {
				c := startCluster(b, nodes, clusterProbe)
				journeyID := createAndPublish(b, c.nodes[0].server(), c.key, eventJourney)
				ids := customerIDs("ev", customers)
				c.enrolAll(journeyID, ids)
				c.waitStatus(journeyID, "waiting", customers, 2*time.Minute)
				began := time.Now()
				var wg sync.WaitGroup
				for i := 0; i < customers; i += 500 {
					batch := ids[i:min(i+500, customers)]
					node := c.nodes[(i/500)%nodes]
					wg.Go(func() {
						var events []string
						for _, id := range batch {
							events = append(events, fmt.Sprintf(`{"customer_id":%q,"type":"go","message_id":"go-%s"}`, id, id))
						}
						body := `{"events":[` + strings.Join(events, ",") + `]}`
						if code, data, err := tryCall(node.server(), http.MethodPost, "/events/batch", c.key, body); err != nil || code != http.StatusAccepted {
							b.Errorf("post events: %d %s %v", code, data, err)
						}
					})
				}
				wg.Wait()
				c.waitStatus(journeyID, "completed", customers, 5*time.Minute)
				b.ReportMetric(float64(customers)/time.Since(began).Seconds(), "events-routed/s")
			}
		})
	}
}
