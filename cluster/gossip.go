package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// Gossip configures membership over hashicorp/memberlist. A Node with a zero Gossip (no Bind) is a
// cluster of one.
type Gossip struct {
	// Bind is the host:port memberlist listens on (UDP and TCP).
	Bind string
	// Advertise is the host:port other members reach Bind at; default Bind.
	Advertise string
	// Seeds are gossip addresses of members to join. None reachable, the node starts alone and keeps
	// trying, so members can start in any order.
	Seeds []string
	// ProbeInterval is how often a member probes another; default 1 s. Failure detection takes about
	// ProbeInterval × (1 + SuspicionMult).
	ProbeInterval time.Duration
	// SuspicionMult scales how long a suspected member has to refute before it is declared dead; default 4.
	SuspicionMult int
	// SecretKey (16, 24 or 32 bytes) encrypts and authenticates gossip; members without it are ignored.
	SecretKey []byte
	// RejoinInterval is how often a member that knows no other tries the seeds again; default 2 s.
	RejoinInterval time.Duration
}

func (g Gossip) withDefaults() Gossip {
	if g.Advertise == "" {
		g.Advertise = g.Bind
	}
	if g.ProbeInterval <= 0 {
		g.ProbeInterval = time.Second
	}
	if g.SuspicionMult <= 0 {
		g.SuspicionMult = 4
	}
	if g.RejoinInterval <= 0 {
		g.RejoinInterval = 2 * time.Second
	}
	return g
}

// SuspicionTimeout is the shortest time after which the other members may declare a silent member dead,
// memberlist's formula for a cluster of up to ten members. A process that was paused longer than this
// must assume its activations were taken over (see Watchdog).
func (g Gossip) SuspicionTimeout() time.Duration {
	g = g.withDefaults()
	return time.Duration(g.SuspicionMult) * g.ProbeInterval
}

// memberMeta is what each member gossips about itself: enough for Proto.Actor to place grains on it.
type memberMeta struct {
	ID    string   `json:"id"`
	Host  string   `json:"host"`
	Port  int32    `json:"port"`
	Kinds []string `json:"kinds"`
}

// gossipMembership is the membership source of a multi-member cluster. memberlist's node name is the
// actor system id, which is new at every process start: a member that was declared dead can only come
// back as a new member, which is what Proto.Actor's block list of departed ids requires.
type gossipMembership struct {
	cfg    Gossip
	logger *slog.Logger
	// declaredDead is called when the others had declared this member dead
	// (it refutes, and memberlist would keep it). Proto.Actor blocks a dead
	// member's id for good, so it could never host grains again: it must
	// come back as a new member.
	declaredDead func()

	list   *memberlist.Memberlist
	events chan memberlist.NodeEvent
	done   chan struct{}
	wg     sync.WaitGroup
	meta   []byte
}

func newGossipMembership(cfg Gossip, logger *slog.Logger, declaredDead func()) *gossipMembership {
	return &gossipMembership{cfg: cfg.withDefaults(), logger: logger, declaredDead: declaredDead,
		events: make(chan memberlist.NodeEvent, 256), done: make(chan struct{})}
}

func (g *gossipMembership) join(self *pcluster.Member, updates chan<- []*pcluster.Member) error {
	meta, err := json.Marshal(memberMeta{ID: self.Id, Host: self.Host, Port: self.Port, Kinds: self.Kinds})
	if err != nil {
		return fmt.Errorf("encode member meta: %w", err)
	}
	if len(meta) > memberlist.MetaMaxSize {
		return fmt.Errorf("member meta is %d bytes, memberlist allows %d", len(meta), memberlist.MetaMaxSize)
	}
	g.meta = meta

	mc, err := g.memberlistConfig(self.Id)
	if err != nil {
		return err
	}
	list, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", g.cfg.Bind, err)
	}
	g.list = list
	// Join before the first snapshot: a member that published itself alone
	// first would place every grain on itself until the join completed.
	g.tryJoin()
	g.wg.Add(1)
	go g.watch(updates)
	if len(g.seeds()) > 0 {
		g.wg.Add(1)
		go g.rejoin()
	}
	return nil
}

