// These tests drive a real Proto.Actor cluster. The library has data races of its own in cluster code, so
// this package is listed in the Makefile's NORACE_PKGS and runs without -race.
package cluster_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/cluster"
)

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// echoKind answers Ping with Pong and ErrorReply-encoded application errors for Ping "fail".
func echoKind() *pcluster.Kind {
	return pcluster.NewKind("echo", actor.PropsFromFunc(func(c actor.Context) {
		if p, ok := c.Message().(*actorpb.Ping); ok {
			if p.GetPayload() == "fail" {
				c.Respond(cluster.ReplyFromError(&cluster.GrainError{Code: "nope", Message: "refused"}))
				return
			}
			c.Respond(&actorpb.Pong{Payload: p.GetPayload(), Identity: pcluster.GetClusterIdentity(c).GetIdentity()})
		}
	}))
}

func startNode(t *testing.T, cfg cluster.Config) *cluster.Node {
	t.Helper()
	cfg.Logger = quiet()
	began := time.Now()
	n, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("node %s started in %s", n.Address(), time.Since(began))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return n
}

func TestStartOnFreePortAndAsk(t *testing.T) {
	n := startNode(t, cluster.Config{Kinds: []*pcluster.Kind{echoKind()}})
	if !strings.HasPrefix(n.Address(), "127.0.0.1:") || strings.HasSuffix(n.Address(), ":0") {
		t.Fatalf("address = %q, want 127.0.0.1 and a real port", n.Address())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reply, err := n.Ask(ctx, "x", "echo", &actorpb.Ping{Payload: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if pong := reply.(*actorpb.Pong); pong.GetPayload() != "hello" || pong.GetIdentity() != "x" {
		t.Fatalf("reply = %v", pong)
	}
	_, err = n.Ask(ctx, "x", "echo", &actorpb.Ping{Payload: "fail"})
	var ge *cluster.GrainError
	if !errors.As(err, &ge) || ge.Code != "nope" {
		t.Fatalf("err = %v, want GrainError nope", err)
	}
}

func TestUnknownKindIsUnavailableAtOnce(t *testing.T) {
	n := startNode(t, cluster.Config{Kinds: []*pcluster.Kind{echoKind()}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	_, err := n.Ask(ctx, "x", "nobody-hosts-this", &actorpb.Ping{})
	if !errors.Is(err, cluster.ErrUnavailable) || !cluster.Retryable(err) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if time.Since(began) > 100*time.Millisecond {
		t.Fatalf("took %s", time.Since(began))
	}
	if err := n.Tell(ctx, "x", "nobody-hosts-this", &actorpb.Ping{}); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("tell err = %v, want ErrUnavailable", err)
	}
}

// TestDeadlineHonouredDuringLookup places a kind on a member that accepts TCP but never speaks gRPC, so
// activation never answers: the library's own lookup would block for 5 s.
func TestDeadlineHonouredDuringLookup(t *testing.T) {
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		for {
			conn, err := hole.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	n := startNode(t, cluster.Config{Kinds: []*pcluster.Kind{echoKind()}})
	holeAddr := hole.Addr().(*net.TCPAddr)
	self, err := net.ResolveTCPAddr("tcp", n.Address())
	if err != nil {
		t.Fatal(err)
	}
	n.Cluster().MemberList.UpdateClusterTopology([]*pcluster.Member{
		{Id: n.ID(), Host: self.IP.String(), Port: int32(self.Port), Kinds: []string{"echo"}},
		{Id: "black-hole", Host: holeAddr.IP.String(), Port: int32(holeAddr.Port), Kinds: []string{"ghost"}},
	})

	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	began := time.Now()
	_, err = n.Ask(ctx, "x", "ghost", &actorpb.Ping{})
	elapsed := time.Since(began)
	if !errors.Is(err, cluster.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if elapsed > deadline+50*time.Millisecond {
		t.Fatalf("lookup returned after %s, deadline %s", elapsed, deadline)
	}
	t.Logf("lookup: returned after %s for a %s deadline", elapsed, deadline)

	tctx, tcancel := context.WithTimeout(context.Background(), deadline)
	defer tcancel()
	began = time.Now()
	if err := n.Tell(tctx, "y", "ghost", &actorpb.Ping{}); !errors.Is(err, cluster.ErrTimeout) {
		t.Fatalf("tell err = %v, want ErrTimeout", err)
	}
	if elapsed := time.Since(began); elapsed > deadline+50*time.Millisecond {
		t.Fatalf("tell returned after %s", elapsed)
	}
}

func TestCancelIsNotATimeout(t *testing.T) {
	n := startNode(t, cluster.Config{Kinds: []*pcluster.Kind{echoKind()}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := n.Ask(ctx, "x", "echo", &actorpb.Ping{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, cluster.ErrTimeout) || cluster.Retryable(err) {
		t.Fatalf("err = %v, want context.Canceled only", err)
	}
}

func TestStartFailsCleanlyOnBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = cluster.Start(context.Background(), cluster.Config{
		Port: busy.Addr().(*net.TCPAddr).Port, Kinds: []*pcluster.Kind{echoKind()}, Logger: quiet(),
	})
	if err == nil {
		t.Fatal("start on a busy port succeeded")
	}
}

func TestStopTwiceAndAskAfterStop(t *testing.T) {
	n, err := cluster.Start(context.Background(), cluster.Config{Kinds: []*pcluster.Kind{echoKind()}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Ask(ctx, "x", "echo", &actorpb.Ping{}); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := n.Ask(ctx, "x", "echo", &actorpb.Ping{}); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("ask after stop = %v, want ErrUnavailable", err)
	}
}
