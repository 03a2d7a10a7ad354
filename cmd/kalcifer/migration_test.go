package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

// The migration tests move customers in flight from one version of a journey to the next with the real
// binary: one process killed in the middle of a migration and restarted, and a three-node cluster moving
// 10,000 customers.

// migGraph is the journey the migration tests change. Version 1 (v1 true): a sign-up of group "a" waits a
// week at w1, then gets e1; any other group waits up to a week at wfe for a click, then gets e2 (or e3 on
// the timeout). Version 2 (v1 false) removes w1, sending group "a" straight to e1, and has wfe wait for a
// purchase instead of a click.
func migGraph(v1 bool) map[string]any {
	node := func(id, typ string, config map[string]any) map[string]any {
		return map[string]any{"id": id, "type": typ, "config": config}
	}
	edge := func(source, target, branch string) map[string]any {
		e := map[string]any{"id": source + "-" + target, "source": source, "target": target}
		if branch != "" {
			e["branch"] = branch
		}
		return e
	}
	email := func(id string) map[string]any {
		return node(id, "send_email", map[string]any{"subject": "Hello", "body": "<p>" + id + "</p>"})
	}
	waitFor := "purchased"
	if v1 {
		waitFor = "clicked"
	}
	nodes := []any{
		node("entry", "event_entry", map[string]any{"event_type": "signed_up"}),
		node("split", "condition", map[string]any{"expression": `event.group == "a"`}),
		node("wfe", "wait_for_event", map[string]any{"event_type": waitFor, "timeout": "7d"}),
		email("e1"), email("e2"), email("e3"),
	}
	edges := []any{
		edge("entry", "split", ""), edge("split", "wfe", "false"),
		edge("wfe", "e2", "event_received"), edge("wfe", "e3", "timed_out"),
	}
	if v1 {
		nodes = append(nodes, node("w1", "wait", map[string]any{"duration": "7d"}))
		edges = append(edges, edge("split", "w1", "true"), edge("w1", "e1", ""))
	} else {
		edges = append(edges, edge("split", "e1", "true"))
	}
	return map[string]any{"nodes": nodes, "edges": edges}
}

// migGroupA reports whether customer i of a test is in group "a", bound for w1 in version 1.
func migGroupA(i int) bool { return i%2 == 0 }

// counted is how many instances the migration has counted an outcome for.
func counted(c store.MigrationCounts) int { return c.Migrated + c.Exited + c.Held + c.Failed }

type migVersionCount struct {
	Version  int            `json:"version"`
	Active   int            `json:"active"`
	Total    int            `json:"total"`
	ByStatus map[string]int `json:"by_status"`
}

// poll calls check until it holds, failing with its last word and what more() adds after within.
func poll(t testing.TB, within, every time.Duration, check func() (bool, string), more func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s\n%s", within, state, more())
		}
		time.Sleep(every) // polling a real process that runs on real time
	}
}

// migGet GETs path from s into out, returning an error rather than failing: s may be busy or dying.
func migGet(s *server, key, path string, out any) error {
	code, body, err := tryCall(s, http.MethodGet, path, key, "")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return json.Unmarshal(body, out)
}

func migByVersion(s *server, key, journeyID string) (map[int]migVersionCount, error) {
	var res struct {
		Data []migVersionCount `json:"data"`
	}
	if err := migGet(s, key, "/journeys/"+journeyID+"/instances/by-version", &res); err != nil {
		return nil, err
	}
	out := map[int]migVersionCount{}
	for _, v := range res.Data {
		out[v.Version] = v
	}
	return out, nil
}

