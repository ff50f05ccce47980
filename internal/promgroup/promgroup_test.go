package promgroup

import (
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
}

func names(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}

// A second component with the same metrics registers none of them and
// does not take the first's away; once the first unregisters, a third
// registers them again.
func TestGroup(t *testing.T) {
	reg := prometheus.NewRegistry()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	first := Register(reg, quiet, counter("a"), counter("b"))
	first.collectors[0].(prometheus.Counter).Inc()
	first.collectors[1].(prometheus.Counter).Inc()
	second := Register(reg, quiet, counter("a"), counter("b"))
	second.Unregister()
	if got := names(t, reg); !got["a"] || !got["b"] {
		t.Fatalf("after a failed second registration: %v, want a and b", got)
	}
	first.Unregister()
	if got := names(t, reg); len(got) != 0 {
		t.Fatalf("after Unregister: %v, want none", got)
	}
	third := Register(reg, quiet, counter("a"))
	third.collectors[0].(prometheus.Counter).Inc()
	if got := names(t, reg); !got["a"] {
		t.Fatalf("registering again: %v, want a", got)
	}
	Register(nil, quiet, counter("c")).Unregister() // no registry: nothing to do
}
