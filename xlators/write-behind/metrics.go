package writebehind

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	behind     prometheus.Counter
	errors     prometheus.Counter
	pending    prometheus.Gauge
}

// newMetrics creates the translator's metrics and registers them if reg
// is set. A registration failure (a second graph in one process) is
// logged; the metrics then go nowhere.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		reg: reg,
		behind: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "write_behind", Name: "writes_total",
			Help: "Writes acknowledged before they reached the bricks."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "write_behind", Name: "errors_total",
			Help: "Acknowledged writes that then failed; each is reported on its fd's next write, fsync or close."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gluon", Subsystem: "write_behind", Name: "pending_bytes",
			Help: "Acknowledged bytes not yet written below."}),
	}
	if reg == nil {
		return m
	}
	for _, c := range []prometheus.Collector{m.behind, m.errors, m.pending} {
		if err := reg.Register(c); err != nil {
			log.Warn("write-behind: metrics not registered", "err", err)
			continue
		}
		m.collectors = append(m.collectors, c)
	}
	return m
}

// unregister removes the metrics, so that a graph built again in the same
// process can register its own.
func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