// migEnrol gives the customers email addresses (Segment identify calls through /batch) and signs them up
// (/events/batch), in batches of 1,000 (the API's limit), two requests at a time; via picks the process a
// batch goes to. Requests that fail are sent again: the message ids make a repeat change nothing.
func migEnrol(t testing.TB, via func(batch int) *server, key string, ids []string) {
	t.Helper()
	const maxBatch = 1000 // api.maxBatch
	type request struct {
		path string
		body []byte
	}
	var requests []request
	for start := 0; start < len(ids); start += maxBatch {
		var identify []map[string]any
		for _, id := range ids[start:min(start+maxBatch, len(ids))] {
			identify = append(identify, map[string]any{"type": "identify", "userId": id, "messageId": "identify-" + id,
				"traits": map[string]any{"email": id + "@example.com"}})
		}
		body, _ := json.Marshal(map[string]any{"batch": identify})
		requests = append(requests, request{"/batch", body})
	}
	var signUps []request
	for start := 0; start < len(ids); start += maxBatch {
		var events []map[string]any
		for i := start; i < min(start+maxBatch, len(ids)); i++ {
			group := "b"
			if migGroupA(i) {
				group = "a"
			}
			events = append(events, map[string]any{"customer_id": ids[i], "type": "signed_up", "message_id": "signup-" + ids[i],
				"properties": map[string]any{"group": group}})
		}
		body, _ := json.Marshal(map[string]any{"events": events})
		signUps = append(signUps, request{"/events/batch", body})
	}
	send := func(reqs []request) {
		work := make(chan int)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for i := range work {
					deadline := time.Now().Add(time.Minute)
					for {
						s := via(i)
						code, data, err := tryCall(s, http.MethodPost, reqs[i].path, key, string(reqs[i].body))
						if err == nil && code < 300 && !strings.Contains(string(data), `"error"`) && !strings.Contains(string(data), `"rejected"`) {
							break
						}
						if time.Now().After(deadline) {
							t.Errorf("POST %s (batch %d): %d %.500s %v", reqs[i].path, i, code, data, err)
							break
						}
						time.Sleep(100 * time.Millisecond) // back off between retries of a real request
					}
				}
			})
		}
		for i := range reqs {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	send(requests)
	send(signUps)
}

// migWaitEnrolled waits until n instances of the journey wait on version 1.
func migWaitEnrolled(t testing.TB, s func() *server, key, journeyID string, n int, within time.Duration, logs func() string) {
	t.Helper()
	poll(t, within, 250*time.Millisecond, func() (bool, string) {
		counts, err := migByVersion(s(), key, journeyID)
		if err != nil {
			return false, err.Error()
		}
		v1 := counts[1]
		return v1.ByStatus["waiting"] == n && v1.Total == n, fmt.Sprintf("version 1 has %+v, want %d waiting", v1, n)
	}, logs)
}

// migDraftV2 adds version 2 and checks with a dry run that a migrate_all with skip_to_next would move half
// the customers on from the removed w1 and keep the other half waiting at wfe.
func migDraftV2(t testing.TB, s *server, key, journeyID string, n int) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"graph": migGraph(false)})
	var v struct {
		Number int `json:"number"`
	}
	if code := s.call(t, http.MethodPost, "/journeys/"+journeyID+"/versions", key, string(body), &v); code != http.StatusCreated || v.Number != 2 {
		t.Fatalf("draft version 2: %d, number %d", code, v.Number)
	}
	var dry struct {
		DryRun     bool           `json:"dry_run"`
		Valid      bool           `json:"valid"`
		Totals     map[string]int `json:"totals"`
		Placements []struct {
			From      string `json:"from"`
			To        string `json:"to"`
			Action    string `json:"action"`
			Customers int    `json:"customers"`
		} `json:"placements"`
	}
	if code := s.call(t, http.MethodPost, "/journeys/"+journeyID+"/versions/2/publish?dry_run=true", key,
		`{"strategy":"migrate_all","removed_node_policy":"skip_to_next"}`, &dry); code != http.StatusOK {
		t.Fatalf("dry run: %d", code)
	}
	if !dry.DryRun || !dry.Valid || dry.Totals["skip"] != (n+1)/2 || dry.Totals["stay"] != n/2 {
		t.Fatalf("dry run %+v: want %d to skip from w1 and %d to stay at wfe", dry, (n+1)/2, n/2)
	}
}

// migPublish publishes version 2 with migrate_all and skip_to_next; batchSize 0 takes the default.
func migPublish(t testing.TB, s *server, key, journeyID string, batchSize int) store.Migration {
	t.Helper()
	req := map[string]any{"strategy": "migrate_all", "removed_node_policy": "skip_to_next"}
	if batchSize > 0 {
		req["batch_size"] = batchSize
	}
	body, _ := json.Marshal(req)
	var res struct {
		Journey struct {
			ActiveVersion int `json:"active_version"`
		} `json:"journey"`
		Migration store.Migration `json:"migration"`
	}
	if code := s.call(t, http.MethodPost, "/journeys/"+journeyID+"/versions/2/publish", key, string(body), &res); code != http.StatusOK {
		t.Fatalf("publish version 2: %d", code)
	}
	if res.Journey.ActiveVersion != 2 || res.Migration.ID == "" || res.Migration.Strategy != "migrate_all" {
		t.Fatalf("publish answered %+v", res)
	}
	return res.Migration
}

