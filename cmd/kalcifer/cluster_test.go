package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/kalcifer/kalcifer/store/postgres/pgtest"
)

// The cluster tests run three real kalcifer processes on loopback over one PostgreSQL database, with
// gossip encryption and mutual TLS between the nodes, as a production cluster would run.

// testCluster is a set of kalcifer processes sharing a database.
type testCluster struct {
	t     testing.TB
	env   []string
	nodes []*clusterNode
	key   string
	// tenantID names grains: a grain's identity is tenant/id.
	tenantID string
}

// clusterNode is one member: fixed ports, so a restart comes back at the same addresses, and the logs
// of every incarnation.
type clusterNode struct {
	gossip   string
	grpcPort int
	s        *server
	mu       sync.Mutex
	logs     []*syncBuffer
}

// clusterProbe is the gossip probe interval of the test clusters; the watchdog limit is probe × 4.
const clusterProbe = 200 * time.Millisecond

func startCluster(t testing.TB, n int, probe time.Duration) *testCluster {
	t.Helper()
	dir := t.TempDir()
	cert, key, ca := writeClusterPKI(t, dir)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	c := &testCluster{t: t, env: []string{
		"KALCIFER_DATABASE_URL=" + pgtest.NewDatabase(t),
		"KALCIFER_CLUSTER_PROBE_INTERVAL=" + probe.String(),
		"KALCIFER_CLUSTER_SUSPICION_MULT=4",
		"KALCIFER_CLUSTER_SECRET_KEY=" + base64.StdEncoding.EncodeToString(secret),
		"KALCIFER_CLUSTER_TLS_CERT=" + cert, "KALCIFER_CLUSTER_TLS_KEY=" + key, "KALCIFER_CLUSTER_TLS_CA=" + ca,
		"KALCIFER_SHUTDOWN_TIMEOUT=10s",
		"KALCIFER_RATE_LIMIT=100000", "KALCIFER_RATE_BURST=100000",
	}}
	var seeds []string
	for range n {
		node := &clusterNode{gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t))), grpcPort: freeTCPPort(t)}
		c.nodes = append(c.nodes, node)
		seeds = append(seeds, node.gossip)
	}
	c.env = append(c.env, "KALCIFER_CLUSTER_SEEDS="+strings.Join(seeds, ","))
	for i := range c.nodes {
		c.start(i)
		if i == 0 {
			c.key = c.nodes[0].s.key
			if c.key == "" {
				t.Fatal("the first node printed no API key")
			}
		}
	}
	var tenant struct {
		ID string `json:"id"`
	}
	if code := c.nodes[0].s.call(t, http.MethodGet, "/tenant", c.key, "", &tenant); code != http.StatusOK {
		t.Fatalf("get tenant: %d", code)
	}
	c.tenantID = tenant.ID
	c.waitMembers(n, 30*time.Second)
	return c
}

// start starts (or restarts) node i; only the very first node of a fresh database bootstraps a tenant.
func (c *testCluster) start(i int) {
	node := c.nodes[i]
	env := append(slices.Clone(c.env), "KALCIFER_CLUSTER_BIND="+node.gossip, "KALCIFER_CLUSTER_GRPC_PORT="+strconv.Itoa(node.grpcPort))
	args := []string{}
	if i > 0 || c.key != "" {
		args = append(args, "--bootstrap-tenant=")
	}
	s := startServer(c.t, c.t.TempDir(), env, args...)
	node.mu.Lock()
	node.s = s
	node.logs = append(node.logs, s.stderr)
	node.mu.Unlock()
}

func (n *clusterNode) server() *server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.s
}

// grpcAddress is the member address Proto.Actor places grains by.
func (n *clusterNode) grpcAddress() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.grpcPort))
}

// live are the nodes whose current process runs.
func (c *testCluster) live() []*clusterNode {
	var out []*clusterNode
	for _, n := range c.nodes {
		if !n.server().stopped.Load() {
			out = append(out, n)
		}
	}
	return out
}

