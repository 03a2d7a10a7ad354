// Package config is Kalcifer's typed configuration. Every setting has a
// default, and can be set in an optional JSON file, in a KALCIFER_* variable
// and by a command-line flag, each overriding the one before. Everything is
// validated at start, and an error names the bad setting and where it came from.
package config

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/netguard"
	"github.com/kalcifer/kalcifer/secrets"
)

// Config is the validated configuration of one kalcifer process.
type Config struct {
	Listen           string
	DataDir          string
	DatabaseURL      string
	DatabaseMaxConns int
	LogLevel         slog.Level
	LogFormat        string
	BodyLimit        int64
	RateLimit        float64
	RateBurst        int
	ShutdownTimeout  time.Duration
	BootstrapTenant  string
	Delivery         Delivery
	Cluster          Cluster
}

// Delivery is how messages go out.
type Delivery struct {
	// SecretKey seals provider credentials; nil means the default: on
	// SQLite a key kept in data_dir, on PostgreSQL none (credentials are
	// refused until one is set).
	SecretKey []byte
	// OutboundAllow are the private networks webhooks and providers may
	// reach after all.
	OutboundAllow []netip.Prefix
	// Fallback is the provider of channels a tenant has no account for:
	// "log" or "" (fail them).
	Fallback string
	Workers  int
}

// Cluster is the membership of a multi-node deployment; an empty Bind runs
// a single node.
type Cluster struct {
	Bind          string
	Advertise     string
	Seeds         []string
	GRPCPort      int
	ProbeInterval time.Duration
	SuspicionMult int
	SecretKey     []byte
	TLSCert       string
	TLSKey        string
	TLSCA         string
}

// Enabled reports whether this node joins a multi-node cluster.
func (c Cluster) Enabled() bool { return c.Bind != "" }

// GRPCAddress is the host:port the node's gRPC listens on, and the one it
// advertises: the gossip hosts with GRPCPort, by default the gossip port + 1.
func (c Cluster) GRPCAddress() (listen, advertise string) {
	port := c.GRPCPort
	bindHost, bindPort, _ := net.SplitHostPort(c.Bind)
	if port == 0 {
		p, _ := strconv.Atoi(bindPort)
		port = p + 1
	}
	advHost, _, _ := net.SplitHostPort(cmp.Or(c.Advertise, c.Bind))
	return net.JoinHostPort(bindHost, strconv.Itoa(port)), net.JoinHostPort(advHost, strconv.Itoa(port))
}

// setting describes one configuration key. Its env variable and flag are
// derived from the key so that the three spellings never drift apart.
type setting struct {
	key  string
	def  string
	help string
	set  func(c *Config, v string) error
}

