package cluster

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
)

// lookup resolves an identity to its activation's PID within the caller's deadline. disthash's own Get
// asks the owner's placement actor with a fixed 5 s timeout whatever the caller's deadline, so we send the
// same ActivationRequest ourselves, to the owner chosen by the same rendezvous hash over the same topology
// events, and wait no longer than the caller allows. Placement and activation stay disthash's.
type lookup struct {
	system *actor.ActorSystem
	cache  *pcluster.PidCacheValue
	rdv    atomic.Pointer[pcluster.Rendezvous]
	sub    *eventstream.Subscription
}

func newLookup(c *pcluster.Cluster) *lookup {
	l := &lookup{system: c.ActorSystem, cache: c.PidCache}
	l.sub = c.ActorSystem.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*pcluster.ClusterTopology); ok {
			r := pcluster.NewRendezvous()
			r.UpdateMembers(t.Members)
			l.rdv.Store(r)
		}
	})
	return l
}

func (l *lookup) close() {
	l.system.EventStream.Unsubscribe(l.sub)
}

func (l *lookup) pid(ctx context.Context, identity, kind string) (*actor.PID, error) {
	if pid, ok := l.cache.Get(identity, kind); ok {
		return pid, nil
	}
	ci := pcluster.NewClusterIdentity(identity, kind)
	r := l.rdv.Load()
	if r == nil {
		return nil, &UnavailableError{Reason: "no cluster topology yet"}
	}
	owner := r.GetByClusterIdentity(ci)
	if owner == "" {
		return nil, &UnavailableError{Reason: fmt.Sprintf("no member hosts kind %q", kind)}
	}
	reply, err := request(ctx, l.system, actor.NewPID(owner, disthash.PartitionActivatorActorName),
		&pcluster.ActivationRequest{ClusterIdentity: ci})
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