func (g *gossipMembership) memberlistConfig(name string) (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	host, port, err := splitHostPort(g.cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip bind address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	host, port, err = splitHostPort(g.cfg.Advertise)
	if err != nil {
		return nil, fmt.Errorf("gossip advertise address: %w", err)
	}
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.ProbeInterval = g.cfg.ProbeInterval
	// memberlist requires the probe's timeout to be shorter than its interval.
	mc.ProbeTimeout = min(mc.ProbeTimeout, g.cfg.ProbeInterval/2)
	mc.SuspicionMult = g.cfg.SuspicionMult
	// A seed that does not answer holds the start up this long; the LAN
	// default of 10 s is made for exchanging large states.
	mc.TCPTimeout = 3 * time.Second
	if len(g.cfg.SecretKey) > 0 {
		mc.SecretKey = g.cfg.SecretKey
	}
	mc.Delegate = metaDelegate{meta: g.meta}
	mc.Events = &memberlist.ChannelEventDelegate{Ch: g.events}
	mc.LogOutput = logWriter{logger: g.logger, refuted: g.declaredDead}
	return mc, nil
}

// seeds are the configured seeds other than this member.
func (g *gossipMembership) seeds() []string {
	var out []string
	for _, s := range g.cfg.Seeds {
		if s != g.cfg.Advertise && s != g.cfg.Bind {
			out = append(out, s)
		}
	}
	return out
}

func (g *gossipMembership) tryJoin() {
	seeds := g.seeds()
	if len(seeds) == 0 {
		return
	}
	if n, err := g.list.Join(seeds); err != nil {
		g.logger.Info("cluster: no seed answered yet; running alone until one does", slog.Any("seeds", seeds), slog.Any("error", err))
	} else {
		g.logger.Info("cluster: joined", slog.Int("contacted", n))
	}
}

// rejoin tries the seeds again whenever this member knows no other: at a start before any seed was up,
// or after every other member was declared dead (a partition), which memberlist never heals by itself.
func (g *gossipMembership) rejoin() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
			if g.list.NumMembers() < 2 {
				g.tryJoin()
			}
		}
	}
}

// watch turns memberlist's node events into complete snapshots. Events that arrive together are
// coalesced into one snapshot: only the latest membership matters.
func (g *gossipMembership) watch(updates chan<- []*pcluster.Member) {
	defer g.wg.Done()
	publish := func() {
		members := g.snapshot()
		select {
		case updates <- members:
		case <-g.done:
		}
	}
	publish()
	for {
		select {
		case <-g.done:
			return
		case <-g.events:
		drain:
			for {
				select {
				case <-g.events:
				default:
					break drain
				}
			}
			publish()
		}
	}
}

func (g *gossipMembership) snapshot() []*pcluster.Member {
	var out []*pcluster.Member
	for _, n := range g.list.Members() {
		var m memberMeta
		if err := json.Unmarshal(n.Meta, &m); err != nil || m.ID == "" {
			g.logger.Warn("cluster: ignoring a gossip member without valid meta", slog.String("name", n.Name), slog.Any("error", err))
			continue
		}
		out = append(out, &pcluster.Member{Id: m.ID, Host: m.Host, Port: m.Port, Kinds: m.Kinds})
	}
	return out
}

// leave tells the others this member is going, so they drop it at once instead of after the suspicion
// timeout, and stops gossip. A leave nobody acknowledged in time (the last member, or the others going
// too) is no failure: they notice by probing.
func (g *gossipMembership) leave() error {
	if g.list == nil {
		return nil
	}
	if err := g.list.Leave(2 * g.cfg.ProbeInterval); err != nil {
		g.logger.Warn("cluster: leave not acknowledged; the others will find this member gone by probing", slog.Any("error", err))
	}
	close(g.done)
	g.wg.Wait()
	return g.list.Shutdown()
}

// members reports the gossip view with each member's state, for visibility.
func (g *gossipMembership) members() []MemberState {
	var out []MemberState
	for _, n := range g.list.Members() {
		var m memberMeta
		_ = json.Unmarshal(n.Meta, &m)
		out = append(out, MemberState{ID: n.Name, Address: net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))),
			Gossip: n.Address(), State: nodeState(n.State), Kinds: m.Kinds})
	}
	return out
}

func nodeState(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	default:
		return "left"
	}
}

type metaDelegate struct{ meta []byte }

func (d metaDelegate) NodeMeta(int) []byte                  { return d.meta }
func (metaDelegate) NotifyMsg([]byte)                       {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (metaDelegate) LocalState(bool) []byte                 { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, join bool) {}

// logWriter routes memberlist's "[LEVEL] memberlist: …" lines to slog at their level. memberlist tells
// nobody else that it refuted its own death, so refuted is called on the line that says so.
type logWriter struct {
	logger  *slog.Logger
	refuted func()
}

func (w logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	if w.refuted != nil && strings.Contains(line, "Refuting a dead message") {
		defer w.refuted()
	}
	level := slog.LevelDebug
	for prefix, l := range map[string]slog.Level{"[ERR]": slog.LevelError, "[WARN]": slog.LevelWarn, "[INFO]": slog.LevelInfo, "[DEBUG]": slog.LevelDebug} {
		if i := strings.Index(line, prefix); i >= 0 {
			level, line = l, strings.TrimSpace(line[i+len(prefix):])
			break
		}
	}
	w.logger.Log(context.Background(), level, line, slog.String("lib", "memberlist"))
	return len(p), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > math.MaxUint16 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}
