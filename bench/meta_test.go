package bench

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunMeta(t *testing.T) {
	dir := t.TempDir()
	var observed []string
	cfg := MetaConfig{Dir: dir, Workers: 3, Files: 101, Dirs: 7, FileSize: 100,
		Observe: func(phase string) func() {
			observed = append(observed, "start "+phase)
			return func() { observed = append(observed, "end "+phase) }
		}}
	phases, err := RunMeta(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range phases {
		names = append(names, p.Name)
		if p.Ops != 101 {
			t.Errorf("%s: %d ops, want 101", p.Name, p.Ops)
		}
		if p.Elapsed <= 0 || p.P50 <= 0 || p.P99 < p.P50 || p.OpsPerSec() <= 0 {
			t.Errorf("%s: implausible %+v", p.Name, p)
		}
		wantBytes := int64(0)
		if p.Name == MetaCreate || p.Name == MetaRead {
			wantBytes = 101 * 100
		}
		if p.Bytes != wantBytes {
			t.Errorf("%s: %d bytes, want %d", p.Name, p.Bytes, wantBytes)
		}
	}
	if !slices.Equal(names, MetaPhases) {
		t.Errorf("phases %v, want %v", names, MetaPhases)
	}
	var want []string
	for _, p := range MetaPhases {
		want = append(want, "start "+p, "end "+p)
	}
	if !slices.Equal(observed, want) {
		t.Errorf("observed %v", observed)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind %v (%v)", ents, err)
	}
}

func TestRunMetaMoreWorkersThanFiles(t *testing.T) {
	phases, err := RunMeta(context.Background(), MetaConfig{Dir: t.TempDir(), Workers: 8, Files: 3, Dirs: 5, FileSize: 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range phases {
		if p.Ops != 3 {
			t.Errorf("%s: %d ops", p.Name, p.Ops)
		}
	}
}

func TestRunMetaErrors(t *testing.T) {
	ok := MetaConfig{Dir: t.TempDir(), Workers: 1, Files: 1, Dirs: 1, FileSize: 1}
	for name, mod := range map[string]func(*MetaConfig){
		"workers":   func(c *MetaConfig) { c.Workers = 0 },
		"files":     func(c *MetaConfig) { c.Files = 0 },
		"dirs":      func(c *MetaConfig) { c.Dirs = -1 },
		"file size": func(c *MetaConfig) { c.FileSize = -1 },
		"no dir":    func(c *MetaConfig) { c.Dir = "/nonexistent/meta" },
	} {
		c := ok
		mod(&c)
		if _, err := RunMeta(context.Background(), c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	_, err := RunMeta(ctx, MetaConfig{Dir: dir, Workers: 2, Files: 10, Dirs: 2, FileSize: 1})
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("cancelled: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("cancelled run left %v", ents)
	}
}

func TestPercentile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	for _, c := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{{v, 50, 50}, {v, 99, 99}, {v, 100, 100}, {v[:1], 99, 1}, {v[:3], 50, 2}, {nil, 50, 0}} {
		if got := percentile(c.in, c.p); got != c.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(c.in), c.p, got, c.want)
		}
	}
}
