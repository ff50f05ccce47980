package jbrserver

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/internal/promgroup"
)

type metrics struct {
	group     *promgroup.Group
	proposals prometheus.Counter
	commits   prometheus.Counter
	applied   prometheus.Counter
	latency   prometheus.Histogram
	term      prometheus.Gauge
	role      prometheus.Gauge
	// Linearizable reads on the leader: served under its read lease, or
	// after a heartbeat round with a quorum. Status reports them too, so
	// they are counted here and exported through CounterFuncs.
	leaseReads, roundReads atomic.Uint64
}

// newMetrics creates the server's metrics, labelled with its volume, set
// and brick, and registers them if opts.Metrics is set. A registration
// failure (a duplicate brick) is logged; the metrics then go nowhere.
func newMetrics(opts Options) *metrics {
	labels := prometheus.Labels{"volume": opts.Volume, "set": strconv.Itoa(opts.Set), "brick": strconv.Itoa(opts.Self)}
	m := &metrics{
		proposals: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "jbr", Name: "proposals_total",
			Help: "Mutating requests this brick proposed as leader.", ConstLabels: labels}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "jbr", Name: "commits_total",
			Help: "Requests this brick saw committed.", ConstLabels: labels}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "jbr", Name: "applied_total",
			Help: "Committed requests applied to the local store.", ConstLabels: labels}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "gluon", Subsystem: "jbr", Name: "commit_latency_seconds",
			Help: "Time from a request's arrival at the leader to its commit.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18)}),
		term: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gluon", Subsystem: "jbr", Name: "term",
			Help: "Highest term this brick has seen.", ConstLabels: labels}),
		role: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gluon", Subsystem: "jbr", Name: "role",
			Help: "This brick's role: 0 follower, 1 recovering leader, 2 leader.", ConstLabels: labels}),
	}
	leaseReads := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "jbr", Name: "lease_reads_total",
		Help: "Linearizable reads this leader took on under its read lease, with no message (counted as taken on, failed ones included).", ConstLabels: labels},
		func() float64 { return float64(m.leaseReads.Load()) })
	roundReads := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "jbr", Name: "round_reads_total",
		Help: "Linearizable reads this leader took on holding no read lease, to serve after a heartbeat round with a quorum (failed ones included).", ConstLabels: labels},
		func() float64 { return float64(m.roundReads.Load()) })
	m.group = promgroup.Register(opts.Metrics, opts.Logger, m.proposals, m.commits, m.applied, m.latency, m.term, m.role,
		leaseReads, roundReads)
	return m
}