type clusterView struct {
	Self    string `json:"self"`
	Members []struct {
		ID          string           `json:"id"`
		Address     string           `json:"address"`
		State       string           `json:"state"`
		Activations map[string]int64 `json:"activations"`
		Error       string           `json:"error"`
	} `json:"members"`
}

func (c *testCluster) view(n *clusterNode) (clusterView, error) {
	var v clusterView
	code, body, err := tryCall(n.server(), http.MethodGet, "/cluster", c.key, "")
	if err != nil {
		return v, err
	}
	if code != http.StatusOK {
		return v, fmt.Errorf("GET /cluster: %d %s", code, body)
	}
	return v, json.Unmarshal(body, &v)
}

// waitMembers waits until every live node sees exactly want alive members, each answering for itself.
func (c *testCluster) waitMembers(want int, within time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		converged := true
		var last string
		for _, n := range c.live() {
			v, err := c.view(n)
			alive := 0
			for _, m := range v.Members {
				if m.State == "alive" && m.Error == "" {
					alive++
				}
			}
			if err != nil || alive != want || len(v.Members) != want {
				converged = false
				last = fmt.Sprintf("%s sees %+v (err %v)", n.gossip, v.Members, err)
			}
		}
		if converged {
			return time.Since(start)
		}
		if time.Since(start) > within {
			c.t.Fatalf("cluster did not converge to %d members in %s: %s", want, within, last)
		}
		time.Sleep(100 * time.Millisecond) // polling real processes that gossip on real time
	}
}

// instanceOwner is the node an instance's grain lives on: its customer's.
func (c *testCluster) instanceOwner(instance map[string]any) int {
	return c.owner("customer", instance["customer_id"].(string))
}

// owner is the node Proto.Actor places a grain on while every node is a member: the same rendezvous hash
// over the members' gRPC addresses.
func (c *testCluster) owner(kind, id string) int {
	var members []*pcluster.Member
	for _, n := range c.nodes {
		host, port, _ := net.SplitHostPort(n.grpcAddress())
		p, _ := strconv.Atoi(port)
		members = append(members, &pcluster.Member{Id: n.gossip, Host: host, Port: int32(p), Kinds: []string{kind}})
	}
	r := pcluster.NewRendezvous()
	r.UpdateMembers(members)
	addr := r.GetByClusterIdentity(pcluster.NewClusterIdentity(c.tenantID+"/"+id, kind))
	return slices.IndexFunc(c.nodes, func(n *clusterNode) bool { return n.grpcAddress() == addr })
}

// sentLogs counts "delivery sent" log lines per delivery id over every incarnation of every node, and
// which node logged each.
func (c *testCluster) sentLogs() map[string][]int {
	out := map[string][]int{}
	for i, n := range c.nodes {
		n.mu.Lock()
		logs := slices.Clone(n.logs)
		n.mu.Unlock()
		for _, buf := range logs {
			addSent(out, i, buf)
		}
	}
	return out
}

