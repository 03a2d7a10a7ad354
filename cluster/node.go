// Package cluster runs a Kalcifer node's Proto.Actor cluster: membership, grain placement and the Ask/Tell
// port through which the rest of the system talks to grains with real deadlines and typed errors.
package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Config describes one node. Zero values take the defaults noted per field.
type Config struct {
	// Name of the cluster; members only join a cluster of the same name. Default "kalcifer".
	Name string
	// Host the gRPC remote listens on and advertises. Default 127.0.0.1.
	Host string
	// Port of the gRPC remote; 0 picks a free port (read it back with Node.Address).
	Port int
	// Kinds are the grain kinds this member hosts (see actors.Kind).
	Kinds []*pcluster.Kind
	// Logger receives our logs and Proto.Actor's. Default: JSON to stderr.
	Logger *slog.Logger
	// LibraryLogLevel is the lowest level of Proto.Actor's own records that is kept; it logs routine
	// topology and activation detail at Info. Default slog.LevelWarn.
	LibraryLogLevel slog.Leveler
	// RequestTimeout bounds Ask and Tell when the caller's context has no deadline. Default 5 s.
	RequestTimeout time.Duration
	// AdvertiseHost is the host other members dial for gRPC; default Host.
	AdvertiseHost string
	// Gossip, when its Bind is set, makes the node a member of a multi-node cluster over memberlist;
	// otherwise the node is a cluster of one.
	Gossip Gossip
	// ServerTLS and ClientTLS, when set, secure the gRPC traffic between members (set both, with client
	// certificates required, for mutual TLS).
	ServerTLS, ClientTLS *tls.Config
	// OnStall is called when the process was paused longer than the gossip suspicion timeout (see
	// watchStalls), with the pause, or when the others had declared this member dead, with 0; it should
	// end the process. Only multi-node clusters watch for stalls. Default: log and exit with status 75.
	OnStall func(gap time.Duration)
	// Registerer receives the cluster's metrics; nil registers none.
	Registerer prometheus.Registerer
	// OnBroadcast receives what other members send with Node.Broadcast, on the member actor: it must not
	// block.
	OnBroadcast func(proto.Message)
	// Placement, if set, says with which grain a grain lives: the grain kind/identity is placed on the
	// member that hosts the grain Placement returns, so grains that must be serialised together (a
	// customer's instances, with the customer) share a member. Default: each by its own identity.
	Placement func(kind, identity string) (withKind, withIdentity string)
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "kalcifer"
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if c.LibraryLogLevel == nil {
		c.LibraryLogLevel = slog.LevelWarn
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.AdvertiseHost == "" {
		c.AdvertiseHost = c.Host
	}
	if c.OnStall == nil {
		logger := c.Logger
		c.OnStall = func(gap time.Duration) {
			logger.Error("cluster: the others took this member's grains over (a pause past the suspicion timeout, or declared dead); exiting to rejoin as a new member",
				slog.Duration("pause", gap))
			os.Exit(75)
		}
	}
	return c
}

// Node is a running cluster member. It implements Port.
type Node struct {
	cfg      Config
	logger   *slog.Logger
	system   *actor.ActorSystem
	cluster  *pcluster.Cluster
	provider *provider
	lookup   *lookup
	source   membership
	metrics  *metrics
	member   *actor.PID
	startAt  time.Time

	// started is closed when the library's StartMember returns, which is about a second after the node is
	// usable (see Start).
	started  chan struct{}
	startErr error

	closing  atomic.Bool
	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// Start brings up an actor system, the gRPC remote and cluster membership, and returns once this member's
// topology is applied, i.e. once grains can be activated.
//
// Proto.Actor's StartMember ends with an unconditional one-second sleep. Start runs it on a goroutine and
// returns as soon as our provider has published the topology (the sleep is the only thing left); Stop waits
// for that goroutine so nothing outlives the node.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	logger := cfg.Logger.With(slog.String("component", "cluster"))
	libLogger := slog.New(&levelFloor{Handler: cfg.Logger.Handler(), min: cfg.LibraryLogLevel}).
		With(slog.String("lib", "protoactor"))

	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
			return libLogger.With(slog.String("system", s.ID))
		}),
		// Dead letters are expected around passivation and crashes; the port turns them into errors.
		actor.WithDeadLetterRequestLogging(false),
	)

	var source membership = &singleMember{}
	if cfg.Gossip.Bind != "" {
		source = newGossipMembership(cfg.Gossip, logger, func() { go cfg.OnStall(0) })
	}
	m := newMetrics(cfg.Registerer)
	prov := newProvider(source, logger, m.topologyApplied)
	pcfg := pcluster.Configure(cfg.Name, prov, disthash.New(), remote.Configure(cfg.Host, cfg.Port, remoteOptions(cfg)...),
		pcluster.WithKinds(cfg.Kinds...),
		pcluster.WithRequestTimeout(cfg.RequestTimeout),
	)

	n := &Node{
		cfg:      cfg,
		logger:   logger,
		system:   system,
		provider: prov,
		source:   source,
		metrics:  m,
		startAt:  time.Now(),
		started:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if err := n.newCluster(pcfg); err != nil {
		system.Shutdown()
		return nil, err
	}
	n.lookup = newLookup(n.cluster, cfg.Placement)
	m.watchKinds(n.cluster, cfg.Kinds)
	n.member, _ = system.Root.SpawnNamed(actor.PropsFromFunc(n.answerMember), memberActorName)

	go n.startMember()

	select {
	case <-prov.ready:
	case <-n.started:
		if n.startErr == nil {
			// StartMember's trailing sleep means the topology was applied long before it returned.
			<-prov.ready
			break
		}
		// StartMember failed part-way, so only what is known to exist is released.
		n.provider.stopLoop()
		n.lookup.close()
		n.system.Shutdown()
		return nil, n.startErr
	case <-ctx.Done():
		go func() {
			<-n.started
			if err := n.teardown(); err != nil {
				n.logger.Warn("cluster: teardown after abandoned start", slog.Any("error", err))
			}
		}()
		return nil, fmt.Errorf("cluster: start: %w", ctx.Err())
	}
	if cfg.Gossip.Bind != "" {
		limit := cfg.Gossip.SuspicionTimeout()
		go watchStalls(clockTicks(limit/4, n.stopped), limit, cfg.OnStall, n.stopped)
	}
	n.logger.Info("cluster node started", slog.String("address", system.Address()), slog.String("id", system.ID))
	return n, nil
}

