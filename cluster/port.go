package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors/actorpb"
)

// Port is how the rest of Kalcifer talks to grains; it hides Proto.Actor so callers and their tests depend
// on this interface only.
type Port interface {
	// Ask sends msg to the grain kind/identity and waits for its reply until ctx's deadline (or the node's
	// RequestTimeout when ctx has none), including the time spent finding or activating the grain. Errors
	// match ErrTimeout, ErrUnavailable (ErrCrashed) or are a *GrainError; context.Canceled passes through.
	Ask(ctx context.Context, identity, kind string, msg proto.Message, opts ...CallOption) (proto.Message, error)
	// Tell delivers msg without waiting for the grain: at most once, since a message reaching a grain that
	// is stopping at that instant is dropped. The error covers finding the grain only.
	Tell(ctx context.Context, identity, kind string, msg proto.Message) error
}

var _ Port = (*Node)(nil)

// CallOption tunes one Ask.
type CallOption func(*callConfig)

type callConfig struct {
	retries int
	delay   time.Duration
}

// WithRetry lets Ask send msg again, up to retries more times, after a Retryable error, waiting the
// error's RetryAfter or delay (doubling per attempt), whichever is longer, and never past the deadline.
// Only pass it for messages that are safe to handle twice: after a timeout or a crash the first attempt
// may have taken effect. Undelivered messages (a grain that had just stopped) are always re-sent without it.
func WithRetry(retries int, delay time.Duration) CallOption {
	return func(c *callConfig) {
		c.retries = retries
		c.delay = delay
	}
}

// errDeadLetter reports a message that reached no running actor, so it was certainly not handled.
var errDeadLetter = &UnavailableError{Reason: "target is not running"}

var errStopped = &UnavailableError{Reason: "node is stopping"}

func (n *Node) Ask(ctx context.Context, identity, kind string, msg proto.Message, opts ...CallOption) (proto.Message, error) {
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := n.bound(ctx)
	defer cancel()

	reply, err := n.askRetrying(ctx, identity, kind, msg, cfg)
	if err != nil {
		n.metrics.askFailed(err)
	}
	return reply, err
}

func (n *Node) askRetrying(ctx context.Context, identity, kind string, msg proto.Message, cfg callConfig) (proto.Message, error) {
	delay := cfg.delay
	for attempt := 0; ; attempt++ {
		reply, err := n.askOnce(ctx, identity, kind, msg)
		if err == nil || attempt >= cfg.retries || !Retryable(err) || ctx.Err() != nil {
			return reply, err
		}
		wait := max(retryAfter(err), delay)
		delay *= 2
		if dl, _ := ctx.Deadline(); time.Until(dl) <= wait {
			return nil, err
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (n *Node) askOnce(ctx context.Context, identity, kind string, msg proto.Message) (proto.Message, error) {
	// A dead letter means the cached or just-activated PID had stopped (passivation, crash) before the
	// message arrived; the message was not handled, so resolving again and resending is always safe.
	pause := time.Millisecond
	for {
		if n.closing.Load() {
			return nil, fmt.Errorf("ask %s/%s: %w", kind, identity, errStopped)
		}
		pid, err := n.lookup.pid(ctx, identity, kind)
		if err != nil {
			return nil, fmt.Errorf("ask %s/%s: lookup: %w", kind, identity, err)
		}
		reply, err := request(ctx, n.system, pid, msg, n.lookup.departed(pid.Address))
		if errors.Is(err, errMemberLeft) {
			n.lookup.forget(identity, kind, pid)
		}
		if errors.Is(err, errDeadLetter) {
			n.lookup.forget(identity, kind, pid)
			// The placement actor learns of the stop asynchronously and may hand out the same PID again.
			if err := sleep(ctx, pause); err != nil {
				return nil, fmt.Errorf("ask %s/%s: %w", kind, identity, err)
			}
			pause = min(2*pause, 50*time.Millisecond)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ask %s/%s: %w", kind, identity, err)
		}
		switch r := reply.(type) {
		case *actorpb.ErrorReply:
			return nil, fmt.Errorf("ask %s/%s: %w", kind, identity, ErrorFromReply(r))
		case proto.Message:
			return r, nil
		default:
			return nil, fmt.Errorf("ask %s/%s: reply of type %T is not a protobuf message", kind, identity, reply)
		}
	}
}

func (n *Node) Tell(ctx context.Context, identity, kind string, msg proto.Message) error {
	if n.closing.Load() {
		return fmt.Errorf("tell %s/%s: %w", kind, identity, errStopped)
	}
	ctx, cancel := n.bound(ctx)
	defer cancel()
	pid, err := n.lookup.pid(ctx, identity, kind)
	if err != nil {
		return fmt.Errorf("tell %s/%s: lookup: %w", kind, identity, err)
	}
	n.system.Root.Send(pid, msg)
	return nil
}

// bound gives every call a deadline: Proto.Actor requests always need one, and an unbounded wait on a lost
// message would never end.
func (n *Node) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// errMemberLeft reports a request to a member that left the topology (died, or drained) before it
// answered: the message may or may not have been handled there.
var errMemberLeft = &UnavailableError{Reason: "the member left the cluster before answering"}

// request sends msg to pid with a private reply address and waits for the first answer, ctx, or
// departed closing (the target's member left). Unlike RootContext.RequestFuture it observes
// cancellation as well as the deadline, and a reply that arrives after we gave up finds the address gone
// and becomes a dead letter instead of racing our read.
func request(ctx context.Context, system *actor.ActorSystem, pid *actor.PID, msg any, departed <-chan struct{}) (any, error) {
	rp := &replyProcess{ch: make(chan any, 1)}
	self, _ := system.ProcessRegistry.Add(rp, "ask"+system.ProcessRegistry.NextId())
	defer system.ProcessRegistry.Remove(self)

	system.Root.RequestWithCustomSender(pid, msg, self)
	select {
	case m := <-rp.ch:
		if _, dead := m.(*actor.DeadLetterResponse); dead {
			return nil, errDeadLetter
		}
		return m, nil
	case <-departed:
		return nil, errMemberLeft
	case <-ctx.Done():
		return nil, ctxErr(ctx)
	}
}

// ctxErr makes a passed deadline an ErrTimeout while keeping context.DeadlineExceeded matchable.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// replyProcess is the reply address of one request; it keeps the first message only.
type replyProcess struct {
	ch chan any
}

func (p *replyProcess) SendUserMessage(_ *actor.PID, message any) {
	_, msg, _ := actor.UnwrapEnvelope(message)
	select {
	case p.ch <- msg:
	default:
	}
}

func (p *replyProcess) SendSystemMessage(*actor.PID, any) {}

func (p *replyProcess) Stop(*actor.PID) {}
