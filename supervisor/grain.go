package supervisor

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/ctxext"

	"github.com/kalcifer/kalcifer/actors/actorpb"
)

// GrainOptions configure a GrainSupervisor. Its Policy counts crashes per
// identity; BackoffMax (default 30 s) is also how long an identity stays down
// after giving up.
type GrainOptions struct {
	Policy
	// OnCrash is told about every crash, after it is counted.
	OnCrash func(Crash)
	// OnGiveUp is called once each time an identity exceeds the intensity: it is where the instance gets
	// marked failed and its journey escalated. It runs on the crashing grain's goroutine.
	OnGiveUp func(identity, reason string)
}

// Crash describes one recovered grain panic.
type Crash struct {
	Kind     string
	Identity string
	// Reason is the panic value, formatted.
	Reason string
	// MessageType is the Go type of the message being handled when the grain panicked.
	MessageType string
	Stack       []byte
	// Count is the number of crashes of this identity within the window, this one included.
	Count int
	// Backoff is how long the identity now stays down.
	Backoff time.Duration
	// GaveUp is set when this crash exceeded the intensity.
	GaveUp bool
	At     time.Time
}

// GrainSupervisor applies one restart policy to the activations of one or more grain kinds.
type GrainSupervisor struct {
	opts GrainOptions

	mu      sync.Mutex
	records map[string]*crashRecord
	sweepAt int
}

type crashRecord struct {
	crashes     []time.Time
	blockedTill time.Time
}

const initialSweep = 1024

// NewGrainSupervisor returns a supervisor; attach it to kinds with Middleware.
func NewGrainSupervisor(opts GrainOptions) *GrainSupervisor {
	opts.Policy = opts.Policy.withDefaults(30 * time.Second)
	return &GrainSupervisor{opts: opts, records: map[string]*crashRecord{}, sweepAt: initialSweep}
}

// BackoffRemaining is how long kind/identity must still wait before it may be activated; zero when it may.
func (s *GrainSupervisor) BackoffRemaining(kind, identity string) time.Duration {
	now := s.opts.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[kind+"/"+identity]
	if !ok {
		return 0
	}
	return max(r.blockedTill.Sub(now), 0)
}

// record counts a crash and decides the backoff and whether the identity is past its intensity.
func (s *GrainSupervisor) record(c *Crash) {
	key := c.Kind + "/" + c.Identity
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[key]
	if !ok {
		r = &crashRecord{}
		s.records[key] = r
	}
	horizon := c.At.Add(-s.opts.Window)
	kept := r.crashes[:0]
	for _, t := range r.crashes {
		if t.After(horizon) {
			kept = append(kept, t)
		}
	}
	r.crashes = append(kept, c.At)
	c.Count = len(r.crashes)
	if c.Count > s.opts.MaxRestarts {
		c.GaveUp = true
		c.Backoff = s.opts.BackoffMax
		// The escalation owns what happens next; a later activation starts a fresh count.
		r.crashes = nil
	} else {
		c.Backoff = min(s.opts.BackoffBase<<(c.Count-1), s.opts.BackoffMax)
	}
	r.blockedTill = c.At.Add(c.Backoff)
	s.sweep(c.At)
}

// sweep forgets identities whose crashes have aged out, so a long-running node does not keep a record of
// every identity that ever crashed. It runs when the map doubles, keeping the cost amortised.
func (s *GrainSupervisor) sweep(now time.Time) {
	if len(s.records) < s.sweepAt {
		return
	}
	horizon := now.Add(-s.opts.Window)
	for k, r := range s.records {
		if now.After(r.blockedTill) && (len(r.crashes) == 0 || !r.crashes[len(r.crashes)-1].After(horizon)) {
			delete(s.records, k)
		}
	}
	s.sweepAt = max(2*len(s.records), initialSweep)
}

var activationExtID = ctxext.NextContextExtensionID()

// activation is the per-activation state the middleware keeps in the actor's context.
type activation struct {
	kind, identity string
	// down is set once the activation must not run grain code: it crashed or was refused during backoff.
	down bool
}

func (*activation) ExtensionID() ctxext.ContextExtensionID { return activationExtID }

