package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gluon-fs/gluon/internal/etcdtest"
)

// Bad arguments to the distribution commands exit 2 with one line,
// before any etcd is contacted.
func TestDistributeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"volume", "add-brick"},
		{"volume", "add-brick", "v0"},
		{"volume", "add-brick", "bad/name", "h:/b"},
		{"volume", "add-brick", "v0", "h:relative"},
		{"volume", "rebalance"},
		{"volume", "rebalance", "v0"},
		{"volume", "rebalance", "v0", "go"},
		{"volume", "rebalance", "v0", "start", "now"},
		{"volume", "rebalance", "bad/name", "status"},
		{"volume", "remove-brick", "v0"},
		{"volume", "remove-brick", "v0", "h:/b"},
		{"volume", "remove-brick", "v0", "start"},
		{"volume", "remove-brick", "v0", "h:/b", "force"},
		{"volume", "remove-brick", "v0", "h:b", "commit"},
		{"up", "--distribute", "0"},
		{"up", "--distribute", "2", "--bricks", "4"},
	} {
		code, out, errs := gluonMain(append(args, "--etcd", "127.0.0.1:1")...)
		if code != exitUsage || out != "" || !strings.HasPrefix(errs, "gluon: ") || strings.Count(errs, "\n") != 1 {
			t.Errorf("gluon %q: exit %d, stdout %q, stderr %q; want exit %d and one gluon: line", args, code, out, errs, exitUsage)
		}
	}
}

func TestDistributeCLI(t *testing.T) {
	etcd := etcdtest.Start(t).Endpoints()[0]
	run := func(want int, args ...string) string {
		t.Helper()
		code, out, errs := gluonMain(append(args, "--etcd", etcd, "--log-level", "error")...)
		if code != want {
			t.Fatalf("gluon %q: exit %d, want %d; stdout %q, stderr %q", args, code, want, out, errs)
		}
		if want != 0 {
			return errs
		}
		return out
	}
	var bricks []string
	for i := range 12 {
		bricks = append(bricks, fmt.Sprintf("h%d:/d/b%d", i%3, i))
	}
	run(0, append([]string{"volume", "create", "dv", "replica", "3"}, bricks[:9]...)...)
	out := run(0, "volume", "info", "dv")
	for _, want := range []string{
		"Type: Distributed-Replicate", "Number of Bricks: 3 x 3 = 9", "Brick8: h2:/d/b8 (set 2)",
		"Layout: version 1, 65536 tokens (set 0: 21846, set 1: 21845, set 2: 21845)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}

	if errs := run(1, "volume", "add-brick", "dv", bricks[9], bricks[10]); !strings.Contains(errs, "not a multiple of replica count 3") {
		t.Errorf("add-brick of 2: %q", errs)
	}
	if errs := run(1, "volume", "add-brick", "dv", bricks[9], bricks[10], bricks[0]); !strings.Contains(errs, "listed twice") {
		t.Errorf("add-brick of a brick in use: %q", errs)
	}
	if out := run(0, "volume", "add-brick", "dv", bricks[9], bricks[10], bricks[11]); !strings.Contains(out, "4 replica sets") {
		t.Errorf("add-brick: %q", out)
	}
	if out := run(0, "volume", "info", "dv"); !strings.Contains(out, "4 x 3 = 12") || !strings.Contains(out, "set 3: 0)") {
		t.Errorf("info after add-brick:\n%s", out)
	}
	if errs := run(1, "volume", "rebalance", "dv", "status"); !strings.Contains(errs, "no rebalance started") {
		t.Errorf("status before start: %q", errs)
	}
	if errs := run(1, "volume", "rebalance", "dv", "stop"); !strings.Contains(errs, "no rebalance in progress") {
		t.Errorf("stop before start: %q", errs)
	}
	if errs := run(1, "volume", "rebalance", "nosuch", "status"); !strings.Contains(errs, "nosuch does not exist") {
		t.Errorf("status of a missing volume: %q", errs)
	}
	if errs := run(1, "volume", "remove-brick", "dv", bricks[3], bricks[4], bricks[5], "start"); !strings.Contains(errs, "only the last replica set (3)") {
		t.Errorf("remove-brick of a middle set: %q", errs)
	}
	if errs := run(1, "volume", "remove-brick", "dv", bricks[9], bricks[10], bricks[0], "commit"); !strings.Contains(errs, "different replica sets") {
		t.Errorf("remove-brick of bricks of two sets: %q", errs)
	}
	if errs := run(1, "volume", "remove-brick", "dv", bricks[2], bricks[1], bricks[0], "commit"); !strings.Contains(errs, "only the last") {
		t.Errorf("remove-brick commit of set 0: %q", errs)
	}
	// Set 3 was never given tokens: it goes at once.
	if out := run(0, "volume", "remove-brick", "dv", bricks[11], bricks[10], bricks[9], "commit"); !strings.Contains(out, "3 replica sets left") {
		t.Errorf("remove-brick commit: %q", out)
	}
	if out := run(0, "volume", "info", "dv"); !strings.Contains(out, "3 x 3 = 9") {
		t.Errorf("info after remove-brick:\n%s", out)
	}
}
