// Package actors adapts Kalcifer's grains to Proto.Actor: a grain is a small Go interface, and Kind turns
// one into a cluster kind with supervision, passivation and typed error replies. Grain code never sees
// Proto.Actor.
package actors

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/supervisor"
)

// Grain is one activation of an identity. Receive handles one message at a time. The reply goes back to an
// Ask; a returned error reaches the caller as *cluster.GrainError (return one to choose the code; any other
// error becomes code "internal"). For a Tell the reply is dropped and an error is logged.
type Grain interface {
	Receive(ctx Context, msg proto.Message) (proto.Message, error)
}

// Context is what a grain sees of the runtime for one message.
type Context interface {
	// Context is cancelled when the activation stops (passivation, crash, node shutdown); it carries no
	// caller deadline.
	context.Context
	Identity() string
	Kind() string
	// Logger is tagged with kind and identity.
	Logger() *slog.Logger
	// IsRequest reports whether a caller waits for the reply (Ask) rather than having sent it with Tell.
	IsRequest() bool
	// Stop ends this activation once the current message is answered, e.g. when it finds another
	// activation owns its state; the next message for the identity activates it afresh.
	Stop()
}

// KindOptions tune a grain kind.
type KindOptions struct {
	// IdleTimeout passivates an activation that received no message for this long; zero keeps activations
	// until the node stops.
	IdleTimeout time.Duration
	// Supervisor recovers panics and backs off crashing identities; nil uses a GrainSupervisor with
	// default options.
	Supervisor *supervisor.GrainSupervisor
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Kind builds the cluster kind name whose activations are created by newGrain, called once per activation
// (so a re-activation after a crash or passivation starts from fresh state).
func Kind(name string, newGrain func(identity string) Grain, opts KindOptions) *pcluster.Kind {
	if opts.Supervisor == nil {
		opts.Supervisor = supervisor.NewGrainSupervisor(supervisor.GrainOptions{Policy: supervisor.Policy{Logger: opts.Logger}})
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var system atomic.Pointer[actor.ActorSystem]
	props := actor.PropsFromProducerWithActorSystem(
		func(s *actor.ActorSystem) actor.Actor {
			system.Store(s)
			return &grainActor{kind: name, newGrain: newGrain, opts: opts}
		},
		actor.WithReceiverMiddleware(opts.Supervisor.Middleware()),
		actor.WithMailbox(func() actor.Mailbox {
			return actor.Unbounded(&answerAfterStop{system: &system})()
		}),
	)
	return pcluster.NewKind(name, props)
}

// grainActor is the Proto.Actor side of one activation.
type grainActor struct {
	kind     string
	newGrain func(identity string) Grain
	opts     KindOptions

	grain    Grain
	identity string
	logger   *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
}

func (g *grainActor) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *actor.Started:
		g.activate(c)
	case *actor.ReceiveTimeout:
		// Stop, not PoisonPill: messages already queued are answered by answerAfterStop as dead letters,
		// which the port re-sends to a new activation.
		c.Stop(c.Self())
	case *actor.Stopping:
		if g.cancel != nil {
			g.cancel()
		}
	case *actor.Stopped, *actor.Restarting, *pcluster.ClusterInit:
	case proto.Message:
		g.handle(c, msg)
	default:
		g.logger.Warn("grain received a message that is not protobuf; dropped", slog.String("type", fmt.Sprintf("%T", msg)))
	}
}

func (g *grainActor) activate(c actor.Context) {
	g.identity = pcluster.GetClusterIdentity(c).GetIdentity()
	g.logger = g.opts.Logger.With(slog.String("kind", g.kind), slog.String("identity", g.identity))
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.grain = g.newGrain(g.identity)
	if g.opts.IdleTimeout > 0 {
		c.SetReceiveTimeout(g.opts.IdleTimeout)
	}
}

func (g *grainActor) handle(c actor.Context, msg proto.Message) {
	gc := &grainContext{Context: g.ctx, grain: g, request: c.Sender() != nil}
	reply, err := g.grain.Receive(gc, msg)
	if gc.stop {
		// Queued messages are answered as dead letters by answerAfterStop and re-sent by the port.
		defer c.Stop(c.Self())
	}
	if !gc.request {
		if err != nil {
			g.logger.Error("grain failed to handle a tell", slog.String("message_type", fmt.Sprintf("%T", msg)), slog.Any("error", err))
		}
		return
	}
	switch {
	case err != nil:
		c.Respond(cluster.ReplyFromError(err))
	case reply == nil:
		// A caller waiting on Ask needs some answer to tell success from a lost message.
		c.Respond(&emptypb.Empty{})
	default:
		c.Respond(reply)
	}
}

type grainContext struct {
	context.Context
	grain   *grainActor
	request bool
	stop    bool
}

func (c *grainContext) Identity() string     { return c.grain.identity }
func (c *grainContext) Kind() string         { return c.grain.kind }
func (c *grainContext) Logger() *slog.Logger { return c.grain.logger }
func (c *grainContext) IsRequest() bool      { return c.request }
func (c *grainContext) Stop()                { c.stop = true }

// answerAfterStop is a mailbox middleware for one activation. Proto.Actor silently drops the user messages
// still queued when an actor stops (passivation racing a new request, a crash), which would leave their
// callers waiting for the deadline. Once the activation's Stop has been processed, every request the
// mailbox still hands out is answered with a DeadLetterResponse: the port then knows the message was not
// handled and re-sends it to a fresh activation.
type answerAfterStop struct {
	system  *atomic.Pointer[actor.ActorSystem]
	stopped atomic.Bool
}

func (m *answerAfterStop) MailboxStarted()   {}
func (m *answerAfterStop) MessagePosted(any) {}
func (m *answerAfterStop) MailboxEmpty()     {}

func (m *answerAfterStop) MessageReceived(msg any) {
	if _, ok := msg.(*actor.Stop); ok {
		m.stopped.Store(true)
		return
	}
	if !m.stopped.Load() {
		return
	}
	env, ok := msg.(*actor.MessageEnvelope)
	if !ok || env.Sender == nil {
		return
	}
	if s := m.system.Load(); s != nil {
		s.Root.Send(env.Sender, &actor.DeadLetterResponse{})
	}
}
