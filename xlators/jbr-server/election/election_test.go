package election

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/internal/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// etcd's embedded server and client keep these background loops
		// until the process ends.
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/pkg/v3/logutil.(*MergeLogger).outputLoop"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

func next(t *testing.T, c *Campaign, want Kind) Event {
	t.Helper()
	for {
		select {
		case ev := <-c.Events():
			if ev.Kind == want {
				return ev
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("replica %d: no %v event", c.self, want)
		}
	}
}

// One replica wins, the others observe it; when the leader goes, another
// wins with a strictly higher term, which everyone observes.
func TestFailoverRaisesTerm(t *testing.T) {
	cli := etcdtest.Start(t)
	key := Key("v", 0)
	var cs []*Campaign
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := func(i int) *Campaign {
		c, err := Start(cli, key, i, Options{TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		return c
	}
	first := next(t, start(0), Elected)
	start(1)
	// Replica 1 must be queued before 2 starts, so the order is known.
	next(t, cs[1], Observed)
	start(2)
	for _, c := range cs[2:] {
		ev := next(t, c, Observed)
		if ev.Leader != 0 || ev.Term != first.Term {
			t.Fatalf("replica %d observed %+v, want leader 0 term %d", c.self, ev, first.Term)
		}
	}
	leader, term, ok, err := Leader(context.Background(), cli, key)
	if err != nil || !ok || leader != 0 || term != first.Term {
		t.Fatalf("Leader = %d %d %v %v", leader, term, ok, err)
	}

	cs[0].Close()
	cs[0] = nil
	// Replica 1 campaigned before 2, so it is next in line.
	won := next(t, cs[1], Elected)
	if won.Term <= first.Term {
		t.Fatalf("new term %d not above old term %d", won.Term, first.Term)
	}
	ev := next(t, cs[2], Observed)
	for ev.Term != won.Term {
		ev = next(t, cs[2], Observed)
	}
	if ev.Leader != 1 {
		t.Fatalf("replica 2 observed leader %d", ev.Leader)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	cli := etcdtest.Start(t)
	if _, err := Start(cli, Key("v", 0), 0, Options{TTL: 10 * time.Millisecond}); err == nil {
		t.Error("sub-second TTL accepted")
	}
	if _, err := Start(nil, Key("v", 0), 0, Options{}); err == nil {
		t.Error("nil client accepted")
	}
}