// migWaitCompleted waits until the migration completes; a migration that ends any other way fails at once.
func migWaitCompleted(t testing.TB, s func() *server, key, journeyID, migrationID string, within, every time.Duration, logs func() string) store.Migration {
	t.Helper()
	var m store.Migration
	poll(t, within, every, func() (bool, string) {
		if err := migGet(s(), key, "/journeys/"+journeyID+"/migrations/"+migrationID, &m); err != nil {
			return false, err.Error()
		}
		if m.Status != "running" && m.Status != "completed" {
			t.Fatalf("the migration ended %s: %+v\n%s", m.Status, m, logs())
		}
		return m.Status == "completed", fmt.Sprintf("migration %s with %+v", m.Status, m.Counts)
	}, logs)
	return m
}

// migCheckMoved checks what the migration of n customers left: every customer has one instance, on
// version 2; those of group "a" (by external id in groupA) completed after e1, the others wait at wfe;
// nobody is left on version 1. It returns the instances by their customer's external id.
func migCheckMoved(t testing.TB, s *server, key, journeyID string, n int, external map[string]string, groupA map[string]bool) map[string]map[string]any {
	t.Helper()
	counts, err := migByVersion(s, key, journeyID)
	if err != nil {
		t.Fatal(err)
	}
	if v1 := counts[1]; v1.Active != 0 || v1.Total != 0 {
		t.Errorf("version 1 still has %+v after the migration", v1)
	}
	if v2 := counts[2]; v2.Total != n || v2.ByStatus["completed"] != (n+1)/2 || v2.ByStatus["waiting"] != n/2 {
		t.Errorf("version 2 has %+v, want %d instances: %d completed, %d waiting", v2, n, (n+1)/2, n/2)
	}
	all := listAll(t, s, key, "/journeys/"+journeyID+"/instances")
	if len(all) != n {
		t.Errorf("the journey has %d instances, want %d", len(all), n)
	}
	byCustomer := map[string]map[string]any{}
	for _, in := range all {
		ext, ok := external[in["customer_id"].(string)]
		if !ok {
			t.Errorf("instance %s is of an unknown customer %s", in["id"], in["customer_id"])
			continue
		}
		if byCustomer[ext] != nil {
			t.Errorf("customer %s has two instances: %s and %s", ext, byCustomer[ext]["id"], in["id"])
		}
		byCustomer[ext] = in
		nodes := fmt.Sprint(in["nodes"])
		switch {
		case in["version"] != float64(2):
			t.Errorf("instance %s of %s is on version %v", in["id"], ext, in["version"])
		case groupA[ext] && in["status"] != "completed":
			t.Errorf("instance %s of %s (was at w1) is %v at %s, want completed after e1", in["id"], ext, in["status"], nodes)
		case !groupA[ext] && (in["status"] != "waiting" || nodes != "[wfe]"):
			t.Errorf("instance %s of %s (was at wfe) is %v at %s, want waiting at wfe", in["id"], ext, in["status"], nodes)
		}
	}
	if len(byCustomer) != len(external) {
		t.Errorf("%d of the %d customers have an instance", len(byCustomer), len(external))
	}
	return byCustomer
}

// migCustomers maps the internal ids of the customers to their external ids.
func migCustomers(t testing.TB, s *server, key string, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range listAll(t, s, key, "/customers") {
		out[c["id"].(string)] = c["external_id"].(string)
	}
	if len(out) != n {
		t.Fatalf("%d customers exist, want %d", len(out), n)
	}
	return out
}