// remoteOptions are the gRPC settings of the remote: the advertised address and TLS.
func remoteOptions(cfg Config) []remote.ConfigOption {
	var opts []remote.ConfigOption
	if cfg.AdvertiseHost != cfg.Host {
		opts = append(opts, remote.WithAdvertisedHost(net.JoinHostPort(cfg.AdvertiseHost, strconv.Itoa(cfg.Port))))
	}
	if cfg.ServerTLS != nil {
		opts = append(opts, remote.WithServerOptions(grpc.Creds(credentials.NewTLS(cfg.ServerTLS))))
	}
	if cfg.ClientTLS != nil {
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg.ClientTLS))))
	}
	return opts
}

// newCluster turns the library's construction panics into an error.
func (n *Node) newCluster(pcfg *pcluster.Config) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: create: %v", r)
		}
	}()
	n.cluster = pcluster.New(n.system, pcfg)
	return nil
}

// startMember runs the library's StartMember, which reports failures (port in use, provider errors) by
// panicking.
func (n *Node) startMember() {
	defer close(n.started)
	defer func() {
		if r := recover(); r != nil {
			n.startErr = fmt.Errorf("cluster: start member on %s:%d: %v", n.cfg.Host, n.cfg.Port, r)
		}
	}()
	n.cluster.StartMember()
}

// Address is the host:port other members reach this node at.
func (n *Node) Address() string { return n.system.Address() }

// Size is the number of members in the topology this node applied last,
// itself included.
func (n *Node) Size() int { return max(1, int(n.metrics.size.Load())) }

// ID is this member's actor system id, unique per process start.
func (n *Node) ID() string { return n.system.ID }

// Cluster exposes the underlying Proto.Actor cluster to the packages that adapt grains; domain code talks
// to the Port instead.
func (n *Node) Cluster() *pcluster.Cluster { return n.cluster }

// Stop leaves the cluster and shuts the node down: active grains are stopped (they see Stopping and
// Stopped, their passivation path), gossip and the gRPC server close, and the actor system ends. It returns
// ctx's error if the shutdown outlives ctx; the shutdown still completes in the background.
//
// Proto.Actor's Cluster.Shutdown is not used: it sleeps two seconds for ownership hand-over to other
// members, runs the identity lookup shutdown twice, and panics on a client-only node. The sequence here is
// the same minus those; a multi-member provider waits for hand-over in its own leave.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() {
		go func() {
			defer close(n.stopped)
			<-n.started
			n.stopErr = n.teardown()
		}()
	})
	select {
	case <-n.stopped:
		return n.stopErr
	case <-ctx.Done():
		return fmt.Errorf("cluster: stop: %w", ctx.Err())
	}
}

// remoteStopWait bounds how long a stopping node waits for the gRPC server's graceful stop.
const remoteStopWait = time.Second

// teardown releases a node whose StartMember completed.
func (n *Node) teardown() error {
	if n.startErr != nil {
		n.provider.stopLoop()
		n.lookup.close()
		n.system.Shutdown()
		return nil
	}
	c := n.cluster
	c.Gossip.SetState(pcluster.GracefullyLeftKey, &emptypb.Empty{})
	err := n.provider.Shutdown(true)
	// Only now do asks fail at once: until the others knew this member was
	// leaving, its grains' asks to each other still had to work.
	n.closing.Store(true)
	// Poisons the placement actor, which poisons every grain it activated and waits for them.
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	n.lookup.close()
	// A graceful gRPC stop waits for the streams other members hold open to
	// this node, up to the library's 10 s, though nothing here needs them
	// any more: the grains are stopped and their state is in the store.
	remoteStopped := make(chan struct{})
	go func() {
		defer close(remoteStopped)
		c.Remote.Shutdown(true)
	}()
	select {
	case <-remoteStopped:
	case <-time.After(remoteStopWait):
		n.logger.Info("cluster: not waiting for other members to close their streams")
	}
	n.system.Shutdown()
	n.logger.Info("cluster node stopped", slog.String("address", n.system.Address()))
	return err
}

// levelFloor drops library records below min, whatever the shared handler's own level.
type levelFloor struct {
	slog.Handler
	min slog.Leveler
}

func (h *levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min.Level() && h.Handler.Enabled(ctx, l)
}

func (h *levelFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &levelFloor{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h *levelFloor) WithGroup(name string) slog.Handler {
	return &levelFloor{Handler: h.Handler.WithGroup(name), min: h.min}
}
