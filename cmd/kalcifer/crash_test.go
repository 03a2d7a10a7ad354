package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashJourney sends three messages around two short waits, so that a kill
// lands before, between and after commits, timers and sends.
const crashJourney = `{"name":"crash","graph":{
 "nodes":[{"id":"in","type":"webhook_entry"},
  {"id":"email","type":"send_email","config":{"subject":"hi","body":"hello"}},
  {"id":"w1","type":"wait","config":{"duration":"2s"}},
  {"id":"sms","type":"send_sms","config":{"body":"still there?"}},
  {"id":"w2","type":"wait","config":{"duration":"1s"}},
  {"id":"push","type":"send_push","config":{"title":"bye","body":"bye"}},
  {"id":"out","type":"journey_exit"}],
 "edges":[{"id":"e1","source":"in","target":"email"},{"id":"e2","source":"email","target":"w1"},
  {"id":"e3","source":"w1","target":"sms"},{"id":"e4","source":"sms","target":"w2"},
  {"id":"e5","source":"w2","target":"push"},{"id":"e6","source":"push","target":"out"}]}}`

const crashCustomers = 200

// TestCrashRecovery SIGKILLs the real binary 20 times at random moments while
// 200 customers run a journey with waits and sends. After every restart the
// enrolment is sent again (same Idempotency-Key: it must not enrol twice);
// at the end every customer has finished and every delivery exists once.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the binary 20 times")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := t.TempDir()

	s := startServer(t, dir, nil)
	key := s.key
	journeyID := createAndPublish(t, s, key, crashJourney)
	customers := customerIDs("crash", crashCustomers)
	var targets []map[string]any
	for _, id := range customers {
		targets = append(targets, map[string]any{"customer_id": id})
	}
	enrol, _ := json.Marshal(map[string]any{"customers": targets})
	reach(t, customers, func(path, body string) (int, []byte, error) {
		return tryCall(s, http.MethodPut, path, key, body)
	})
	trigger := func(s *server) {
		// The request may meet a server that is about to be killed; the
		// next restart sends it again.
		req, _ := http.NewRequest(http.MethodPost, s.base+"/api/v1/journeys/"+journeyID+"/trigger", bytes.NewReader(enrol))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "crash-test")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	go trigger(s)
	for kill := range 20 {
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond) // a random moment, not a wait for a condition
		s.kill(t)
		s = startServer(t, dir, nil)
		t.Logf("kill %d: restarted", kill+1)
		go trigger(s)
	}
	trigger(s)

	deadline := time.Now().Add(90 * time.Second)
	for {
		done := len(listAll(t, s, key, "/instances?status=completed"))
		if done == crashCustomers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d customers finished; stderr:\n%s", done, crashCustomers, s.stderr)
		}
		time.Sleep(200 * time.Millisecond) // polling a real process that runs on real time
	}
	all := listAll(t, s, key, "/instances")
	if len(all) != crashCustomers {
		t.Fatalf("want exactly %d instances (one per customer), got %d", crashCustomers, len(all))
	}
	deliveries := listAll(t, s, key, "/deliveries")
	perInstance := deliveriesByInstance(t, deliveries)
	if len(deliveries) != 3*crashCustomers {
		t.Errorf("want %d deliveries, got %d", 3*crashCustomers, len(deliveries))
	}
	for in, nodes := range perInstance {
		if nodes["email"] != 1 || nodes["sms"] != 1 || nodes["push"] != 1 {
			t.Errorf("instance %s deliveries %v, want one per channel node", in, nodes)
		}
	}
}

func (s *server) kill(t testing.TB) {
	t.Helper()
	s.stopped.Store(true)
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// deliveriesByInstance counts deliveries by instance and node, and fails
// the test if two share a key.
func deliveriesByInstance(t testing.TB, deliveries []map[string]any) map[string]map[string]int {
	t.Helper()
	perInstance := map[string]map[string]int{}
	keys := map[string]bool{}
	for _, d := range deliveries {
		in, node, k := d["instance_id"].(string), d["node_id"].(string), d["key"].(string)
		if keys[k] {
			t.Errorf("delivery key %s appears twice", k)
		}
		keys[k] = true
		if perInstance[in] == nil {
			perInstance[in] = map[string]int{}
		}
		perInstance[in][node]++
	}
	return perInstance
}

func createAndPublish(t testing.TB, s *server, key, body string) string {
	t.Helper()
	var j struct {
		ID string `json:"id"`
	}
	if code := s.call(t, http.MethodPost, "/journeys", key, body, &j); code != http.StatusCreated {
		t.Fatalf("create journey: %d", code)
	}
	if code := s.call(t, http.MethodPost, "/journeys/"+j.ID+"/versions/1/publish", key, "", nil); code != http.StatusOK {
		t.Fatalf("publish: %d", code)
	}
	return j.ID
}

func (s *server) call(t testing.TB, method, path, key, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+"/api/v1"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, data)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// listAll follows a list's pages.
func listAll(t testing.TB, s *server, key, path string) []map[string]any {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var all []map[string]any
	after := ""
	for {
		var page struct {
			Data      []map[string]any `json:"data"`
			NextAfter string           `json:"next_after"`
		}
		if code := s.call(t, http.MethodGet, path+sep+"limit=200&after="+after, key, "", &page); code != http.StatusOK {
			t.Fatalf("list %s: %d", path, code)
		}
		all = append(all, page.Data...)
		if page.NextAfter == "" {
			return all
		}
		after = page.NextAfter
	}
}
