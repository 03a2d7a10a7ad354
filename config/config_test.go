package config

import (
	"encoding/base64"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.Load(func(k string) string { return env[k] })
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":4000" || c.DataDir != "./data" || c.DatabaseURL != "" || c.LogLevel != slog.LevelInfo ||
		c.BodyLimit != 1_000_000 || c.ShutdownTimeout != 15*time.Second || c.BootstrapTenant != "default" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.SQLitePath() != filepath.Join("data", "kalcifer.db") {
		t.Fatalf("sqlite path %s", c.SQLitePath())
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kalcifer.json")
	if err := os.WriteFile(file, []byte(`{"listen":":5000","data_dir":"/from/file","rate_limit":7,"log_level":"debug"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KALCIFER_CONFIG": file, "KALCIFER_DATA_DIR": "/from/env", "KALCIFER_LISTEN": ":6000", "KALCIFER_BODY_LIMIT": ""}
	c, err := load(t, env, "--listen", "127.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7000" {
		t.Errorf("flag should win: listen=%s", c.Listen)
	}
	if c.DataDir != "/from/env" {
		t.Errorf("env should beat file: data_dir=%s", c.DataDir)
	}
	if c.RateLimit != 7 || c.LogLevel != slog.LevelDebug {
		t.Errorf("file should beat defaults: %+v", c)
	}
	if c.BodyLimit != 1_000_000 {
		t.Errorf("an empty variable is unset: body_limit=%d", c.BodyLimit)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(file, []byte(`{"listne":":1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"KALCIFER_LISTEN": "4000"}, nil, "KALCIFER_LISTEN"},
		{map[string]string{"KALCIFER_DATABASE_URL": "mysql://x"}, nil, "KALCIFER_DATABASE_URL"},
		{nil, []string{"--log-level", "loud"}, "--log-level"},
		{nil, []string{"--body-limit", "1TB"}, "--body-limit"},
		{nil, []string{"--rate-limit", "0"}, "--rate-limit"},
		{nil, []string{"--rate-burst", "-1"}, "--rate-burst"},
		{nil, []string{"--shutdown-timeout", "soon"}, "--shutdown-timeout"},
		{nil, []string{"--database-max-conns", "x"}, "--database-max-conns"},
		{nil, []string{"--log-format", "xml"}, "--log-format"},
		{nil, []string{"--config", file}, `unknown setting "listne"`},
		{nil, []string{"--config", filepath.Join(t.TempDir(), "missing.json")}, "missing.json"},
	}
	for _, tc := range cases {
		_, err := load(t, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("env %v args %v: error %v should name %s", tc.env, tc.args, err, tc.want)
		}
	}
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KB": 512_000, "2MiB": 2 << 20, "1 mb": 1_000_000, "10B": 10} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1KB", "1.5MB", "MB", "2000GB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

func TestSettingsDocumented(t *testing.T) {
	for _, s := range Settings() {
		if s.Help == "" || !strings.HasPrefix(s.Env, "KALCIFER_") || !strings.HasPrefix(s.Flag, "--") {
			t.Errorf("setting %+v is not documented", s)
		}
	}
}

func TestREADMEDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings() {
		row := "| `" + s.Key + "` | `" + s.Env + "` | `" + s.Flag + "` | "
		if !strings.Contains(string(readme), row) {
			t.Errorf("README's configuration table has no row starting %q", row)
		}
	}
}

func TestClusterSettings(t *testing.T) {
	pg := "postgres://k@db/k"
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	c, err := load(t, map[string]string{
		"KALCIFER_DATABASE_URL":           pg,
		"KALCIFER_CLUSTER_BIND":           "0.0.0.0:7946",
		"KALCIFER_CLUSTER_ADVERTISE":      "10.0.0.5:7946",
		"KALCIFER_CLUSTER_SEEDS":          "10.0.0.5:7946, 10.0.0.6:7946,",
		"KALCIFER_CLUSTER_PROBE_INTERVAL": "200ms",
		"KALCIFER_CLUSTER_SECRET_KEY":     key,
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if !cl.Enabled() || len(cl.Seeds) != 2 || cl.Seeds[1] != "10.0.0.6:7946" || cl.ProbeInterval != 200*time.Millisecond ||
		cl.SuspicionMult != 4 || len(cl.SecretKey) != 32 {
		t.Fatalf("cluster %+v", cl)
	}
	if listen, adv := cl.GRPCAddress(); listen != "0.0.0.0:7947" || adv != "10.0.0.5:7947" {
		t.Fatalf("gRPC %s advertised as %s, want the gossip port + 1", listen, adv)
	}
	cl.GRPCPort = 9000
	if listen, adv := cl.GRPCAddress(); listen != "0.0.0.0:9000" || adv != "10.0.0.5:9000" {
		t.Fatalf("gRPC %s advertised as %s, want port 9000", listen, adv)
	}

	bad := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KALCIFER_CLUSTER_BIND": "127.0.0.1:7946"}, "a cluster needs PostgreSQL"},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": ":7946"}, "KALCIFER_CLUSTER_BIND"},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": "127.0.0.1:0"}, "non-zero port"},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": "127.0.0.1:7946", "KALCIFER_CLUSTER_SEEDS": "a:1,b"}, `seed "b"`},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": "127.0.0.1:7946", "KALCIFER_CLUSTER_SECRET_KEY": "c2hvcnQ="}, "16, 24 or 32"},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": "127.0.0.1:7946", "KALCIFER_CLUSTER_TLS_CERT": "c.pem"}, "set all three or none"},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": "127.0.0.1:65535"}, "cluster_grpc_port"},
		{map[string]string{"KALCIFER_CLUSTER_SEEDS": "10.0.0.5:7946"}, "cluster_bind is empty"},
		{map[string]string{"KALCIFER_DATABASE_URL": pg, "KALCIFER_CLUSTER_BIND": "127.0.0.1:7946", "KALCIFER_CLUSTER_PROBE_INTERVAL": "1ms"}, "at least 10ms"},
	}
	for _, b := range bad {
		if _, err := load(t, b.env); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%v: error %v, want one mentioning %q", b.env, err, b.want)
		}
	}
}

// TestSecretsNotEchoed: a wrong key is refused without being repeated in
// the error, which ends up in logs; other settings are quoted as given.
func TestSecretsNotEchoed(t *testing.T) {
	for _, env := range []string{"KALCIFER_SECRET_KEY", "KALCIFER_CLUSTER_SECRET_KEY"} {
		_, err := load(t, map[string]string{env: "almost-a-real-key-0123456789"})
		if err == nil || strings.Contains(err.Error(), "almost-a-real-key") || !strings.Contains(err.Error(), env) {
			t.Errorf("%s: %v", env, err)
		}
	}
	if _, err := load(t, nil, "--secret-key=almost-a-real-key"); err == nil || strings.Contains(err.Error(), "almost-a-real-key") {
		t.Errorf("flag: %v", err)
	}
	if _, err := load(t, map[string]string{"KALCIFER_DELIVERY_FALLBACK": "carrier-pigeon"}); err == nil || !strings.Contains(err.Error(), `"carrier-pigeon"`) {
		t.Errorf("an ordinary setting is quoted: %v", err)
	}
	if _, err := load(t, map[string]string{"KALCIFER_OUTBOUND_ALLOW": "10.0.0.0/8,nonsense"}); err == nil {
		t.Error("a bad network was accepted")
	}
}
