package cluster

import (
	"context"
	"errors"
	"sync/atomic"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's Prometheus series. Without a registerer they are kept but not exported.
type metrics struct {
	reg        prometheus.Registerer
	size       atomic.Int64 // the members of the topology applied last
	members    prometheus.Gauge
	topologies prometheus.Counter
	failedAsks *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kalcifer_cluster_members",
			Help: "Members in this node's current cluster topology, itself included.",
		}),
		topologies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kalcifer_cluster_rebalances_total",
			Help: "Topology changes applied; each may move grains between members.",
		}),
		failedAsks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kalcifer_cluster_failed_asks_total",
			Help: "Grain requests from this node that failed, by reason: timeout, unavailable, crashed, application, canceled, other.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.members, m.topologies, m.failedAsks)
	}
	return m
}

func (m *metrics) topologyApplied(members int) {
	m.size.Store(int64(members))
	m.members.Set(float64(members))
	m.topologies.Inc()
}

// watchKinds exports the number of active grains of each kind on this node.
func (m *metrics) watchKinds(c *pcluster.Cluster, kinds []*pcluster.Kind) {
	if m.reg == nil {
		return
	}
	for _, k := range kinds {
		name := k.Kind
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "kalcifer_cluster_activations",
			Help:        "Grains active on this node, by kind.",
			ConstLabels: prometheus.Labels{"kind": name},
		}, func() float64 {
			if ak := c.GetClusterKind(name); ak != nil {
				return float64(ak.Count())
			}
			return 0
		}))
	}
}

// askFailed counts a failed request by the reason a caller can act on.
func (m *metrics) askFailed(err error) {
	var grainErr *GrainError
	reason := "other"
	switch {
	case errors.Is(err, ErrTimeout):
		reason = "timeout"
	case errors.Is(err, ErrCrashed):
		reason = "crashed"
	case errors.Is(err, ErrUnavailable):
		reason = "unavailable"
	case errors.As(err, &grainErr):
		reason = "application"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	}
	m.failedAsks.WithLabelValues(reason).Inc()
}
