package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store/postgres/pgtest"
)

// binary is the kalcifer executable under test, built once by TestMain: these
// tests run the real process, as a user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kalcifer-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kalcifer")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build kalcifer: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

type server struct {
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:port
	key     string // the bootstrap key, if one was printed
	stderr  *syncBuffer
	exited  chan error
	stopped atomic.Bool
}

var (
	apiLine = regexp.MustCompile(`API: (http://\S+)/api/v1`)
	keyLine = regexp.MustCompile(`^\s+(kal_[0-9a-f]{64})$`)
)

// startServer runs `kalcifer serve` and waits for its banner.
func startServer(t testing.TB, dataDir string, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	// ready is closed once the banner is read, or when stdout ends early;
	// the banner fields are written before it closes and never after.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := keyLine.FindStringSubmatch(sc.Text()); m != nil {
				s.key = m[1]
			}
			if m := apiLine.FindStringSubmatch(sc.Text()); m != nil {
				s.base = m[1]
			}
			if strings.HasPrefix(strings.TrimSpace(sc.Text()), "OpenAPI:") {
				break
			}
		}
		close(ready)
		_, _ = io.Copy(io.Discard, stdout)
		s.exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("kalcifer serve printed no banner in 30s; stderr:\n%s", s.stderr)
	}
	if s.base == "" {
		t.Fatalf("kalcifer serve exited before its banner; stderr:\n%s", s.stderr)
	}
	return s
}

// syncBuffer collects the server's stderr, which exec writes from its own
// goroutine while a test may print it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *server) stop(t testing.TB) {
	t.Helper()
	if s.stopped.Load() {
		return
	}
	s.stopped.Store(true)
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			t.Errorf("kalcifer serve did not exit cleanly on SIGTERM: %v\n%s", err, s.stderr)
		}
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Errorf("kalcifer serve ignored SIGTERM for 20s")
	}
}

func (s *server) get(t *testing.T, path, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/api/v1"+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// walkthrough returns the README's curl walk-through, pointed at s.
func walkthrough(t *testing.T, s *server) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->")
	m := re.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no walk-through block")
	}
	script := string(m[1])
	for old, repl := range map[string]string{
		"export KALCIFER_URL=http://localhost:4000/api/v1": "export KALCIFER_URL=" + s.base + "/api/v1",
		"export KALCIFER_API_KEY=kal_...":                  "export KALCIFER_API_KEY=" + s.key,
	} {
		if !strings.Contains(script, old) {
			t.Fatalf("README walk-through lost its line %q", old)
		}
		script = strings.Replace(script, old, repl, 1)
	}
	return script
}

func runWalkthrough(t *testing.T, s *server) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README walk-through needs curl (make deps installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", walkthrough(t, s)).CombinedOutput()
	if err != nil {
		t.Fatalf("walk-through failed: %v\n%s\nserver stderr:\n%s", err, out, s.stderr)
	}
	for _, want := range []string{`journey jrn_`, `"valid":true`, `"status":"active"`, `"active_version":1`, `no_entry_node`, `unknown_node_type`, `"event_id":"evt_`,
		`"strategy":"migrate_all"`, `"migrated":1`, `{"version":2,"active":1`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("walk-through output lacks %s:\n%s", want, out)
		}
	}
}

func TestWalkthroughOnSQLite(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, nil)
	if s.key == "" {
		t.Fatal("first start printed no API key")
	}
	runWalkthrough(t, s)
	if _, err := os.Stat(filepath.Join(dir, "kalcifer.db")); err != nil {
		t.Fatalf("the embedded store is not in the data dir: %v", err)
	}
}

func TestWalkthroughOnPostgres(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := startServer(t, t.TempDir(), []string{"KALCIFER_DATABASE_URL=" + url})
	if s.key == "" {
		t.Fatal("first start printed no API key")
	}
	runWalkthrough(t, s)
	if code, body := s.get(t, "/health/ready", ""); code != http.StatusOK || !strings.Contains(body, "postgres") {
		t.Fatalf("ready on postgres: %d %s", code, body)
	}
}

func TestRestartKeepsDataAndIssuesNoSecondKey(t *testing.T) {
	dir := t.TempDir()
	first := startServer(t, dir, nil)
	first.stop(t)
	second := startServer(t, dir, nil)
	if second.key != "" {
		t.Fatal("a restart must not create another tenant")
	}
	if code, body := second.get(t, "/tenant", first.key); code != http.StatusOK || !strings.Contains(body, `"default"`) {
		t.Fatalf("the first key should still work after a restart: %d %s", code, body)
	}
}

func TestTenantCreateAndMigrate(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(binary, "migrate", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sqlite") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "tenant", "create", "acme", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("tenant create: %v\n%s", err, out)
	}
	key := regexp.MustCompile(`kal_[0-9a-f]{64}`).FindString(string(out))
	if key == "" {
		t.Fatalf("tenant create printed no key:\n%s", out)
	}
	s := startServer(t, dir, nil)
	if s.key != "" {
		t.Fatal("a store that has a tenant needs no bootstrap tenant")
	}
	if code, body := s.get(t, "/tenant", key); code != http.StatusOK || !strings.Contains(body, `"acme"`) {
		t.Fatalf("the new tenant's key: %d %s", code, body)
	}
	wrong := key[:len(key)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(key, "0")]
	if code, body := s.get(t, "/tenant", wrong); code != http.StatusUnauthorized || !strings.Contains(body, "invalid_api_key") {
		t.Fatalf("a wrong key: %d %s", code, body)
	}
}

func TestBadInvocations(t *testing.T) {
	cases := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"serve", "--listen", "4000"}, "", "--listen"},
		{[]string{"serve"}, "KALCIFER_LOG_LEVEL=chatty", "KALCIFER_LOG_LEVEL"},
		{[]string{"serve", "--database-url", "mysql://x"}, "", "--database-url"},
		{[]string{"tenant", "create"}, "", "usage: kalcifer tenant create NAME"},
		{[]string{"launch"}, "", `unknown command "launch"`},
		{nil, "", "no command given"},
	}
	for _, tc := range cases {
		cmd := exec.Command(binary, tc.args...)
		cmd.Env = append(os.Environ(), tc.env)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("kalcifer %v (%s): want exit 1 naming %q, got %v:\n%s", tc.args, tc.env, tc.want, err, out)
		}
	}
	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kalcifer ") {
		t.Errorf("version: %v %s", err, out)
	}
}

// reach gives each customer an email address, a phone number and a push
// token, so that what journeys send them goes out, with put (a PUT of
// path and body to some node), retried while it fails.
func reach(t testing.TB, customers []string, put func(path, body string) (int, []byte, error)) {
	t.Helper()
	work := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range work {
				body, _ := json.Marshal(map[string]any{"email": id + "@example.com", "phone": "+15550100", "push_tokens": []string{"tok-" + id}})
				deadline := time.Now().Add(time.Minute)
				for {
					code, data, err := put("/customers/"+id, string(body))
					if err == nil && (code == http.StatusOK || code == http.StatusCreated) {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("give %s an address: %d %s %v", id, code, data, err)
						break
					}
					time.Sleep(50 * time.Millisecond) // back off between retries of a real request
				}
			}
		})
	}
	for _, id := range customers {
		work <- id
	}
	close(work)
	wg.Wait()
}
