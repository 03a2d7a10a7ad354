// Package pgtest gives tests a fresh PostgreSQL database each. With
// KALCIFER_TEST_DATABASE_URL set it creates them on that server; otherwise
// it starts a throwaway server, one per test binary, on first use, so that
// packages tested in parallel never share one.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the postgres:// URL of an existing
// server, whose user may create databases.
const EnvURL = "KALCIFER_TEST_DATABASE_URL"

var (
	mu       sync.Mutex
	started  *server
	adminURL string
	startErr error
)

// Main runs the tests, then stops the server they started, also when they
// fail or the run is interrupted.
func Main(m *testing.M) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		stop()
		os.Exit(1)
	}()
	code := m.Run()
	stop()
	os.Exit(code)
}

// NewDatabase creates an empty database and returns its URL; the database
// is dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin, err := serverURL()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", admin, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "kalcifer_test_" + hex.EncodeToString(b[:])
	if err := adminExec(admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func adminExec(admin, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// serverURL returns the admin URL, starting the server on first use.
func serverURL() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if adminURL != "" || startErr != nil {
		return adminURL, startErr
	}
	if u := os.Getenv(EnvURL); u != "" {
		adminURL = u
		return adminURL, nil
	}
	started, startErr = start()
	if startErr == nil {
		adminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", started.port)
	}
	return adminURL, startErr
}

func stop() {
	mu.Lock()
	defer mu.Unlock()
	if started != nil {
		started.stop()
		started = nil
	}
}

type server struct {
	bin  string
	dir  string
	port int
	// asPostgres prefixes commands that must not run as root.
	asPostgres []string
}

func (s *server) command(name string, args ...string) *exec.Cmd {
	argv := append(slices.Clone(s.asPostgres), filepath.Join(s.bin, name))
	return exec.Command(argv[0], append(argv[1:], args...)...)
}

func (s *server) run(name string, args ...string) error {
	out, err := s.command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return nil
}

func start() (*server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kalcifer-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	s := &server{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		if err := chownToPostgres(dir); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.asPostgres = []string{"runuser", "-u", "postgres", "--"}
	}
	if err := s.run("initdb", "-D", dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.watch()
	// Another process may take the free port before the server binds it.
	for range 5 {
		if s.port, err = freePort(); err != nil {
			break
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.port, dir)
		if err = s.run("pg_ctl", "-D", dir, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err == nil {
			return s, nil
		}
	}
	s.stop()
	return nil, err
}

func (s *server) stop() {
	_ = s.run("pg_ctl", "-D", s.dir, "-m", "immediate", "-w", "stop")
	_ = os.RemoveAll(s.dir)
}

// watch starts a detached process that stops the server and removes its
// data once this process has gone, for the exits Main cannot see: a panic
// in a test, or go test's -timeout.
func (s *server) watch() {
	const script = `pid=$1 dir=$2; shift 2
while [ -d /proc/$pid ]; do sleep 1; done
[ -d "$dir" ] || exit 0
"$@" -D "$dir" -m immediate -w stop >/dev/null 2>&1
rm -rf "$dir"`
	ctl := s.command("pg_ctl").Args
	args := append([]string{"-c", script, "sh", strconv.Itoa(os.Getpid()), s.dir}, ctl...)
	cmd := exec.Command("sh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		_ = cmd.Process.Release()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func chownToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("look up user postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown data dir to postgres: %w", err)
	}
	return nil
}

// findBin returns the newest /usr/lib/postgresql/*/bin, installing the
// postgresql package first when it is missing and we are root.
func findBin() (string, error) {
	if bin := newestBin(); bin != "" {
		return bin, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("no PostgreSQL in /usr/lib/postgresql/*/bin: install the postgresql package or set " + EnvURL)
	}
	if err := install(); err != nil {
		return "", err
	}
	if bin := newestBin(); bin != "" {
		return bin, nil
	}
	return "", errors.New("postgresql installed but /usr/lib/postgresql/*/bin is still missing")
}

func newestBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(a) - version(b) })
	if len(dirs) == 0 {
		return ""
	}
	return dirs[len(dirs)-1]
}

// install runs apt-get under a lock file: test binaries start in parallel and
// apt-get takes its own locks without waiting.
func install() error {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "kalcifer-pgtest-apt.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("install postgresql: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("install postgresql: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if newestBin() != "" {
		return nil
	}
	cmd := exec.Command("sh", "-c", "apt-get update && apt-get install -y postgresql")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install postgresql: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