var settings = []setting{
	{"listen", ":4000", "address the HTTP API and UI listen on (host:port)", func(c *Config, v string) error {
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			return fmt.Errorf("want host:port such as :4000 or 127.0.0.1:4000")
		}
		c.Listen = v
		return nil
	}},
	{"data_dir", "./data", "folder for the embedded SQLite database", func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		c.DataDir = v
		return nil
	}},
	{"database_url", "", "postgres://… to use PostgreSQL; empty uses SQLite in data_dir", func(c *Config, v string) error {
		if v != "" && !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
			return errors.New("want a postgres:// or postgresql:// URL, or empty for the embedded SQLite store")
		}
		c.DatabaseURL = v
		return nil
	}},
	{"database_max_conns", "20", "PostgreSQL connection pool size", func(c *Config, v string) error {
		return positiveInt(v, &c.DatabaseMaxConns)
	}},
	{"log_level", "info", "debug, info, warn or error", func(c *Config, v string) error {
		return c.LogLevel.UnmarshalText([]byte(v))
	}},
	{"log_format", "json", "json or text", func(c *Config, v string) error {
		if v != "json" && v != "text" {
			return errors.New("want json or text")
		}
		c.LogFormat = v
		return nil
	}},
	{"body_limit", "1MB", "largest accepted request body (bytes, or with KB/MB suffix)", func(c *Config, v string) error {
		n, err := parseBytes(v)
		if err != nil {
			return err
		}
		c.BodyLimit = n
		return nil
	}},
	{"rate_limit", "100", "API requests per second allowed per tenant", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return errors.New("want a number of requests per second above 0")
		}
		c.RateLimit = f
		return nil
	}},
	{"rate_burst", "200", "API requests a tenant may send at once above the rate", func(c *Config, v string) error {
		return positiveInt(v, &c.RateBurst)
	}},
	{"shutdown_timeout", "15s", "how long to wait for requests in flight on shutdown", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("want a positive duration such as 15s")
		}
		c.ShutdownTimeout = d
		return nil
	}},
	{"bootstrap_tenant", "default", "name of the tenant created on first start; empty creates none", func(c *Config, v string) error {
		c.BootstrapTenant = v
		return nil
	}},
	{"secret_key", "", "base64 of 32 random bytes that seal provider credentials (AES-256-GCM); empty on SQLite keeps one in data_dir/secret.key", func(c *Config, v string) error {
		if v == "" {
			c.Delivery.SecretKey = nil
			return nil
		}
		key, err := secrets.ParseKey(v)
		if err != nil {
			return err
		}
		c.Delivery.SecretKey = key
		return nil
	}},
	{"outbound_allow", "", "comma-separated private networks (CIDRs or IPs) that webhooks and providers may reach; others are refused (SSRF guard)", func(c *Config, v string) error {
		prefixes, err := netguard.ParsePrefixes(v)
		if err != nil {
			return err
		}
		c.Delivery.OutboundAllow = prefixes
		return nil
	}},
	{"delivery_fallback", "log", "what sends a channel that a tenant has no provider account for: log (write it to the log) or none (fail it with no_provider)", func(c *Config, v string) error {
		switch v {
		case "log":
			c.Delivery.Fallback = v
		case "none":
			c.Delivery.Fallback = ""
		default:
			return errors.New("want log or none")
		}
		return nil
	}},
	{"delivery_workers", "8", "how many sends the outbox dispatcher runs at once", func(c *Config, v string) error {
		return positiveInt(v, &c.Delivery.Workers)
	}},
	{"cluster_bind", "", "host:port of this node's gossip (memberlist); empty runs a single node", func(c *Config, v string) error {
		if v == "" {
			c.Cluster.Bind = ""
			return nil
		}
		return fixedAddress(v, &c.Cluster.Bind)
	}},
	{"cluster_advertise", "", "host:port the other nodes reach this node's gossip at; default cluster_bind", func(c *Config, v string) error {
		if v == "" {
			c.Cluster.Advertise = ""
			return nil
		}
		return fixedAddress(v, &c.Cluster.Advertise)
	}},
	{"cluster_seeds", "", "comma-separated gossip addresses (host:port) of nodes to join", func(c *Config, v string) error {
		c.Cluster.Seeds = nil
		for _, seed := range strings.Split(v, ",") {
			if seed = strings.TrimSpace(seed); seed == "" {
				continue
			}
			var addr string
			if err := fixedAddress(seed, &addr); err != nil {
				return fmt.Errorf("seed %q: %w", seed, err)
			}
			c.Cluster.Seeds = append(c.Cluster.Seeds, addr)
		}
		return nil
	}},
	{"cluster_grpc_port", "0", "port of the gRPC traffic between nodes, on the gossip hosts; 0 is the gossip port + 1", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 {
			return errors.New("want a port number, or 0 for the gossip port + 1")
		}
		c.Cluster.GRPCPort = n
		return nil
	}},
	{"cluster_probe_interval", "1s", "how often a node probes another; failures are detected in about interval × (1 + suspicion mult)", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond {
			return errors.New("want a duration of at least 10ms such as 1s")
		}
		c.Cluster.ProbeInterval = d
		return nil
	}},
	{"cluster_suspicion_mult", "4", "how many probe intervals a suspected node has to refute before it is declared dead", func(c *Config, v string) error {
		return positiveInt(v, &c.Cluster.SuspicionMult)
	}},
	{"cluster_secret_key", "", "base64 of a 16, 24 or 32-byte key that encrypts and authenticates gossip", func(c *Config, v string) error {
		if v == "" {
			c.Cluster.SecretKey = nil
			return nil
		}
		key, err := base64.StdEncoding.DecodeString(v)
		if err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
			return errors.New("want the base64 of 16, 24 or 32 random bytes (openssl rand -base64 32)")
		}
		c.Cluster.SecretKey = key
		return nil
	}},
	{"cluster_tls_cert", "", "PEM certificate of this node for mutual TLS between nodes (with cluster_tls_key and cluster_tls_ca)", func(c *Config, v string) error {
		c.Cluster.TLSCert = v
		return nil
	}},
	{"cluster_tls_key", "", "PEM private key of cluster_tls_cert", func(c *Config, v string) error {
		c.Cluster.TLSKey = v
		return nil
	}},
	{"cluster_tls_ca", "", "PEM CA certificate that signs every node's certificate", func(c *Config, v string) error {
		c.Cluster.TLSCA = v
		return nil
	}},
}

// validate checks what no single setting can: how settings fit together.
func (c Config) validate() error {
	cl := c.Cluster
	tls := []string{cl.TLSCert, cl.TLSKey, cl.TLSCA}
	if slices.Contains(tls, "") && slices.ContainsFunc(tls, func(s string) bool { return s != "" }) {
		return errors.New("config: cluster_tls_cert, cluster_tls_key and cluster_tls_ca go together: set all three or none")
	}
	if !cl.Enabled() {
		if cl.Advertise != "" || len(cl.Seeds) > 0 || cl.TLSCert != "" || cl.SecretKey != nil {
			return errors.New("config: cluster settings are set but cluster_bind is empty: set cluster_bind to run a cluster")
		}
		return nil
	}
	if c.DatabaseURL == "" {
		return errors.New("config: a cluster needs PostgreSQL: cluster_bind is set but database_url is empty (the embedded SQLite store serves a single node)")
	}
	if _, p, _ := net.SplitHostPort(cl.Bind); cl.GRPCPort == 0 && p == "65535" {
		return errors.New("config: cluster_bind port 65535 leaves no port for gRPC: set cluster_grpc_port")
	}
	return nil
}

