// These tests drive a real Proto.Actor cluster. The library has data races of its own in cluster code, so
// this package is listed in the Makefile's NORACE_PKGS and runs without -race.
package actors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/supervisor"
)

const toyKind = "toy"

// toy counts the messages its activation handled, so a re-activation is visible as a count back at 1.
type toy struct {
	identity string
	count    int64
}

func (g *toy) Receive(ctx actors.Context, msg proto.Message) (proto.Message, error) {
	switch m := msg.(type) {
	case *actorpb.Ping:
		return &actorpb.Pong{Payload: m.GetPayload(), Identity: ctx.Identity()}, nil
	case *actorpb.ToyRequest:
		g.count++
		switch m.GetOp() {
		case actorpb.ToyRequest_OP_PANIC:
			panic("toy panic")
		case actorpb.ToyRequest_OP_FAIL:
			return nil, &cluster.GrainError{Code: m.GetCode(), Message: "toy failure"}
		case actorpb.ToyRequest_OP_SLOW:
			time.Sleep(time.Duration(m.GetDelayMs()) * time.Millisecond)
		}
		return &actorpb.ToyReply{Count: g.count, Identity: g.identity}, nil
	}
	return nil, &cluster.GrainError{Code: "unknown_message", Message: fmt.Sprintf("%T", msg)}
}

type harness struct {
	node        *cluster.Node
	activations atomic.Int64
	clock       *supervisor.ManualClock
	giveUps     chan string
	crashes     atomic.Int64
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func start(t testing.TB, opts actors.KindOptions, gopts supervisor.GrainOptions) *harness {
	t.Helper()
	h := &harness{clock: supervisor.NewManualClock(time.Unix(1_700_000_000, 0)), giveUps: make(chan string, 10)}
	gopts.Clock = h.clock
	gopts.Logger = quiet()
	gopts.OnGiveUp = func(identity, reason string) { h.giveUps <- identity }
	gopts.OnCrash = func(supervisor.Crash) { h.crashes.Add(1) }
	opts.Supervisor = supervisor.NewGrainSupervisor(gopts)
	opts.Logger = quiet()
	kind := actors.Kind(toyKind, func(identity string) actors.Grain {
		h.activations.Add(1)
		return &toy{identity: identity}
	}, opts)
	node, err := cluster.Start(context.Background(), cluster.Config{Kinds: []*pcluster.Kind{kind}, Logger: quiet()})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	h.node = node
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.Stop(ctx); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	return h
}

func (h *harness) count(t testing.TB, identity string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reply, err := h.node.Ask(ctx, identity, toyKind, &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT})
	if err != nil {
		t.Fatalf("ask %s: %v", identity, err)
	}
	return reply.(*actorpb.ToyReply).GetCount()
}

func (h *harness) ask(identity string, req *actorpb.ToyRequest, timeout time.Duration) (proto.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return h.node.Ask(ctx, identity, toyKind, req)
}

func TestRequestResponse(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reply, err := h.node.Ask(ctx, "alice", toyKind, &actorpb.Ping{Payload: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if pong := reply.(*actorpb.Pong); pong.GetPayload() != "hi" || pong.GetIdentity() != "alice" {
		t.Fatalf("pong = %v", pong)
	}
	for want := int64(1); want <= 3; want++ {
		if got := h.count(t, "alice"); got != want {
			t.Fatalf("count = %d, want %d", got, want)
		}
	}

	_, err = h.ask("alice", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_FAIL, Code: "not_allowed"}, 2*time.Second)
	var ge *cluster.GrainError
	if !errors.As(err, &ge) || ge.Code != "not_allowed" || ge.Message != "toy failure" {
		t.Fatalf("err = %v, want GrainError not_allowed", err)
	}
	if cluster.Retryable(err) {
		t.Fatal("an application error is not retryable")
	}
	if h.activations.Load() != 1 {
		t.Fatalf("activations = %d, an application error must not re-activate", h.activations.Load())
	}
}

func TestConcurrentAsksToManyIdentities(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{})
	const identities, perIdentity = 200, 5
	var wg sync.WaitGroup
	errs := make(chan error, identities*perIdentity)
	for i := range identities {
		for range perIdentity {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := h.ask(fmt.Sprintf("c-%d", i), &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT}, 5*time.Second); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := h.activations.Load(); got != identities {
		t.Fatalf("activations = %d, want %d", got, identities)
	}
	for i := range identities {
		if got := h.count(t, fmt.Sprintf("c-%d", i)); got != perIdentity+1 {
			t.Fatalf("c-%d count = %d, want %d", i, got, perIdentity+1)
		}
	}
}

func TestPanicAnswersPromptlyAndReactivatesFresh(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{Policy: supervisor.Policy{BackoffBase: time.Second}})
	h.count(t, "bob")
	h.count(t, "bob")

	began := time.Now()
	_, err := h.ask("bob", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_PANIC}, 5*time.Second)
	if !errors.Is(err, cluster.ErrCrashed) || !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrCrashed", err)
	}
	if elapsed := time.Since(began); elapsed > time.Second {
		t.Fatalf("crash reply took %s", elapsed)
	}

	// Within the backoff the identity is not activated again.
	_, err = h.ask("bob", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT}, 2*time.Second)
	var ue *cluster.UnavailableError
	if !errors.As(err, &ue) || ue.RetryAfter <= 0 || ue.RetryAfter > time.Second || !cluster.Retryable(err) {
		t.Fatalf("err = %v, want retryable backoff", err)
	}
	if h.activations.Load() != 1 {
		t.Fatalf("activations = %d during backoff, want 1", h.activations.Load())
	}

	h.clock.Advance(time.Second)
	if got := h.count(t, "bob"); got != 1 {
		t.Fatalf("count after re-activation = %d, want 1 (fresh state)", got)
	}
	if h.activations.Load() != 2 || h.crashes.Load() != 1 {
		t.Fatalf("activations = %d crashes = %d, want 2 and 1", h.activations.Load(), h.crashes.Load())
	}
}