// migCheckDeliveries waits for the journey's outbox to empty, then checks that the customers who were at
// w1 each got e1 exactly once (one delivery, sent once) and nobody else got anything. sent are the
// "delivery sent" log lines by delivery id, with the process (or incarnation) that wrote each; a delivery
// the process killed sent but died before recording may be sent once more by another (the log provider
// takes no idempotency key): those are returned.
func migCheckDeliveries(t testing.TB, s *server, key, journeyID string, instances map[string]map[string]any, groupA map[string]bool,
	sent func() map[string][]int, killed int, logs func() string) (resent int) {
	t.Helper()
	began := time.Now()
	poll(t, time.Minute, 250*time.Millisecond, func() (bool, string) {
		pending := len(listAll(t, s, key, "/deliveries?status=pending&journey_id="+journeyID))
		return pending == 0, fmt.Sprintf("%d deliveries still pending", pending)
	}, logs)
	t.Logf("the journey's outbox emptied %s after the migration completed", time.Since(began).Round(time.Millisecond))
	deliveries := listAll(t, s, key, "/deliveries?journey_id="+journeyID)
	perInstance := deliveriesByInstance(t, deliveries)
	for _, d := range deliveries {
		if d["status"] != "sent" {
			t.Errorf("delivery %s (instance %s, node %s) is %v: %v", d["id"], d["instance_id"], d["node_id"], d["status"], d["error"])
		}
	}
	wantTotal := 0
	for ext, in := range instances {
		got := perInstance[in["id"].(string)]
		want := map[string]int{}
		if groupA[ext] {
			want["e1"] = 1
			wantTotal++
		}
		if len(got) != len(want) || got["e1"] != want["e1"] {
			t.Errorf("customer %s (instance %s) got deliveries %v, want %v", ext, in["id"], got, want)
		}
	}
	if len(deliveries) != wantTotal {
		t.Errorf("%d deliveries, want %d", len(deliveries), wantTotal)
	}
	by := sent()
	for _, d := range deliveries {
		who := by[d["id"].(string)]
		switch {
		case len(who) == 0:
			t.Errorf("delivery %s was never sent", d["id"])
		case len(who) > 2 || (len(who) == 2 && !slices.Contains(who, killed)):
			t.Errorf("delivery %s was sent %d times, by %v", d["id"], len(who), who)
		case len(who) == 2:
			resent++
		}
	}
	return resent
}

// migSentLogs counts the "delivery sent" log lines by delivery id in each of logs, naming the index of the
// log of each.
func migSentLogs(logs ...*syncBuffer) map[string][]int {
	out := map[string][]int{}
	for i, buf := range logs {
		addSent(out, i, buf)
	}
	return out
}

// migEventRouted waits until the customer's event with the message id has been routed to its journeys.
func migEventRouted(t testing.TB, s *server, key, customerID, messageID string, logs func() string) {
	t.Helper()
	poll(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		var events struct {
			Data []struct {
				MessageID string     `json:"message_id"`
				RoutedAt  *time.Time `json:"routed_at"`
			} `json:"data"`
		}
		if err := migGet(s, key, "/customers/"+customerID+"/events", &events); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Data {
			if e.MessageID == messageID && e.RoutedAt != nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("event %s of %s not routed", messageID, customerID)
	}, logs)
}

const migCrashCustomers = 3000

