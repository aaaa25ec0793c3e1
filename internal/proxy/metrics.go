package proxy

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	Tunnels      prometheus.Gauge
	Sessions     prometheus.Gauge
	DialSeconds  prometheus.Histogram
	AuthFailures prometheus.Counter
	// DataConns counts node connections by how they were made: "direct"
	// (the node dialed back, no re-encryption) or "tunnel".
	DataConns *prometheus.CounterVec
	// LockCuts counts relayed connections the proxy cut because a lock
	// matched them.
	LockCuts prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Tunnels: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_proxy_tunnels_connected",
			Help: "Node reverse tunnels currently connected to this proxy."}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_proxy_sessions_active",
			Help: "User connections currently forwarded to nodes."}),
		DialSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warden_proxy_dial_seconds",
			Help: "Time to open a connection to a node through its tunnel.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		AuthFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_proxy_auth_failures_total",
			Help: "SSH authentications refused by the proxy."}),
		DataConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_proxy_node_connections_total",
			Help: "User connections to nodes, by path: direct (node dialed back) or tunnel (channel on the node's tunnel)."}, []string{"path"}),
		LockCuts: prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_proxy_lock_disconnects_total",
			Help: "Relayed connections the proxy cut because a new lock matched them (their node had not ended them within the lock grace)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Tunnels, m.Sessions, m.DialSeconds, m.AuthFailures, m.DataConns, m.LockCuts)
	}
	return m
}
