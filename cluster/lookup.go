package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
)

// lookup resolves an identity to its activation's PID within the caller's deadline. disthash's own Get
// asks the owner's placement actor with a fixed 5 s timeout whatever the caller's deadline, so we send the
// same ActivationRequest ourselves, to the owner chosen by the same rendezvous hash over the same topology
// events, and wait no longer than the caller allows. Activation stays disthash's; the owner is the one
// of the grain placement names, when it names another. disthash's placement actor, at a topology change,
// stops the activations its own hash would place elsewhere: such a grain is activated again where we
// place it at its next message, its state being in the store.
type lookup struct {
	system    *actor.ActorSystem
	cache     *pcluster.PidCacheValue
	rdv       atomic.Pointer[pcluster.Rendezvous]
	sub       *eventstream.Subscription
	placement func(kind, identity string) (string, string)

	// departures are closed when their member leaves the topology, so requests waiting on a member that
	// died fail when the cluster notices instead of at their deadline.
	mu         sync.Mutex
	members    map[string]bool
	departures map[string]chan struct{}
}

func newLookup(c *pcluster.Cluster, placement func(kind, identity string) (string, string)) *lookup {
	l := &lookup{system: c.ActorSystem, cache: c.PidCache, placement: placement, departures: map[string]chan struct{}{}}
	l.sub = c.ActorSystem.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*pcluster.ClusterTopology); ok {
			r := pcluster.NewRendezvous()
			r.UpdateMembers(t.Members)
			l.rdv.Store(r)
			l.updateMembers(t.Members)
		}
	})
	return l
}

func (l *lookup) updateMembers(members []*pcluster.Member) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.members = make(map[string]bool, len(members))
	for _, m := range members {
		l.members[m.Address()] = true
	}
	for addr, ch := range l.departures {
		if !l.members[addr] {
			close(ch)
			delete(l.departures, addr)
		}
	}
}

// departed returns a channel closed once the member at address is not part of the topology; a local
// address never departs.
func (l *lookup) departed(address string) <-chan struct{} {
	if address == l.system.Address() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.members != nil && !l.members[address] {
		gone := make(chan struct{})
		close(gone)
		return gone
	}
	ch, ok := l.departures[address]
	if !ok {
		ch = make(chan struct{})
		l.departures[address] = ch
	}
	return ch
}

func (l *lookup) close() {
	l.system.EventStream.Unsubscribe(l.sub)
}

// pid returns the PID of the grain's activation on its owner under the current topology. A cached PID
// on another member (the topology changed since) is not used: its activation is left to passivate,
// and the owner activates the grain, so that a grain and those placed with it stay on one member.
func (l *lookup) pid(ctx context.Context, identity, kind string) (*actor.PID, error) {
	ci := pcluster.NewClusterIdentity(identity, kind)
	r := l.rdv.Load()
	if r == nil {
		return nil, &UnavailableError{Reason: "no cluster topology yet"}
	}
	placed := ci
	if l.placement != nil {
		withKind, withIdentity := l.placement(kind, identity)
		placed = pcluster.NewClusterIdentity(withIdentity, withKind)
	}
	owner := r.GetByClusterIdentity(placed)
	if owner == "" {
		return nil, &UnavailableError{Reason: fmt.Sprintf("no member hosts kind %q", kind)}
	}
	if pid, ok := l.cache.Get(identity, kind); ok {
		if pid.Address == owner {
			return pid, nil
		}
		l.cache.RemoveByValue(identity, kind, pid)
	}
	reply, err := request(ctx, l.system, actor.NewPID(owner, disthash.PartitionActivatorActorName),
		&pcluster.ActivationRequest{ClusterIdentity: ci}, l.departed(owner))
	if err != nil {
		return nil, fmt.Errorf("activate %s/%s on %s: %w", kind, identity, owner, err)
	}
	resp, ok := reply.(*pcluster.ActivationResponse)
	if !ok || resp.GetPid() == nil || resp.GetFailed() {
		return nil, &UnavailableError{Reason: fmt.Sprintf("activation of %s/%s refused by %s", kind, identity, owner)}
	}
	l.cache.Set(identity, kind, resp.GetPid())
	return resp.GetPid(), nil
}

// forget drops a cached PID that turned out dead, so the next lookup asks the placement actor again.
func (l *lookup) forget(identity, kind string, pid *actor.PID) {
	l.cache.RemoveByValue(identity, kind, pid)
}
