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
	start(2)
	for _, c := range cs[1:] {
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
	// Replica 1 or 2 takes over; which one depends on whose campaign key
	// etcd created first, and Observed can arrive before a replica's own
	// key exists, so the test does not presume the order.
	winner, won, seen := elected(t, cs[1], cs[2])
	if won.Term <= first.Term {
		t.Fatalf("new term %d not above old term %d", won.Term, first.Term)
	}
	other := cs[3-winner]
	ev := seen[other.self]
	for ev.Term != won.Term {
		ev = next(t, other, Observed)
	}
	if ev.Leader != winner {
		t.Fatalf("replica %d observed leader %d, want %d", other.self, ev.Leader, winner)
	}
}

// elected waits for a or b to win and returns the winner, its event and
// the last Observed event each replica delivered meanwhile (the loser may
// see the new leader before the winner hears of its own win).
func elected(t *testing.T, a, b *Campaign) (int, Event, map[int]Event) {
	t.Helper()
	seen := map[int]Event{}
	timeout := time.After(30 * time.Second)
	for {
		var ev Event
		var from *Campaign
		select {
		case ev = <-a.Events():
			from = a
		case ev = <-b.Events():
			from = b
		case <-timeout:
			t.Fatalf("neither replica %d nor %d was elected", a.self, b.self)
		}
		switch ev.Kind {
		case Elected:
			return from.self, ev, seen
		case Observed:
			seen[from.self] = ev
		}
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