// Middleware recovers panics in the grain (activation included), records them, answers a request that
// caused one with a KIND_CRASHED ErrorReply, and stops the activation so the next message activates the
// identity afresh. While an identity backs off, activations are refused and requests answered with a
// KIND_BACKOFF ErrorReply carrying the remaining wait.
//
// The activation is stopped with a PoisonPill rather than Stop: Proto.Actor silently drops whatever is
// still queued in a stopped actor's mailbox, which would leave those callers waiting for their deadline;
// queued behind the pill they are answered with KIND_BACKOFF instead.
func (s *GrainSupervisor) Middleware() actor.ReceiverMiddleware {
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(rc actor.ReceiverContext, env *actor.MessageEnvelope) {
			ctx, ok := rc.(actor.Context)
			if !ok {
				next(rc, env)
				return
			}
			a := s.activationOf(ctx)
			if _, started := env.Message.(*actor.Started); started {
				if wait := s.BackoffRemaining(a.kind, a.identity); wait > 0 {
					a.down = true
					ctx.Poison(ctx.Self())
					return
				}
			}
			if a.down {
				s.refuse(next, ctx, a, env)
				return
			}
			defer func() {
				if r := recover(); r != nil {
					s.crashed(ctx, a, env, r)
				}
			}()
			next(rc, env)
		}
	}
}

func (s *GrainSupervisor) activationOf(ctx actor.Context) *activation {
	if a, ok := ctx.Get(activationExtID).(*activation); ok {
		return a
	}
	a := &activation{kind: "", identity: ctx.Self().GetId()}
	if ci := clusterIdentity(ctx); ci != nil {
		a.kind, a.identity = ci.GetKind(), ci.GetIdentity()
	}
	ctx.Set(a)
	return a
}

// clusterIdentity returns nil for an actor that is not a grain; the library's getter panics instead.
func clusterIdentity(ctx actor.Context) (ci *pcluster.ClusterIdentity) {
	defer func() {
		if recover() != nil {
			ci = nil
		}
	}()
	return pcluster.GetClusterIdentity(ctx)
}

// refuse handles a message for an activation that is down: lifecycle messages pass so the library can
// finish stopping it, grain messages never reach grain code.
func (s *GrainSupervisor) refuse(next actor.ReceiverFunc, ctx actor.Context, a *activation, env *actor.MessageEnvelope) {
	switch env.Message.(type) {
	case *actor.Started, *pcluster.ClusterInit, *actor.ReceiveTimeout:
		return
	case actor.SystemMessage, actor.AutoReceiveMessage:
		next(ctx, env)
		return
	}
	if env.Sender == nil {
		s.opts.Logger.Warn("grain message dropped: activation is down",
			slog.String("kind", a.kind), slog.String("identity", a.identity),
			slog.String("message_type", fmt.Sprintf("%T", env.Message)))
		return
	}
	wait := s.BackoffRemaining(a.kind, a.identity)
	ctx.Send(env.Sender, &actorpb.ErrorReply{
		Kind:         actorpb.ErrorReply_KIND_BACKOFF,
		Message:      "message not handled: the grain is restarting after a crash",
		RetryAfterMs: max(wait.Milliseconds(), 1),
	})
}

func (s *GrainSupervisor) crashed(ctx actor.Context, a *activation, env *actor.MessageEnvelope, reason any) {
	c := Crash{
		Kind:        a.kind,
		Identity:    a.identity,
		Reason:      fmt.Sprint(reason),
		MessageType: fmt.Sprintf("%T", env.Message),
		Stack:       debug.Stack(),
		At:          s.opts.Clock.Now(),
	}
	s.record(&c)
	s.opts.Logger.Error("grain crashed",
		slog.String("kind", c.Kind), slog.String("identity", c.Identity), slog.String("reason", c.Reason),
		slog.String("message_type", c.MessageType), slog.Int("crashes_in_window", c.Count),
		slog.Duration("backoff", c.Backoff), slog.Bool("gave_up", c.GaveUp), slog.String("stack", string(c.Stack)))

	switch env.Message.(type) {
	case *actor.Stopping, *actor.Stopped:
		// Already on its way out; the crash is recorded and nothing is left to stop.
	default:
		a.down = true
		if env.Sender != nil {
			ctx.Send(env.Sender, &actorpb.ErrorReply{Kind: actorpb.ErrorReply_KIND_CRASHED, Message: c.Reason})
		}
		ctx.Poison(ctx.Self())
	}
	if s.opts.OnCrash != nil {
		s.opts.OnCrash(c)
	}
	if c.GaveUp && s.opts.OnGiveUp != nil {
		s.opts.OnGiveUp(c.Identity, fmt.Sprintf("%d crashes within %s, last: %s", c.Count, s.opts.Window, c.Reason))
	}
}