// TestMigrationResumesAfterCrash SIGKILLs the process in the middle of a migrate_all of 3,000 customers
// waiting at two nodes, in batches of 25, and restarts it on the same data: the recovery pass at start
// resumes the migration, which completes with every customer counted once, moved once and sent what the
// new version sends them once.
func TestMigrationResumesAfterCrash(t *testing.T) {
	const n = migCrashCustomers
	dir := t.TempDir()
	env := []string{"KALCIFER_RATE_LIMIT=100000", "KALCIFER_RATE_BURST=100000"}
	s := startServer(t, dir, env)
	key := s.key
	var incarnations []*syncBuffer
	incarnations = append(incarnations, s.stderr)
	logs := func() string { return lastLines(s.stderr.String(), 40) }
	graph, _ := json.Marshal(map[string]any{"name": "migrate", "graph": migGraph(true)})
	journeyID := createAndPublish(t, s, key, string(graph))
	var tenant struct {
		ID string `json:"id"`
	}
	if code := s.call(t, http.MethodGet, "/tenant", key, "", &tenant); code != http.StatusOK {
		t.Fatalf("get tenant: %d", code)
	}

	ids := customerIDs("mig", n)
	began := time.Now()
	migEnrol(t, func(int) *server { return s }, key, ids)
	migWaitEnrolled(t, func() *server { return s }, key, journeyID, n, 2*time.Minute, logs)
	t.Logf("%d customers enrolled and waiting in %s", n, time.Since(began).Round(time.Millisecond))
	migDraftV2(t, s, key, journeyID, n)

	published := time.Now()
	m := migPublish(t, s, key, journeyID, 25)
	if m.Counts.Total != n {
		t.Fatalf("the migration counts %d customers in flight, want %d", m.Counts.Total, n)
	}
	// Kill the process once the migration has recorded progress, at least some random number of instances
	// up to a quarter of them, but is still running.
	seed := uint64(time.Now().UnixNano())
	threshold := 1 + rand.New(rand.NewPCG(seed, seed)).IntN(n/4)
	t.Logf("seed %d: kill once %d instances are counted", seed, threshold)
	var atKill store.Migration
	for {
		if err := migGet(s, key, "/journeys/"+journeyID+"/migrations/"+m.ID, &atKill); err != nil {
			t.Fatal(err)
		}
		if atKill.Status != "running" {
			t.Fatalf("the migration was %s before the test could kill the process mid-way (%+v): make it slower", atKill.Status, atKill.Counts)
		}
		if counted(atKill.Counts) >= threshold {
			break
		}
		if time.Since(published) > time.Minute {
			t.Fatalf("the migration recorded no progress in a minute: %+v\n%s", atKill, logs())
		}
		time.Sleep(5 * time.Millisecond) // polling a real process that runs on real time
	}
	s.kill(t)
	t.Logf("killed %s after publishing, with %+v recorded", time.Since(published).Round(time.Millisecond), atKill.Counts)
	migInspectKilled(t, dir, tenant.ID, journeyID, m.ID)

	s = startServer(t, dir, env)
	incarnations = append(incarnations, s.stderr)
	restarted := time.Now()
	done := migWaitCompleted(t, func() *server { return s }, key, journeyID, m.ID, time.Minute, 50*time.Millisecond, logs)
	t.Logf("completed %s after the restart (%s after publishing)", time.Since(restarted).Round(time.Millisecond), time.Since(published).Round(time.Millisecond))
	if want := (store.MigrationCounts{Total: n, Migrated: n}); done.Counts != want || len(done.Failures) != 0 || done.FinishedAt == nil {
		t.Fatalf("the migration completed with %+v (failures %+v), want exactly %+v", done.Counts, done.Failures, want)
	}

	external := migCustomers(t, s, key, n)
	groupA := map[string]bool{}
	for i, id := range ids {
		groupA[id] = migGroupA(i)
	}
	instances := migCheckMoved(t, s, key, journeyID, n, external, groupA)
	resent := migCheckDeliveries(t, s, key, journeyID, instances, groupA,
		func() map[string][]int { return migSentLogs(incarnations...) }, 0, logs)
	if resent > 0 {
		t.Logf("%d deliveries were sent again after the kill cut them between provider and record", resent)
	}

	// wfe now waits for a purchase: a click moves nobody on, a purchase does.
	clicker, buyer := ids[1], ids[3]
	for _, ev := range [][2]string{{clicker, "clicked"}, {buyer, "purchased"}} {
		body := fmt.Sprintf(`{"customer_id":%q,"type":%q,"message_id":"after-%s"}`, ev[0], ev[1], ev[0])
		if code := s.call(t, http.MethodPost, "/events", key, body, nil); code != http.StatusAccepted {
			t.Fatalf("post %s for %s: %d", ev[1], ev[0], code)
		}
	}
	buyerInstance := instances[buyer]["id"].(string)
	poll(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		var in map[string]any
		if err := migGet(s, key, "/instances/"+buyerInstance, &in); err != nil {
			return false, err.Error()
		}
		return in["status"] == "completed", fmt.Sprintf("the buyer's instance is %v at %v after a purchase", in["status"], in["nodes"])
	}, logs)
	migEventRouted(t, s, key, instances[clicker]["customer_id"].(string), "after-"+clicker, logs)
	var in map[string]any
	if err := migGet(s, key, "/instances/"+instances[clicker]["id"].(string), &in); err != nil {
		t.Fatal(err)
	}
	if in["status"] != "waiting" || fmt.Sprint(in["nodes"]) != "[wfe]" {
		t.Errorf("a click moved the clicker's instance on: %v at %v", in["status"], in["nodes"])
	}
	poll(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		ds := listAll(t, s, key, "/deliveries?instance_id="+buyerInstance)
		nodes := []string{}
		for _, d := range ds {
			if d["status"] == "sent" {
				nodes = append(nodes, d["node_id"].(string))
			}
		}
		return len(ds) == 1 && fmt.Sprint(nodes) == "[e2]", fmt.Sprintf("the buyer has deliveries %v sent at %v, want e2 once", len(ds), nodes)
	}, logs)
	if ds := listAll(t, s, key, "/deliveries?instance_id="+instances[clicker]["id"].(string)); len(ds) != 0 {
		t.Errorf("the clicker got %d deliveries", len(ds))
	}
}

