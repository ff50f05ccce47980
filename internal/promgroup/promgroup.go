// Package promgroup registers one component's Prometheus collectors as a
// group, so that the component can take them all back when it stops and
// one built again in the same process (a restarted brick, a rebuilt
// client graph) can register its own.
package promgroup

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Group is the collectors Register registered.
type Group struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

// Register registers cs with reg; a nil reg registers nothing. A
// collector that fails to register (one already there) is logged and
// left out: its values then go nowhere, and the component still runs.
func Register(reg prometheus.Registerer, log *slog.Logger, cs ...prometheus.Collector) *Group {
	g := &Group{reg: reg}
	if reg == nil {
		return g
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			log.Warn("metrics not registered", "err", err)
			continue
		}
		g.collectors = append(g.collectors, c)
	}
	return g
}

// Unregister removes what Register registered.
func (g *Group) Unregister() {
	for _, c := range g.collectors {
		g.reg.Unregister(c)
	}
	g.collectors = nil
}
