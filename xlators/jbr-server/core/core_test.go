package core

import "testing"

// A follower whose old-term tail is written and synced after a new leader
// appeared must not acknowledge that tail to the new leader: only what
// it verified against the new leader's journal counts towards commits.
func TestDurableOldTailNotAcknowledged(t *testing.T) {
	log := &memLog{terms: map[uint64]uint64{}}
	c, err := New(Config{ID: 3, Peers: []ID{1, 2, 3}, Log: log}, State{})
	if err != nil {
		t.Fatal(err)
	}
	// Leader 1 of term 5 sends three entries; none is durable yet.
	es := []Entry{{Term: 5, Index: 1, Data: []byte("a")}, {Term: 5, Index: 2, Data: []byte("b")}, {Term: 5, Index: 3, Data: []byte("c")}}
	c.Step(Message{Type: MsgAppend, From: 1, To: 3, Term: 5, Entries: es})
	for _, e := range c.Ready().Appends {
		log.terms[e.Index] = e.Term
	}
	// Leader 2 of term 7 holds only the first of them.
	c.Step(Message{Type: MsgAppend, From: 2, To: 3, Term: 7, Index: 1, LogTerm: 5})
	c.Ready()
	c.Written(3)
	c.Synced(3)
	for _, m := range c.Ready().Messages {
		if m.Type == MsgAppendResp && !m.Reject && (m.Index > 1 || m.Sync > 1) {
			t.Fatalf("acknowledged %d (synced %d) to the term 7 leader, which holds only index 1", m.Index, m.Sync)
		}
	}
}

// What a follower verified against a leader's journal in one term does
// not carry over to the next, even when the same replica leads again:
// its journal may have changed in between.
func TestMatchForgottenOnNewTerm(t *testing.T) {
	log := &memLog{terms: map[uint64]uint64{}}
	c, err := New(Config{ID: 3, Peers: []ID{1, 2, 3}, Log: log}, State{})
	if err != nil {
		t.Fatal(err)
	}
	es := []Entry{{Term: 5, Index: 1, Data: []byte("a")}, {Term: 5, Index: 2, Data: []byte("b")}}
	c.Step(Message{Type: MsgAppend, From: 1, To: 3, Term: 5, Entries: es})
	for _, e := range c.Ready().Appends {
		log.terms[e.Index] = e.Term
	}
	c.Observed(1, 9) // replica 1 leads again, in term 9
	c.Ready()
	c.Written(2)
	c.Synced(2)
	for _, m := range c.Ready().Messages {
		if m.Type == MsgAppendResp && (m.Index > 0 || m.Sync > 0) {
			t.Fatalf("acknowledged %d in term %d before the term 9 leader said anything", m.Index, m.Term)
		}
	}
}
