package jbrserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
)

// Full resync.
//
// A follower that lags behind what the leader's journal still holds
// (pruned to keep its bound) cannot be caught up by replication: the
// leader's resend would find nothing to send, and the follower would
// stay behind forever. The leader notices it on each resend (resyncNeeded)
// and reports the follower in its journal status (IpcReconJournal), with
// its own commit index then. So does a follower asked by a recovering
// leader for entries it pruned: that leader cannot finish recovering. The brick daemons and recon do the rest:
// the follower's log is fast-forwarded to that index while it is stopped
// (FastForward), replication ships it everything after, and recon
// repairs its store from the leader's by GFID walk (recon.Repair).

// resyncTTL is how long a follower stays reported after the last resend
// that found its entries gone: resends repeat every few heartbeats while
// it is stuck.
const resyncTTL = 3 * time.Second

// Resync is a peer this brick cannot catch up from its journal.
type Resync struct {
	Replica int `json:"replica"`
	// After is where the peer's log ends, as far as this brick saw; Term
	// and Index this brick's commit when it noticed: the peer's log may
	// be fast-forwarded there.
	After uint64 `json:"after"`
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
}

// resyncs is the followers seen needing a full resync. Loop writes, any
// goroutine reads.
type resyncs struct {
	mu   sync.Mutex
	seen map[int]resyncSeen
}

type resyncSeen struct {
	r  Resync
	at time.Time
}

// resyncNeeded reports whether the entries after m.Index that a resend
// (or a recovering leader's fetch) asks for are gone from the journal,
// and if so records the peer as needing a full resync. sp is where those
// entries are in the journal (jlog.spans).
func (l *loop) resyncNeeded(m core.Message, sp []span) bool {
	if len(sp) == 0 || sp[0].jfirst >= l.s.j.FirstIndex() {
		return false
	}
	// A lagging follower (a resend), or a recovering leader (a fetch)
	// that cannot finish recovering from us.
	peer := m.From
	st := l.c.State()
	term, _ := l.log.Term(st.Commit)
	rs := &l.s.resync
	rs.mu.Lock()
	if rs.seen == nil {
		rs.seen = map[int]resyncSeen{}
	}
	_, known := rs.seen[int(peer)]
	rs.seen[int(peer)] = resyncSeen{r: Resync{Replica: int(peer), After: m.Index, Term: term, Index: st.Commit}, at: time.Now()}
	rs.mu.Unlock()
	if !known {
		l.s.log.Warn("jbr: a peer needs entries this journal pruned: it needs a full resync",
			"peer", peer, "asked", m.Type.String(), "after", m.Index, "first_held", sp[0].first, "commit", st.Commit)
	}
	return true
}

// NeedsResync lists the peers this brick cannot catch up from its
// journal, as of the last few resends (on a leader) or fetches (from a
// recovering leader).
func (s *Server) NeedsResync() []Resync {
	rs := &s.resync
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []Resync
	for p, v := range rs.seen {
		if time.Since(v.at) > resyncTTL {
			delete(rs.seen, p)
			continue
		}
		out = append(out, v.r)
	}
	return out
}

// FastForward makes the log in j, a stopped brick's journal, continue
// after index: it appends a no-op entry at index of term, known
// committed. A server started over j then takes entries after index from
// its leader; what it missed before is not replayed: its store must be
// repaired from the leader's (recon.Repair). It does nothing if the log
// already reaches index.
func FastForward(j *journal.Journal, term, index uint64) error {
	cs, err := scanJournal(j)
	if err != nil {
		return fmt.Errorf("jbr: reading the journal: %w", err)
	}
	if last, _ := cs.log.last(); last >= index {
		return nil
	}
	if j.Term() < term {
		if err := j.StartTerm(term); err != nil {
			return err
		}
	}
	e := &entry{Entry: core.Entry{Term: term, Index: index}, noop: true}
	_, err = j.Append(context.Background(), e.record(index))
	return err
}
