package volfile

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/xlators/dht2"
)

// dht2Graph is cluster/dht2 over two posix stores, with extra options.
func dht2Graph(t *testing.T, opts string) *Graph {
	t.Helper()
	return parse(t, fmt.Sprintf(`
volume s0
    type storage/posix
    option directory %s
end-volume
volume s1
    type storage/posix
    option directory %s
end-volume
volume v-dht2
    type cluster/dht2
    option volume v
%s    subvolumes s0 s1
end-volume
`, t.TempDir(), t.TempDir(), opts))
}

func TestDHT2ScrubsInBackground(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := Env{Logger: slog.New(slog.DiscardHandler), Etcd: cli}
	g := dht2Graph(t, "    option scrub-interval 1s\n    option scrub-grace 1s\n")
	_, closeAll, err := Build(ctx, g, DefaultRegistry(env))
	if err != nil {
		t.Fatal(err)
	}
	// The graph's client claims and runs the volume's scrub by itself,
	// and records it.
	for {
		r, err := cli.Get(ctx, dht2.ScrubKey("v")+"/last")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Closing the graph stops the loop (goleak checks).
	if err := closeAll(); err != nil {
		t.Fatal(err)
	}
}

func TestDHT2BadScrubOptions(t *testing.T) {
	cli := etcdtest.Start(t)
	env := Env{Logger: slog.New(slog.DiscardHandler), Etcd: cli}
	for _, o := range []string{"scrub-interval soon", "scrub-grace -1s", "scrub-grace 0"} {
		g := dht2Graph(t, "    option "+o+"\n")
		_, _, err := Build(context.Background(), g, DefaultRegistry(env))
		if err == nil || !strings.Contains(err.Error(), strings.Fields(o)[0]) {
			t.Errorf("option %s: %v, want an error naming the option", o, err)
		}
	}
}
