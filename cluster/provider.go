package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// membership is where the member list comes from. A source sends complete snapshots (self included) to
// updates until leave returns; the provider owns ordering and delivery to Proto.Actor, so replacing the
// single-member source with gossip touches only the source.
type membership interface {
	join(self *pcluster.Member, updates chan<- []*pcluster.Member) error
	leave() error
	// members is the source's current view, for visibility.
	members() []MemberState
}

// singleMember is the membership of a one-node cluster: this member, once.
type singleMember struct {
	self atomic.Pointer[pcluster.Member]
}

func (s *singleMember) join(self *pcluster.Member, updates chan<- []*pcluster.Member) error {
	s.self.Store(self)
	updates <- []*pcluster.Member{self}
	return nil
}

func (*singleMember) leave() error { return nil }

func (s *singleMember) members() []MemberState {
	self := s.self.Load()
	if self == nil {
		return nil
	}
	return []MemberState{{ID: self.Id, Address: self.Address(), State: "alive", Kinds: self.Kinds}}
}

// provider is our pcluster.ClusterProvider. One goroutine applies snapshots with
// MemberList.UpdateClusterTopology because the library's member list and identity lookup are not safe
// against concurrent topology updates.
type provider struct {
	source membership
	logger *slog.Logger
	// applied is told the size of every topology applied (metrics); may be nil.
	applied func(members int)
	updates chan []*pcluster.Member
	ready   chan struct{}
	done    chan struct{}
	stopped chan struct{}

	started   atomic.Bool
	readyOnce sync.Once
	stopOnce  sync.Once
}

var _ pcluster.ClusterProvider = (*provider)(nil)

func newProvider(source membership, logger *slog.Logger, applied func(int)) *provider {
	return &provider{
		source:  source,
		logger:  logger,
		applied: applied,
		// One slot lets a source publish before the apply loop is scheduled without blocking StartMember.
		updates: make(chan []*pcluster.Member, 1),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

func (p *provider) StartMember(c *pcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("cluster provider: member address: %w", err)
	}
	self := &pcluster.Member{
		Id:    c.ActorSystem.ID,
		Host:  host,
		Port:  int32(port),
		Kinds: c.GetClusterKinds(),
	}
	p.started.Store(true)
	go p.apply(c.MemberList)
	if err := p.source.join(self, p.updates); err != nil {
		p.stopLoop()
		return fmt.Errorf("cluster provider: join: %w", err)
	}
	return nil
}

func (p *provider) StartClient(*pcluster.Cluster) error {
	return errors.New("cluster provider: client-only nodes are not supported")
}

func (p *provider) Shutdown(bool) error {
	err := p.source.leave()
	p.stopLoop()
	if err != nil {
		return fmt.Errorf("cluster provider: leave: %w", err)
	}
	return nil
}

func (p *provider) apply(ml *pcluster.MemberList) {
	defer close(p.stopped)
	for {
		select {
		case members := <-p.updates:
			ml.UpdateClusterTopology(members)
			p.logger.Debug("cluster topology applied", slog.Int("members", len(members)))
			if p.applied != nil {
				p.applied(len(members))
			}
			p.readyOnce.Do(func() { close(p.ready) })
		case <-p.done:
			return
		}
	}
}

func (p *provider) stopLoop() {
	p.stopOnce.Do(func() { close(p.done) })
	if p.started.Load() {
		<-p.stopped
	}
}
