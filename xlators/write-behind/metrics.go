package writebehind

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/internal/promgroup"
)

type metrics struct {
	group   *promgroup.Group
	behind  prometheus.Counter
	errors  prometheus.Counter
	pending prometheus.Gauge
}

// newMetrics creates the translator's metrics and registers them if reg
// is set. A registration failure (a second graph in one process) is
// logged; the metrics then go nowhere.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		behind: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "write_behind", Name: "writes_total",
			Help: "Writes acknowledged before they reached the bricks."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "gluon", Subsystem: "write_behind", Name: "errors_total",
			Help: "Acknowledged writes that then failed; each is reported on its fd's next write, fsync or close."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "gluon", Subsystem: "write_behind", Name: "pending_bytes",
			Help: "Acknowledged bytes not yet written below."}),
	}
	m.group = promgroup.Register(reg, log.With("xlator", "write-behind"), m.behind, m.errors, m.pending)
	return m
}