// migInspectKilled reads, from the killed process's database, the batch the migration had in flight and
// how much of it had moved, which says where the kill landed.
func migInspectKilled(t testing.TB, dir, tenantID, journeyID, migrationID string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "kalcifer.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := st.Migrations().GetMigration(ctx, tenantID, migrationID)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, k := range m.Batch {
		// An entry ends with the instance's id.
		id := k[strings.LastIndex(k, "/")+1:]
		in, err := st.Instances().GetInstance(ctx, tenantID, id)
		if err != nil {
			t.Fatal(err)
		}
		if in.Version == 2 {
			moved++
		}
	}
	counts, err := st.Instances().CountByVersion(ctx, tenantID, journeyID)
	if err != nil {
		t.Fatal(err)
	}
	onV2 := 0
	for _, c := range counts {
		if c.Version == 2 {
			onV2 += c.Count
		}
	}
	if len(m.Batch) == 0 {
		t.Logf("the kill landed between batches: %+v recorded, %d instances on version 2", m.Counts, onV2)
		return
	}
	t.Logf("the kill landed in a batch of %d, %d of which had moved: %+v recorded, %d instances on version 2", len(m.Batch), moved, m.Counts, onV2)
}

// TestClusterMigration10k moves 10,000 customers, waiting at two nodes of version 1 on the members of a
// three-node cluster, to a version 2 that removes one node and changes the other's wait.
func TestClusterMigration10k(t *testing.T) {
	if testing.Short() {
		t.Skip("enrols and migrates 10,000 customers on a three-node cluster")
	}
	const n = 10000
	c := startCluster(t, 3, clusterProbe)
	logs := c.logs
	first := func() *server { return c.nodes[0].server() }
	graph, _ := json.Marshal(map[string]any{"name": "migrate", "graph": migGraph(true)})
	journeyID := createAndPublish(t, first(), c.key, string(graph))

	ids := customerIDs("mig", n)
	began := time.Now()
	migEnrol(t, func(batch int) *server { return c.nodes[batch%len(c.nodes)].server() }, c.key, ids)
	ingested := time.Since(began)
	migWaitEnrolled(t, first, c.key, journeyID, n, 3*time.Minute, logs)
	t.Logf("%d customers ingested in %s, all waiting after %s", n, ingested.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

	external := migCustomers(t, first(), c.key, n)
	perNode := make([]int, len(c.nodes))
	for _, in := range listAll(t, first(), c.key, "/journeys/"+journeyID+"/instances") {
		perNode[c.instanceOwner(in)]++
	}
	for i, k := range perNode {
		if k == 0 {
			t.Fatalf("no instance lives on node %d: %v", i, perNode)
		}
	}
	t.Logf("instances per member: %v", perNode)
	migDraftV2(t, c.nodes[1].server(), c.key, journeyID, n)

	published := time.Now()
	m := migPublish(t, c.nodes[1].server(), c.key, journeyID, 0)
	done := migWaitCompleted(t, func() *server { return c.nodes[2].server() }, c.key, journeyID, m.ID, 2*time.Minute, 100*time.Millisecond, logs)
	observed := time.Since(published)
	if done.FinishedAt == nil {
		t.Fatalf("the completed migration has no finished_at: %+v", done)
	}
	recorded := done.FinishedAt.Sub(done.CreatedAt)
	t.Logf("migrated %d instances (batch size %d) in %s from publish to completed as polled (%.0f instances/s); %s by the record's created_at..finished_at (%.0f instances/s)",
		n, done.BatchSize, observed.Round(time.Millisecond), float64(n)/observed.Seconds(), recorded.Round(time.Millisecond), float64(n)/recorded.Seconds())
	if done.Counts.Total != n || done.Counts.Migrated+done.Counts.Exited+done.Counts.Held != n || done.Counts.Failed != 0 || done.Counts.Skipped != 0 {
		t.Fatalf("the migration completed with %+v (failures %+v), want %d accounted for and none failed", done.Counts, done.Failures, n)
	}
	if done.Counts.Migrated != n {
		t.Errorf("migrated %d of %d: %+v", done.Counts.Migrated, n, done.Counts)
	}

	groupA := map[string]bool{}
	for i, id := range ids {
		groupA[id] = migGroupA(i)
	}
	instances := migCheckMoved(t, first(), c.key, journeyID, n, external, groupA)
	migCheckDeliveries(t, first(), c.key, journeyID, instances, groupA, c.sentLogs, -1, logs)
}
