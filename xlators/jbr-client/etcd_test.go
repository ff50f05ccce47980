package jbrclient

import (
	"context"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// elected waits for c to win.
func elected(t *testing.T, c *election.Campaign) election.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-c.Events():
			if ev.Kind == election.Elected {
				return ev
			}
		case <-timeout:
			t.Fatal("no election")
		}
	}
}

// WatchEtcd follows real campaigns through a failover, and a client on
// top of it moves its requests to the new leader.
func TestWatchEtcdFollowsFailover(t *testing.T) {
	cli := etcdtest.Start(t)
	key := election.Key("v", 0)
	l, err := WatchEtcd(context.Background(), cli, key, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, ok := l.Leader(); ok {
		t.Fatal("a leader before any campaign")
	}

	s := newSet(3, -1, 0)
	c := newClient(t, s, l, 0)
	var cs []*election.Campaign
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	start := func(i int) *election.Campaign {
		c, err := election.Start(cli, key, i, election.Options{TTL: time.Second, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		return c
	}
	first := elected(t, start(0))
	s.setLeader(0, first.Term)
	start(1)
	start(2)
	eventually(t, "the watch to see leader 0", func() bool {
		i, term, ok := l.Leader()
		return ok && i == 0 && term == first.Term
	})
	g := xl.NewGFID()
	if _, e := c.Write(req(1), xl.Fd{GFID: g, H: 1}, []byte("a"), 0); e != 0 {
		t.Fatal(e)
	}

	cs[0].Close() // resigns
	s.setLeader(-1, 0)
	var won election.Event
	select {
	case won = <-electedAny(t, cs[1], cs[2]):
	case <-time.After(30 * time.Second):
		t.Fatal("no new leader")
	}
	if won.Term <= first.Term {
		t.Fatalf("new term %d not above %d", won.Term, first.Term)
	}
	s.setLeader(won.Leader, won.Term)
	eventually(t, "the watch to see the new leader", func() bool {
		i, term, ok := l.Leader()
		return ok && i == won.Leader && term == won.Term
	})
	if _, e := c.Write(req(2), xl.Fd{GFID: g, H: 1}, []byte("b"), 1); e != 0 {
		t.Fatal(e)
	}
	if got := s.content(g); got != "ab" {
		t.Errorf("content %q", got)
	}
	if seen := s.bricks[won.Leader].seen(); len(seen) == 0 || seen[len(seen)-1].seq != 2 {
		t.Errorf("new leader saw %+v", seen)
	}
}

// electedAny reports the first of cs to win.
func electedAny(t *testing.T, cs ...*election.Campaign) <-chan election.Event {
	ch := make(chan election.Event, len(cs))
	for _, c := range cs {
		go func() {
			for ev := range c.Events() {
				if ev.Kind == election.Elected {
					ch <- ev
					return
				}
			}
		}()
	}
	return ch
}