func TestRestartIntensityGivesUpOnceThenBacksOff(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{Policy: supervisor.Policy{
		MaxRestarts: 2, Window: time.Minute, BackoffBase: 10 * time.Millisecond, BackoffMax: 10 * time.Second,
	}})
	crash := func() {
		t.Helper()
		_, err := h.ask("carol", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_PANIC}, 2*time.Second)
		if !errors.Is(err, cluster.ErrCrashed) {
			t.Fatalf("err = %v, want ErrCrashed", err)
		}
	}
	crash()
	h.clock.Advance(10 * time.Millisecond)
	crash()
	h.clock.Advance(20 * time.Millisecond)
	select {
	case id := <-h.giveUps:
		t.Fatalf("gave up on %s within the intensity", id)
	default:
	}
	crash()
	select {
	case id := <-h.giveUps:
		if id != "carol" {
			t.Fatalf("gave up on %q", id)
		}
	case <-time.After(time.Second):
		t.Fatal("OnGiveUp not called")
	}

	for range 3 {
		_, err := h.ask("carol", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT}, 2*time.Second)
		var ue *cluster.UnavailableError
		if !errors.As(err, &ue) || !cluster.Retryable(err) || ue.RetryAfter <= 5*time.Second {
			t.Fatalf("err = %v, want the long retryable backoff", err)
		}
	}
	h.clock.Advance(10 * time.Second)
	if got := h.count(t, "carol"); got != 1 {
		t.Fatalf("count = %d, want a fresh activation", got)
	}
	select {
	case id := <-h.giveUps:
		t.Fatalf("OnGiveUp called again for %s", id)
	default:
	}
}

func TestRetryOptionWaitsOutTheBackoff(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{Policy: supervisor.Policy{BackoffBase: 50 * time.Millisecond}})
	if _, err := h.ask("dan", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_PANIC}, 2*time.Second); !errors.Is(err, cluster.ErrCrashed) {
		t.Fatalf("err = %v", err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		h.clock.Advance(50 * time.Millisecond)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reply, err := h.node.Ask(ctx, "dan", toyKind, &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT},
		cluster.WithRetry(5, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if reply.(*actorpb.ToyReply).GetCount() != 1 {
		t.Fatalf("reply = %v", reply)
	}
}

func TestPassivationAfterIdleTimeout(t *testing.T) {
	h := start(t, actors.KindOptions{IdleTimeout: 100 * time.Millisecond}, supervisor.GrainOptions{})
	h.count(t, "erin")
	h.count(t, "erin")
	time.Sleep(400 * time.Millisecond)
	if got := h.count(t, "erin"); got != 1 {
		t.Fatalf("count = %d after idling, want 1 (passivated)", got)
	}
	if h.activations.Load() != 2 {
		t.Fatalf("activations = %d, want 2", h.activations.Load())
	}
}

func TestDeadlineOnSlowGrain(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{})
	const deadline = 200 * time.Millisecond
	began := time.Now()
	_, err := h.ask("frank", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_SLOW, DelayMs: 2000}, deadline)
	elapsed := time.Since(began)
	if !errors.Is(err, cluster.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if elapsed > deadline+50*time.Millisecond {
		t.Fatalf("returned after %s, deadline %s", elapsed, deadline)
	}
	t.Logf("slow grain: returned after %s for a %s deadline", elapsed, deadline)
}

func TestTell(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for range 3 {
		if err := h.node.Tell(ctx, "gina", toyKind, &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT}); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.count(t, "gina"); got != 4 {
		t.Fatalf("count = %d, want 4 (three tells then the ask)", got)
	}
	// A tell that fails in the grain is logged, not answered, and does not crash it.
	if err := h.node.Tell(ctx, "gina", toyKind, &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_FAIL}); err != nil {
		t.Fatal(err)
	}
	if got := h.count(t, "gina"); got != 6 {
		t.Fatalf("count = %d, want 6", got)
	}
}

func TestStopIsClean(t *testing.T) {
	h := start(t, actors.KindOptions{}, supervisor.GrainOptions{})
	for i := range 20 {
		h.count(t, fmt.Sprintf("s-%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := h.node.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stop with 20 active grains took %s", time.Since(began))
	if _, err := h.ask("s-1", &actorpb.ToyRequest{Op: actorpb.ToyRequest_OP_COUNT}, time.Second); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("ask after stop = %v, want ErrUnavailable", err)
	}
}

func BenchmarkAsk(b *testing.B) {
	h := start(b, actors.KindOptions{}, supervisor.GrainOptions{})
	ping := &actorpb.Ping{Payload: "x"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := h.node.Ask(ctx, "bench", toyKind, ping); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.node.Ask(ctx, "bench", toyKind, ping); err != nil {
			b.Fatal(err)
		}
	}
}
