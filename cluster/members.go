package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors/actorpb"
)

// memberActorName is the actor every member runs to report what it hosts and to take broadcasts.
const memberActorName = "kalcifer-member"

// MemberState is one member as this node sees it.
type MemberState struct {
	// ID is the member's actor system id, new at every process start.
	ID string `json:"id"`
	// Address is the member's gRPC address.
	Address string `json:"address"`
	// Gossip is the member's memberlist address; empty on a single node.
	Gossip string `json:"gossip,omitempty"`
	// State is the gossip state: alive, suspect, dead or left.
	State string   `json:"state"`
	Kinds []string `json:"kinds"`
	// Self marks the member that answered.
	Self bool `json:"self"`
	// Activations are the member's active grains by kind, as the member reported them; nil when it did
	// not answer (Error says why).
	Activations map[string]int64 `json:"activations"`
	StartedAt   *time.Time       `json:"started_at,omitempty"`
	Error       string           `json:"error,omitempty"`
}

// Members returns the gossip view of the cluster with each member's own count of its grains, asked of
// every member in parallel within ctx.
func (n *Node) Members(ctx context.Context) []MemberState {
	members := n.source.members()
	for i := range members {
		members[i].Self = members[i].ID == n.system.ID
	}
	n.askMembers(ctx, members, &actorpb.MemberStatsRequest{}, func(m *MemberState, reply any, err error) {
		stats, ok := reply.(*actorpb.MemberStats)
		switch {
		case err != nil:
			m.Error = err.Error()
		case !ok:
			m.Error = "unexpected reply"
		default:
			m.Activations = stats.GetActivations()
			started := time.UnixMilli(stats.GetStartedAtMs()).UTC()
			m.StartedAt = &started
		}
	})
	return members
}

// Broadcast delivers msg to every other alive member's OnBroadcast and returns once all have handled it,
// or with the members that did not within ctx.
func (n *Node) Broadcast(ctx context.Context, msg proto.Message) error {
	others := slices.DeleteFunc(n.source.members(), func(m MemberState) bool { return m.ID == n.system.ID })
	var errs []error
	n.askMembers(ctx, others, msg, func(m *MemberState, _ any, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("broadcast to %s: %w", m.Address, err))
		}
	})
	return errors.Join(errs...)
}

// askMembers sends msg to the member actor of each alive or suspect member in parallel, within ctx, and
// hands each reply to answer, one at a time.
func (n *Node) askMembers(ctx context.Context, members []MemberState, msg proto.Message, answer func(m *MemberState, reply any, err error)) {
	ctx, cancel := n.bound(ctx)
	defer cancel()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for i := range members {
		m := &members[i]
		if m.State != "alive" && m.State != "suspect" {
			continue
		}
		wg.Go(func() {
			reply, err := request(ctx, n.system, actor.NewPID(m.Address, memberActorName), msg, n.lookup.departed(m.Address))
			mu.Lock()
			defer mu.Unlock()
			answer(m, reply, err)
		})
	}
	wg.Wait()
}

// answerMember is the member actor's behaviour: stats on request, any other request to OnBroadcast.
// Messages without a sender are the actor's own lifecycle.
func (n *Node) answerMember(ctx actor.Context) {
	if ctx.Sender() == nil {
		return
	}
	switch msg := ctx.Message().(type) {
	case *actorpb.MemberStatsRequest:
		n.answerStats(ctx)
	case proto.Message:
		if n.cfg.OnBroadcast != nil {
			n.cfg.OnBroadcast(msg)
		}
		ctx.Respond(&actorpb.BroadcastAck{})
	}
}

func (n *Node) answerStats(ctx actor.Context) {
	counts := map[string]int64{}
	for _, k := range n.cfg.Kinds {
		if ak := n.cluster.GetClusterKind(k.Kind); ak != nil {
			counts[k.Kind] = int64(ak.Count())
		}
	}
	ctx.Respond(&actorpb.MemberStats{Id: n.system.ID, Activations: counts, StartedAtMs: n.startAt.UnixMilli()})
}
