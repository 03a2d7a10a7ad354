package outbox

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	deliveries  *prometheus.CounterVec
	deferred    *prometheus.CounterVec
	unsure      *prometheus.CounterVec
	sendSeconds *prometheus.HistogramVec
	latency     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kalcifer_deliveries_total",
			Help: "Deliveries decided, by channel, provider account and final status."}, []string{"channel", "provider", "status"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kalcifer_deliveries_deferred_total",
			Help: "Deliveries put off, by reason: a retry's backoff (the provider's error code), quiet_hours, throttled, circuit_open."},
			[]string{"reason"}),
		unsure: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kalcifer_deliveries_outcome_unknown_total",
			Help: "Sends whose outcome is unknown (a crash or cut connection mid-send) through providers without idempotency keys: failed, not resent."},
			[]string{"kind"}),
		sendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kalcifer_delivery_send_seconds",
			Help: "Time a provider took to answer a send.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, []string{"kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kalcifer_delivery_latency_seconds",
			Help: "Time from the commit of a delivery to its send.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 20)}, []string{"channel"}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.deferred, m.unsure, m.sendSeconds, m.latency)
	}
	return m
}
