package jbrserver

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metric reads a counter or gauge of one brick, and how many bricks
// report name.
func metric(t *testing.T, reg *prometheus.Registry, name, brick string) (v float64, bricks int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			bricks++
			for _, l := range m.GetLabel() {
				if l.GetName() == "brick" && l.GetValue() == brick {
					v = m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return v, bricks
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCluster(t, 3, Options{Metrics: reg})
	c.elect(0, 5)
	cl := newCaller()
	fd := create(t, c.n[0].srv, cl, "f", 0)
	write(t, c.n[0].srv, cl, fd, "x", 0)
	c.converged(0)
	if _, e := readString(t, c.n[0].srv, cl, fd); e != 0 {
		t.Fatal(e)
	}
	lease, _ := metric(t, reg, "gluon_jbr_lease_reads_total", "0")
	round, _ := metric(t, reg, "gluon_jbr_round_reads_total", "0")
	if lease+round != 1 {
		t.Errorf("%v reads under the lease and %v after a round, want 1 in all", lease, round)
	}
	for _, m := range []struct {
		name, brick string
		want        float64
	}{
		{"gluon_jbr_proposals_total", "0", 2},
		{"gluon_jbr_commit_latency_seconds", "0", 2},
		{"gluon_jbr_role", "0", 2},
		{"gluon_jbr_role", "1", 0},
		{"gluon_jbr_term", "1", 5},
		{"gluon_jbr_commits_total", "2", 2},
		{"gluon_jbr_applied_total", "2", 2},
	} {
		if got, n := metric(t, reg, m.name, m.brick); got != m.want || n != 3 {
			t.Errorf("%s{brick=%s} = %v from %d bricks, want %v from 3", m.name, m.brick, got, n, m.want)
		}
	}
	// A brick restarted in the same process registers again.
	c.stop(1)
	c.start(1, nil)
	if _, n := metric(t, reg, "gluon_jbr_term", "1"); n != 3 {
		t.Errorf("%d term gauges after a restart, want 3", n)
	}
}