// fixedAddress accepts host:port with a host and a port other than 0: the
// other nodes must be able to dial it.
func fixedAddress(v string, dst *string) error {
	host, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
		return errors.New("want host:port with a host and a non-zero port, such as 10.0.0.5:7946")
	}
	*dst = v
	return nil
}

// secretSettings hold keys: a wrong value is still someone's secret, and
// errors end up in logs.
var secretSettings = map[string]bool{"secret_key": true, "cluster_secret_key": true}

// shown is how an error quotes the value v of the setting key.
func shown(key, v string) string {
	if secretSettings[key] {
		return "<redacted>"
	}
	return strconv.Quote(v)
}

// EnvName is the environment variable of a key: KALCIFER_ and the key in capitals.
func EnvName(key string) string { return "KALCIFER_" + strings.ToUpper(key) }

// FlagName is the command-line flag of a key: the key with dashes.
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// Flags holds the flags of a command that takes configuration.
type Flags struct {
	file   *string
	values map[string]*string
	fs     *flag.FlagSet
}

// RegisterFlags adds --config and one flag per setting to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{values: make(map[string]*string, len(settings)), fs: fs}
	f.file = fs.String("config", "", "JSON configuration file (also "+EnvName("config")+")")
	for _, s := range settings {
		f.values[s.key] = fs.String(FlagName(s.key), "", fmt.Sprintf("%s (%s, default %q)", s.help, EnvName(s.key), s.def))
	}
	return f
}

// Load builds the configuration from defaults, the file, the environment
// (looked up with getenv) and the flags set on the command line.
func (f *Flags) Load(getenv func(string) string) (Config, error) {
	var c Config
	for _, s := range settings {
		if err := s.set(&c, s.def); err != nil {
			return Config{}, fmt.Errorf("config: default %s=%q: %w", s.key, s.def, err)
		}
	}
	path := *f.file
	if path == "" {
		path = getenv(EnvName("config"))
	}
	if path != "" {
		if err := applyFile(&c, path); err != nil {
			return Config{}, err
		}
	}
	for _, s := range settings {
		// An empty variable counts as unset, as shells and compose files often
		// define variables they leave empty.
		if v := getenv(EnvName(s.key)); v != "" {
			if err := s.set(&c, v); err != nil {
				return Config{}, fmt.Errorf("config: %s=%s: %w", EnvName(s.key), shown(s.key, v), err)
			}
		}
	}
	var flagErr error
	f.fs.Visit(func(fl *flag.Flag) {
		for _, s := range settings {
			if fl.Name == FlagName(s.key) && flagErr == nil {
				if err := s.set(&c, *f.values[s.key]); err != nil {
					flagErr = fmt.Errorf("config: --%s=%s: %w", fl.Name, shown(s.key, *f.values[s.key]), err)
				}
			}
		}
	})
	if flagErr != nil {
		return Config{}, flagErr
	}
	return c, c.validate()
}

func applyFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("config: %s is not a JSON object: %w", path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := settingByKey(k)
		if !ok {
			return fmt.Errorf("config: %s: unknown setting %q (known: %s)", path, k, strings.Join(Keys(), ", "))
		}
		v := fmt.Sprint(raw[k])
		if err := s.set(c, v); err != nil {
			return fmt.Errorf("config: %s: %s=%s: %w", path, k, shown(k, v), err)
		}
	}
	return nil
}

func settingByKey(key string) (setting, bool) {
	for _, s := range settings {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

// Setting documents one key for the README table and --help.
type Setting struct {
	Key, Env, Flag, Default, Help string
}

// Keys lists every setting key in declaration order.
func Keys() []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}

// Settings documents every setting.
func Settings() []Setting {
	out := make([]Setting, len(settings))
	for i, s := range settings {
		out[i] = Setting{Key: s.key, Env: EnvName(s.key), Flag: "--" + FlagName(s.key), Default: s.def, Help: s.help}
	}
	return out
}

// SQLitePath is where the embedded store lives.
func (c Config) SQLitePath() string { return filepath.Join(c.DataDir, "kalcifer.db") }

func positiveInt(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return errors.New("want a whole number above 0")
	}
	*dst = n
	return nil
}

var byteUnits = []struct {
	suffix string
	factor int64
}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}

func parseBytes(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	factor := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/factor {
		return 0, errors.New("want a size such as 1048576, 512KB or 1MB")
	}
	return n * factor, nil
}
