package brick

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// The leader's daemon scrubs its set every recon.scrub-interval: a
// follower's file damaged behind gluon's back is found and repaired
// from the leader, and the leader's brick counts both on its registry.
func TestBackgroundScrub(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	e.createReplica(t, "sv", 3, map[string]string{volume.OptLeaseTTL: "2", volume.OptScrubInterval: "1s"}, dirs...)
	if err := e.store.SetState(ctx, "sv", volume.StateStarted); err != nil {
		t.Fatal(err)
	}
	regs := make([]*prometheus.Registry, 3)
	for i := range regs {
		regs[i] = prometheus.NewRegistry()
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.err = Run(rctx, Config{Etcd: e.etcd, Volume: "sv", Index: i, Listen: "127.0.0.1:0", Logger: quiet(), LeaseTTL: 2 * time.Second, Metrics: regs[i]})
		}()
		t.Cleanup(func() {
			if err := r.stop(t); err != nil {
				t.Errorf("brick %d: %v", i, err)
			}
		})
	}

	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vol, err := client.Open(octx, e.cli, "sv", client.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	id, seq := xl.NewGFID(), uint64(0)
	call := func() context.Context {
		seq++
		return xl.WithCall(octx, &xl.Call{Client: id, Seq: seq})
	}
	fd, _, errno := vol.Top.Create(call(), xl.RootGFID, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
	if errno != 0 {
		t.Fatalf("Create: %v", errno)
	}
	data := []byte(strings.Repeat("scrub me\n", 1000))
	if n, errno := vol.Top.Write(call(), fd, data, 0); errno != 0 || n != len(data) {
		t.Fatalf("Write = %d, %v", n, errno)
	}
	vol.Top.Release(call(), fd)
	eventually(t, "the write to reach every brick", func() bool { return sameOn(dirs, "f", data) })

	st, err := client.Status(octx, e.cli, "sv")
	if err != nil {
		t.Fatal(err)
	}
	leader := st.Sets[0].Leader
	victim := (leader + 1) % 3
	fh, err := os.OpenFile(filepath.Join(dirs[victim], "f"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("#"), 500); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	eventually(t, "the scrub to repair the damaged copy and count it", func() bool {
		m := metricsOf(t, regs[leader])
		return sameOn(dirs, "f", data) && m["gluon_recon_scrub_found_total"] == 1 && m["gluon_recon_scrub_repaired_total"] == 1
	})
	if f := metricsOf(t, regs[victim]); f["gluon_recon_scrub_rounds_total"] != 0 {
		t.Errorf("a follower scrubbed: %v", f)
	}
}

func metricsOf(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "gluon_recon_") {
			out[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if len(out) != 4 {
		t.Fatalf("recon metrics registered: %v, want 4", out)
	}
	return out
}