// addSent adds the deliveries buf logs as sent to out, as sent by who.
func addSent(out map[string][]int, who int, buf *syncBuffer) {
	for line := range strings.SplitSeq(buf.String(), "\n") {
		var rec struct {
			Msg        string `json:"msg"`
			DeliveryID string `json:"delivery_id"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "delivery sent" {
			out[rec.DeliveryID] = append(out[rec.DeliveryID], who)
		}
	}
}

// tryCall is server.call for a node that may be down: transport errors are returned, not fatal.
func tryCall(s *server, method, path, key, body string, header ...string) (int, []byte, error) {
	req, err := http.NewRequest(method, s.base+"/api/v1"+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// enrol triggers the journey for customers through any live node, moving to another node while one
// fails; the Idempotency-Key makes a retry that reaches a second node enrol nobody twice. It returns how
// many attempts failed.
func (c *testCluster) enrol(journeyID, idemKey string, customers []string, start int) int {
	c.t.Helper()
	reach(c.t, customers, func(path, body string) (int, []byte, error) {
		live := c.live()
		return tryCall(live[mrand.IntN(len(live))].server(), http.MethodPut, path, c.key, body)
	})
	var targets []map[string]any
	for _, id := range customers {
		targets = append(targets, map[string]any{"customer_id": id})
	}
	body, _ := json.Marshal(map[string]any{"customers": targets})
	failed := 0
	deadline := time.Now().Add(60 * time.Second)
	for attempt := start; ; attempt++ {
		live := c.live()
		n := live[attempt%len(live)]
		code, data, err := tryCall(n.server(), http.MethodPost, "/journeys/"+journeyID+"/trigger", c.key, string(body), "Idempotency-Key", idemKey)
		if err == nil && code == http.StatusOK {
			return failed
		}
		failed++
		c.t.Logf("trigger %s through %s: %d %s %v", idemKey, n.gossip, code, data, err)
		if time.Now().After(deadline) {
			c.t.Fatalf("trigger %s: still failing after a minute: %d %s %v", idemKey, code, data, err)
		}
		time.Sleep(50 * time.Millisecond) // back off between retries of a real request
	}
}

// waitCompleted waits until want instances completed and the outbox of the journey is empty, reading
// through any live node.
func (c *testCluster) waitCompleted(journeyID string, want int, within time.Duration) {
	c.t.Helper()
	c.waitStatus(journeyID, "completed", want, within)
	c.waitFor(within, func(s *server) (bool, string) {
		pending := len(listAll(c.t, s, c.key, "/deliveries?status=pending&journey_id="+journeyID))
		return pending == 0, fmt.Sprintf("%d deliveries still pending", pending)
	})
}

// waitStatus waits until want instances of the journey have the status.
func (c *testCluster) waitStatus(journeyID, status string, want int, within time.Duration) {
	c.t.Helper()
	c.waitFor(within, func(s *server) (bool, string) {
		n := len(listAll(c.t, s, c.key, "/journeys/"+journeyID+"/instances?status="+status))
		return n == want, fmt.Sprintf("%d of %d instances %s", n, want, status)
	})
}

// waitFor polls done through a live node until it holds, failing with its last word and the nodes'
// latest logs after within.
func (c *testCluster) waitFor(within time.Duration, done func(*server) (bool, string)) {
	c.t.Helper()
	poll(c.t, within, 250*time.Millisecond, func() (bool, string) { return done(c.live()[0].server()) }, c.logs)
}

// logs are the latest lines each node logged.
func (c *testCluster) logs() string {
	var logs strings.Builder
	for i, n := range c.nodes {
		fmt.Fprintf(&logs, "--- node %d ---\n%s\n", i, lastLines(n.server().stderr.String(), 30))
	}
	return logs.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// checkJourneyRan asserts what a journey of three sends must leave: every instance completed once per
// customer, one delivery per send node (each key once), one node execution per node of the path, and
// each delivery sent once, except that one the killed node sent but died before recording is sent once
// more by a survivor (the outbox resends an interrupted attempt under the same idempotency key, which
// the log provider takes but cannot deduplicate); those are counted and returned.
func (c *testCluster) checkJourneyRan(journeyID string, customers int, killed int) (resent int) {
	c.t.Helper()
	s := c.live()[0].server()
	t := c.t
	all := listAll(t, s, c.key, "/journeys/"+journeyID+"/instances")
	if len(all) != customers {
		c.t.Fatalf("want %d instances (one per customer), got %d", customers, len(all))
	}
	perCustomer := map[string]int{}
	for _, in := range all {
		perCustomer[in["customer_id"].(string)]++
		if in["status"] != "completed" {
			c.t.Errorf("instance %s is %v", in["id"], in["status"])
		}
	}
	if len(perCustomer) != customers {
		c.t.Errorf("%d customers have instances, want %d", len(perCustomer), customers)
	}
	deliveries := listAll(t, s, c.key, "/deliveries?journey_id="+journeyID)
	if len(deliveries) != 3*customers {
		c.t.Errorf("want %d deliveries, got %d", 3*customers, len(deliveries))
	}
	keys := map[string]bool{}
	for _, d := range deliveries {
		if keys[d["key"].(string)] {
			c.t.Errorf("delivery key %s twice", d["key"])
		}
		keys[d["key"].(string)] = true
		if d["status"] != "sent" {
			c.t.Errorf("delivery %s is %v", d["id"], d["status"])
		}
	}
	sent := c.sentLogs()
	for _, d := range deliveries {
		by := sent[d["id"].(string)]
		switch {
		case len(by) == 0:
			c.t.Errorf("delivery %s was never sent", d["id"])
		case len(by) > 2 || (len(by) == 2 && !slices.Contains(by, killed)):
			c.t.Errorf("delivery %s sent %d times, by nodes %v", d["id"], len(by), by)
		case len(by) > 1:
			resent++
		}
	}
	// A sample of timelines: a stale activation that wrote would leave a node executed twice.
	for _, in := range all[:min(len(all), 100)] {
		var detail struct {
			Timeline []struct {
				NodeID  string `json:"node_id"`
				Outcome string `json:"outcome"`
			} `json:"timeline"`
		}
		if code := s.call(t, http.MethodGet, "/instances/"+in["id"].(string), c.key, "", &detail); code != http.StatusOK {
			c.t.Fatalf("get instance: %d", code)
		}
		seen := map[string]bool{}
		for _, st := range detail.Timeline {
			k := st.NodeID + "/" + st.Outcome
			if seen[k] {
				c.t.Errorf("instance %s: node %s recorded %s twice: %+v", in["id"], st.NodeID, st.Outcome, detail.Timeline)
			}
			seen[k] = true
		}
	}
	return resent
}

func customerIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// enrolAll enrols customers in batches of 200, spread over the nodes.
func (c *testCluster) enrolAll(journeyID string, customers []string) int {
	failed := 0
	for i := 0; i < len(customers); i += 200 {
		failed += c.enrol(journeyID, fmt.Sprintf("batch-%s", customers[i]), customers[i:min(i+200, len(customers))], i/200)
	}
	return failed
}

// TestClusterSpreadsGrains: three nodes start and find each other; grains spread over all three; the API
// of any node reaches a grain on any node.
func TestClusterSpreadsGrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := startCluster(t, 3, clusterProbe)
	journeyID := createAndPublish(t, c.nodes[0].server(), c.key, crashJourney)
	customers := customerIDs("spread", 300)
	c.enrolAll(journeyID, customers)

	v, err := c.view(c.nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range v.Members {
		if m.Activations["customer"] == 0 || m.Activations["instance"] == 0 {
			t.Errorf("member %s hosts %v: want customer and instance grains on every member", m.Address, m.Activations)
		}
	}

	// An instance action is answered by the instance's grain; ask each node about instances owned by each
	// node. A completed instance answers 409 (no change): reaching it is what counts.
	instances := listAll(t, c.nodes[0].server(), c.key, "/instances")
	reached := map[[2]int]bool{}
	for _, in := range instances {
		owner := c.instanceOwner(in)
		for via := range c.nodes {
			if reached[[2]int{via, owner}] {
				continue
			}
			code, body, err := tryCall(c.nodes[via].server(), http.MethodPost, "/instances/"+in["id"].(string)+"/resume", c.key, "")
			if err != nil || (code != http.StatusOK && code != http.StatusConflict) {
				t.Fatalf("resume through node %d of an instance on node %d: %d %s %v", via, owner, code, body, err)
			}
			reached[[2]int{via, owner}] = true
		}
	}
	if len(reached) != 9 {
		t.Fatalf("reached %d of the 9 (via, owner) pairs", len(reached))
	}
	c.waitCompleted(journeyID, len(customers), 60*time.Second)
	c.checkJourneyRan(journeyID, len(customers), -1)

	c.checkPublishReachesEveryMember(t)
	c.checkFrequencyCapAcrossNodes(t)

	code, metrics, err := tryCall(c.nodes[2].server(), http.MethodGet, "/metrics", "", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics: %d %v", code, err)
	}
	for _, want := range []string{"kalcifer_cluster_members 3", `kalcifer_cluster_activations{kind="instance"}`, "kalcifer_cluster_rebalances_total"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// checkPublishReachesEveryMember: a journey published through one node enrols, at the next event, a
// customer whose grain lives on another node that had just cached the tenant's entry points.
func (c *testCluster) checkPublishReachesEveryMember(t *testing.T) {
	s0, s1 := c.nodes[0].server(), c.nodes[1].server()
	// Events name customers by their external id; the API paths and grains by the internal one.
	var customer struct {
		ID string `json:"id"`
	}
	external := ""
	for i := 0; customer.ID == "" || c.owner("customer", customer.ID) != 2; i++ {
		external = fmt.Sprintf("pub-%d", i)
		if code := s1.call(t, http.MethodPut, "/customers/"+external, c.key, `{}`, &customer); code >= 300 {
			t.Fatalf("upsert customer: %d", code)
		}
	}
	ping := func(n int) {
		body := fmt.Sprintf(`{"customer_id":%q,"type":"pinged","message_id":"ping-%d"}`, external, n)
		if code := s1.call(t, http.MethodPost, "/events", c.key, body, nil); code != http.StatusAccepted {
			t.Fatalf("post event: %d", code)
		}
		c.waitFor(30*time.Second, func(s *server) (bool, string) {
			var events struct {
				Data []struct {
					MessageID string     `json:"message_id"`
					RoutedAt  *time.Time `json:"routed_at"`
				} `json:"data"`
			}
			s.call(t, http.MethodGet, "/customers/"+customer.ID+"/events", c.key, "", &events)
			for _, e := range events.Data {
				if e.MessageID == fmt.Sprintf("ping-%d", n) && e.RoutedAt != nil {
					return true, ""
				}
			}
			return false, fmt.Sprintf("event ping-%d not routed", n)
		})
	}
	ping(1) // node 2 now caches the tenant's entry points, which have no "pinged" entry yet
	journeyID := createAndPublish(t, s0, c.key, `{"name":"ping","graph":{
	 "nodes":[{"id":"in","type":"event_entry","config":{"event_type":"pinged"}},{"id":"out","type":"journey_exit"}],
	 "edges":[{"id":"e1","source":"in","target":"out"}]}}`)
	ping(2)
	if got := listAll(t, s0, c.key, "/journeys/"+journeyID+"/instances"); len(got) != 1 {
		t.Fatalf("the event after the publish enrolled %d instances, want 1", len(got))
	}
}

// cappedJourney waits, then emails under a cap of one email a day, which counts the customer's emails of
// every journey.
const cappedJourney = `{"name":"capped","graph":{"frequency_cap":{"email":{"max":1,"window":"1d"}},
 "nodes":[{"id":"in","type":"webhook_entry"},{"id":"w","type":"wait","config":{"duration":"2s"}},
  {"id":"mail","type":"send_email","config":{"subject":"hi","body":"hello"}},{"id":"out","type":"journey_exit"}],
 "edges":[{"id":"e1","source":"in","target":"w"},{"id":"e2","source":"w","target":"mail"},{"id":"e3","source":"mail","target":"out"}]}}`

// checkFrequencyCapAcrossNodes enrols each customer in two capped journeys whose timers come due
// together: the two instances of a customer live on the customer's node, whose customer lock serialises
// their steps, so each customer gets exactly one email wherever the timers fire.
func (c *testCluster) checkFrequencyCapAcrossNodes(t *testing.T) {
	journeys := []string{createAndPublish(t, c.nodes[0].server(), c.key, cappedJourney), createAndPublish(t, c.nodes[1].server(), c.key, cappedJourney)}
	ids := customerIDs("cap", 200)
	var wg sync.WaitGroup
	for i, j := range journeys {
		wg.Go(func() { c.enrol(j, "cap-"+j, ids, i) })
	}
	wg.Wait()
	perCustomer := map[string]int{}
	for _, j := range journeys {
		c.waitCompleted(j, len(ids), 60*time.Second)
		for _, d := range listAll(t, c.nodes[2].server(), c.key, "/deliveries?status=sent&journey_id="+j) {
			perCustomer[d["customer_id"].(string)]++
		}
	}
	if len(perCustomer) != len(ids) {
		t.Errorf("%d customers got an email, want %d", len(perCustomer), len(ids))
	}
	for customer, n := range perCustomer {
		if n != 1 {
			t.Errorf("customer %s got %d emails under a cap of one a day", customer, n)
		}
	}
}

// TestClusterNodeKilled: SIGKILL one node while 1,000 customers are mid-journey (waits and sends): every
// customer finishes on the survivors, nothing is lost or sent twice, and the node rejoins on restart.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a node of a three-node cluster")
	}
	failover, failed := runNodeKill(t, clusterProbe, 1000)
	t.Logf("probe %s: first grain request served %s after SIGKILL; %d requests failed meanwhile", clusterProbe, failover, failed)
}

// runNodeKill runs the kill scenario and returns the time from SIGKILL to the first successful request
// to a grain the dead node owned, and how many such requests failed before.
func runNodeKill(t testing.TB, probe time.Duration, customers int) (time.Duration, int) {
	c := startCluster(t, 3, probe)
	journeyID := createAndPublish(t, c.nodes[0].server(), c.key, crashJourney)
	probeJourney := createAndPublish(t, c.nodes[0].server(), c.key, waitingJourney)
	ids := customerIDs("kill", customers)
	const victim = 2

	// A customer whose probe instance's grain lives on the victim: requests to it measure fail-over.
	var probeInstance string
	for i := 0; probeInstance == ""; i++ {
		var res struct {
			Results []struct {
				InstanceID string `json:"instance_id"`
			} `json:"results"`
		}
		body := fmt.Sprintf(`{"customers":[{"customer_id":"probe-%d"}]}`, i)
		if code := c.nodes[0].server().call(t, http.MethodPost, "/journeys/"+probeJourney+"/trigger", c.key, body, &res); code != http.StatusOK {
			t.Fatalf("trigger probe: %d", code)
		}
		var in map[string]any
		if code := c.nodes[0].server().call(t, http.MethodGet, "/instances/"+res.Results[0].InstanceID, c.key, "", &in); code != http.StatusOK {
			t.Fatalf("get probe instance: %d", code)
		}
		if c.instanceOwner(in) == victim {
			probeInstance = res.Results[0].InstanceID
		}
	}

	c.enrolAll(journeyID, ids)
	time.Sleep(time.Duration(500+mrand.IntN(1500)) * time.Millisecond) // a random moment mid-journey, not a wait for a condition
	c.nodes[victim].server().kill(t)
	killed := time.Now()

	failed := 0
	var failover time.Duration
	for {
		code, _, err := tryCall(c.nodes[0].server(), http.MethodPost, "/instances/"+probeInstance+"/resume", c.key, "")
		if err == nil && code == http.StatusConflict {
			failover = time.Since(killed)
			break
		}
		failed++
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("the dead node's grain unreachable 30s after the kill: %d %v", code, err)
		}
		time.Sleep(10 * time.Millisecond) // a client retrying, as a real one would
	}
	c.waitCompleted(journeyID, customers, 90*time.Second)
	if resent := c.checkJourneyRan(journeyID, customers, victim); resent > 0 {
		t.Logf("%d deliveries were sent again after the kill cut them between provider and record", resent)
	}

	c.start(victim)
	c.waitMembers(3, 30*time.Second)
	return failover, failed
}

// waitingJourney parks its customers in a long wait: their instances stay reachable.
const waitingJourney = `{"name":"park","graph":{
 "nodes":[{"id":"in","type":"webhook_entry"},{"id":"w","type":"wait","config":{"duration":"1h"}},{"id":"out","type":"journey_exit"}],
 "edges":[{"id":"e1","source":"in","target":"w"},{"id":"e2","source":"w","target":"out"}]}}`

// TestClusterStalledNodeIsFenced: SIGSTOP a node past the suspicion timeout, then SIGCONT it. The others
// take its grains over; on waking its watchdog ends it (status 75) before it acts on stale state, and
// whatever it still tried to write was refused by the epoch fence: every customer finishes exactly once.
// Restarted, it rejoins and the cluster converges.
func TestClusterStalledNodeIsFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("stops a node of a three-node cluster")
	}
	c := startCluster(t, 3, clusterProbe)
	journeyID := createAndPublish(t, c.nodes[0].server(), c.key, crashJourney)
	const customers = 600
	c.enrolAll(journeyID, customerIDs("stall", customers))
	const victim = 1
	s := c.nodes[victim].server()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	s.stopped.Store(true) // out of the live set: requests go to the others
	c.waitMembers(2, 30*time.Second)
	time.Sleep(2 * time.Second) // stay frozen well past the suspicion timeout, as a stalled VM would
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 75 {
			t.Fatalf("the stalled node exited with %v, want status 75", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the stalled node did not exit after SIGCONT:\n%s", lastLines(s.stderr.String(), 20))
	}
	c.waitCompleted(journeyID, customers, 90*time.Second)
	c.checkJourneyRan(journeyID, customers, -1)
	c.start(victim)
	c.waitMembers(3, 30*time.Second)
}

// TestClusterRollingRestart restarts the three nodes one after the other with SIGTERM while customers
// keep arriving: each drains within its timeout and exits cleanly, and nothing is lost or sent twice.
func TestClusterRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts every node of a three-node cluster")
	}
	c := startCluster(t, 3, clusterProbe)
	journeyID := createAndPublish(t, c.nodes[0].server(), c.key, crashJourney)

	var enrolled atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for batch := 0; ; batch++ {
			select {
			case <-stop:
				return
			default:
			}
			ids := customerIDs(fmt.Sprintf("roll%03d", batch), 50)
			began := time.Now()
			n := c.enrol(journeyID, fmt.Sprintf("roll-%d", batch), ids, batch)
			t.Logf("batch %d: %d failed attempts, %s", batch, n, time.Since(began))
			enrolled.Add(50)
			time.Sleep(100 * time.Millisecond) // a steady trickle of arrivals, not a wait for a condition
		}
	}()
	for i := range c.nodes {
		s := c.nodes[i].server()
		began := time.Now()
		s.stop(t)
		if d := time.Since(began); d > 12*time.Second {
			t.Errorf("node %d drained in %s, beyond its 10s shutdown timeout", i, d)
		}
		c.waitMembers(2, 30*time.Second)
		c.start(i)
		c.waitMembers(3, 30*time.Second)
	}
	close(stop)
	<-loadDone
	total := int(enrolled.Load())
	t.Logf("%d customers enrolled during the rolling restart", total)
	c.waitCompleted(journeyID, total, 90*time.Second)
	c.checkJourneyRan(journeyID, total, -1)
}

// freeTCPPort returns a loopback port free for TCP and UDP at the time of asking. It is taken below
// Linux's ephemeral range (32768 and up), so that a restarted node finds its port still free: outgoing
// connections (to PostgreSQL, between the nodes) take their local ports from that range.
func freeTCPPort(t testing.TB) int {
	for range 100 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return 0
}

// writeClusterPKI writes a CA and one node certificate for 127.0.0.1 signed by it.
func writeClusterPKI(t testing.TB, dir string) (cert, key, ca string) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kalcifer test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nodeTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kalcifer node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caTmpl, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(nodeKey)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("node.pem", "CERTIFICATE", nodeDER), write("node-key.pem", "EC PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}
