// Command kalcifer is the whole Kalcifer engine in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/config"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/postgres"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `kalcifer — customer journey orchestration engine

Usage:
  kalcifer serve [flags]               run the API (and, with no configuration, everything on SQLite)
  kalcifer migrate [flags]             apply database migrations and exit
  kalcifer tenant create NAME [flags]  create a tenant and print its first API key
  kalcifer version                     print the version

Run "kalcifer serve -h" for the configuration flags; each also reads a KALCIFER_* variable.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kalcifer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "migrate":
		return migrate(ctx, rest, stdout, stderr)
	case "tenant":
		if len(rest) == 0 || rest[0] != "create" {
			return errors.New(`usage: kalcifer tenant create NAME`)
		}
		return createTenant(ctx, rest[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "kalcifer", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// loadConfig parses a command's flags (configuration plus positional
// arguments) and returns the validated configuration.
func loadConfig(name string, args []string, stderr io.Writer) (config.Config, []string, error) {
	fs := flag.NewFlagSet("kalcifer "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := config.RegisterFlags(fs)
	// Flags may come before or after positional arguments ("tenant create
	// acme --data-dir d"); the flag package alone stops at the first one.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return config.Config{}, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg, err := flags.Load(os.Getenv)
	return cfg, positional, err
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// openStore opens and migrates the configured store.
func openStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	var (
		st  store.Store
		err error
	)
	if cfg.DatabaseURL != "" {
		st, err = postgres.Open(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	} else {
		st, err = sqlite.Open(ctx, cfg.SQLitePath())
	}
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := loadConfig("migrate", args, stderr)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(stdout, "migrations applied (%s)\n", st.Driver())
	return nil
}

func createTenant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, rest, err := loadConfig("tenant create", args, stderr)
	if err != nil {
		return err
	}
	if len(rest) != 1 || strings.TrimSpace(rest[0]) == "" {
		return errors.New("usage: kalcifer tenant create NAME [flags]")
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	tenant, key, err := store.CreateTenantWithKey(ctx, st.Tenants(), rest[0], time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tenant %q created (%s)\nAPI key (shown once, keep it safe): %s\n", tenant.Name, tenant.ID, key)
	return nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := loadConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	firstKey, err := bootstrap(ctx, st, cfg.BootstrapTenant)
	if err != nil {
		return err
	}
	ccfg, err := clusterConfig(cfg.Cluster)
	if err != nil {
		return err
	}
	registry := nodes.Default()
	metrics := prometheus.NewRegistry()
	accts, err := providerAccounts(cfg, st, logger)
	if err != nil {
		return err
	}
	rt, err := actors.Start(ctx, actors.Options{Store: st, Nodes: registry, Logger: logger, Registerer: metrics, Cluster: ccfg,
		Accounts: accts, DeliveryWorkers: cfg.Delivery.Workers})
	if err != nil {
		return fmt.Errorf("start the engine: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := rt.Stop(stopCtx); err != nil {
			logger.Warn("stop the engine", "error", err)
		}
	}()
	srv, err := api.New(api.Options{
		Store:     st,
		Nodes:     registry,
		Logger:    logger,
		Version:   version,
		BodyLimit: cfg.BodyLimit,
		RateLimit: cfg.RateLimit,
		RateBurst: cfg.RateBurst,
		Engine:    rt,
		Metrics:   metrics,
		Accounts:  accts,
		Intake:    statusIntake(st, accts, rt),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	httpServer := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(ln) }()

	printBanner(stdout, ln.Addr(), st.Driver(), cfg.BootstrapTenant, firstKey)
	logger.Info("kalcifer started", "version", version, "listen", ln.Addr().String(), "store", st.Driver())

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	// One deadline for the whole drain: requests in flight, then the engine
	// (the deferred Stop above then finds it stopped).
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := rt.Stop(shutdownCtx); err != nil {
		return fmt.Errorf("stop the engine: %w", err)
	}
	return nil
}

// bootstrap creates the first tenant on a store that has none, so that a new
// user of `kalcifer serve` has a key to call the API with. It returns the key,
// or "" when tenants already exist or bootstrapping is disabled.
func bootstrap(ctx context.Context, st store.Store, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	tenants, err := st.Tenants().ListTenants(ctx)
	if err != nil {
		return "", err
	}
	if len(tenants) > 0 {
		return "", nil
	}
	_, key, err := store.CreateTenantWithKey(ctx, st.Tenants(), name, time.Now())
	return key, err
}

// printBanner tells a person where Kalcifer is and, on a first start, the
// key to use. Its last line is always the OpenAPI address, so scripts can
// wait for it.
func printBanner(w io.Writer, addr net.Addr, driver, tenant, key string) {
	base := "http://" + addr.String()
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		base = fmt.Sprintf("http://localhost:%d", tcp.Port)
	}
	fmt.Fprintf(w, "Kalcifer %s is running on %s (store: %s)\n  API: %s/api/v1\n", version, base, driver, base)
	if key != "" {
		fmt.Fprintf(w, "  First tenant %q created. Its API key, shown only this once:\n\n    %s\n\n", tenant, key)
		fmt.Fprintf(w, "  Try: curl -H 'Authorization: Bearer %s' %s/api/v1/journeys\n", key, base)
	}
	fmt.Fprintf(w, "  OpenAPI: %s/api/v1/openapi.json\n", base)
}
