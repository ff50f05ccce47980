// Package core is JBR's leader, follower and term logic as a deterministic
// state machine, in the etcd-io/raft style: no I/O, no clocks, no
// goroutines. The brick feeds it events (an election won, a request, a
// follower's ack) and carries out what it asks for in Ready: persist the
// term, append to the journal, send to peers, reply to clients.
//
// Terms come from etcd election revisions and only grow. Followers persist
// the highest term they have seen and refuse anything older, because an
// etcd election alone cannot guarantee mutual exclusion (Jepsen, etcd
// 3.4.3): a deposed leader that still believes it leads is fenced here.
package core

import (
	"errors"
	"fmt"
	"sort"
)

// ID identifies a replica within its set (its brick index).
type ID int

// None is the ID of no replica.
const None ID = -1

// Role is a replica's part in the current term.
type Role int

const (
	// Follower accepts appends from the current term's leader only.
	Follower Role = iota
	// Recovering is a newly elected leader bringing its journal up to
	// date with a quorum; it refuses client requests until done.
	Recovering
	// Leader orders and replicates client requests.
	Leader
)

func (r Role) String() string {
	return [...]string{"follower", "recovering", "leader"}[r]
}

// ReqID names a client request across retries: the client's id and its
// per-client sequence number.
type ReqID struct {
	Client [16]byte
	Seq    uint64
}

// Entry is one journaled request. Data is opaque to the core (an encoded
// xl.Fop); Key is the object it conflicts on (the target GFID).
type Entry struct {
	Term  uint64
	Index uint64
	Req   ReqID
	Key   [16]byte
	Data  []byte
}

// MsgType enumerates peer messages.
type MsgType int

const (
	MsgAppend     MsgType = iota // leader -> follower: Entries
	MsgAppendResp                // follower -> leader: Index durable, or Reject
	MsgProbe                     // new leader -> peer: where is your journal?
	MsgProbeResp                 // peer -> new leader: LastTerm, LastIndex
	MsgFetch                     // new leader -> peer: send entries after Index
	MsgFetchResp                 // peer -> new leader: Entries
)

var msgNames = [...]string{"Append", "AppendResp", "Probe", "ProbeResp", "Fetch", "FetchResp"}

func (t MsgType) String() string { return msgNames[t] }

// Message is exchanged between replicas of one set.
type Message struct {
	Type      MsgType
	From, To  ID
	Term      uint64
	Index     uint64 // Append: index before Entries; AppendResp: highest durable index; Fetch: send after this
	LogTerm   uint64 // Append: term of the entry at Index, so a follower can detect a divergent tail
	LastTerm  uint64 // ProbeResp
	LastIndex uint64 // ProbeResp, and AppendResp on Reject as a hint
	Reject    bool
	Entries   []Entry
}

// Reply answers a client request.
type Reply struct {
	Req    ReqID
	Index  uint64
	Err    error // nil, ErrNotLeader or ErrStepDown
	Leader ID    // with ErrNotLeader: who to ask instead (None if unknown)
}

// Errors carried in replies.
var (
	// ErrNotLeader: this replica does not lead; Reply.Leader names who does.
	ErrNotLeader = errors.New("jbr: not leader")
	// ErrStepDown: leadership was lost before the request reached a
	// quorum. The request may or may not survive reconciliation; the
	// client retries with the same ReqID and the new leader deduplicates.
	ErrStepDown = errors.New("jbr: leader stepped down")
)

// Ready is what the brick must do after a step, in order: persist Term
// (if non-zero) before sending anything, append Appends to the local
// journal, send Messages, then deliver Committed and Replies.
type Ready struct {
	Term      uint64
	Appends   []Entry
	Messages  []Message
	Committed []Entry // quorum-durable, in index order: apply and acknowledge
	Replies   []Reply
}

// Empty reports whether there is nothing to do.
func (r *Ready) Empty() bool {
	return r.Term == 0 && len(r.Appends) == 0 && len(r.Messages) == 0 && len(r.Committed) == 0 && len(r.Replies) == 0
}

// Config configures a replica's core.
type Config struct {
	ID    ID
	Peers []ID // every replica of the set, this one included
	Log   Log
	// Quorum is how many replicas, the leader included, must hold an
	// entry durably before it commits. 0 means a majority.
	Quorum int
}

// Log is the read-only view of the local journal the core needs.
type Log interface {
	// Term returns the term of the entry at index, if the journal has it.
	Term(index uint64) (uint64, bool)
}

// State is the durable state a core restarts from.
type State struct {
	Term      uint64 // highest term ever seen
	LastTerm  uint64 // term of the last journal entry
	LastIndex uint64
	Commit    uint64
}

type pending struct {
	entry Entry
	acks  map[ID]bool
}

// Core is one replica's JBR state machine. It is not safe for concurrent
// use: the brick serialises calls.
type Core struct {
	cfg     Config
	quorum  int
	st      State
	role    Role
	leader  ID
	durable uint64 // highest index the local journal holds durably

	// Leader only.
	pending map[uint64]*pending
	matched map[ID]uint64
	probes  map[ID]Message
	byReq   map[ReqID]uint64 // in-flight requests, for dedup of retries

	rd Ready
}

// New returns a core restarted from st, as a follower with no known leader.
func New(cfg Config, st State) (*Core, error) {
	n := len(cfg.Peers)
	q := cfg.Quorum
	if q == 0 {
		q = n/2 + 1
	}
	if cfg.Log == nil {
		return nil, errors.New("jbr: core needs a journal view")
	}
	if n == 0 || q < 1 || q > n {
		return nil, fmt.Errorf("jbr: quorum %d impossible with %d replicas", cfg.Quorum, n)
	}
	found := false
	for _, p := range cfg.Peers {
		found = found || p == cfg.ID
	}
	if !found {
		return nil, fmt.Errorf("jbr: replica %d not among peers %v", cfg.ID, cfg.Peers)
	}
	return &Core{cfg: cfg, quorum: q, st: st, leader: None}, nil
}

// Role returns this replica's role and the leader it knows of.
func (c *Core) Role() (Role, ID) { return c.role, c.leader }

// State returns the durable state.
func (c *Core) State() State { return c.st }

// Ready returns and clears the accumulated work.
func (c *Core) Ready() Ready {
	rd := c.rd
	c.rd = Ready{}
	return rd
}

func (c *Core) send(m Message) {
	m.From = c.cfg.ID
	m.Term = c.st.Term
	c.rd.Messages = append(c.rd.Messages, m)
}

// adopt moves to a newer term; the caller decides the role.
func (c *Core) adopt(term uint64, leader ID) {
	if term > c.st.Term {
		c.st.Term = term
		c.rd.Term = term
	}
	c.leader = leader
}

// Elected is called when this replica wins an etcd election whose revision
// is term. A term not above the highest seen is stale and ignored.
func (c *Core) Elected(term uint64) {
	if term <= c.st.Term {
		return
	}
	c.stepDown()
	c.adopt(term, c.cfg.ID)
	c.role = Recovering
	c.pending = map[uint64]*pending{}
	c.matched = map[ID]uint64{}
	c.byReq = map[ReqID]uint64{}
	c.probes = map[ID]Message{c.cfg.ID: {From: c.cfg.ID, LastTerm: c.st.LastTerm, LastIndex: c.st.LastIndex}}
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID {
			c.send(Message{Type: MsgProbe, To: p})
		}
	}
	c.maybeRecovered()
}

// Observed is called when etcd shows leader holding term.
func (c *Core) Observed(leader ID, term uint64) {
	if term < c.st.Term || (term == c.st.Term && c.leader == leader) {
		return
	}
	if leader == c.cfg.ID && term == c.st.Term {
		return // our own election, already handled by Elected
	}
	c.stepDown()
	c.adopt(term, leader)
}

// SessionLost is called when this replica's etcd session expires: a leader
// steps down at once.
func (c *Core) SessionLost() {
	c.stepDown()
	c.leader = None
}

func (c *Core) stepDown() {
	if c.role == Follower {
		return
	}
	idx := make([]uint64, 0, len(c.pending))
	for i := range c.pending {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	for _, i := range idx {
		c.rd.Replies = append(c.rd.Replies, Reply{Req: c.pending[i].entry.Req, Index: i, Err: ErrStepDown, Leader: None})
	}
	c.role, c.pending, c.matched, c.probes, c.byReq = Follower, nil, nil, nil, nil
}

// Propose submits a client request. On a leader it is stamped with
// (term, index), appended locally and sent to every follower. A retry of a
// request still in flight joins the original instead of being applied twice.
func (c *Core) Propose(req ReqID, key [16]byte, data []byte) {
	if c.role != Leader {
		c.rd.Replies = append(c.rd.Replies, Reply{Req: req, Err: ErrNotLeader, Leader: c.otherLeader()})
		return
	}
	if _, dup := c.byReq[req]; dup {
		return
	}
	prev, prevTerm := c.st.LastIndex, c.st.LastTerm
	c.st.LastIndex++
	c.st.LastTerm = c.st.Term
	e := Entry{Term: c.st.Term, Index: c.st.LastIndex, Req: req, Key: key, Data: data}
	c.pending[e.Index] = &pending{entry: e, acks: map[ID]bool{}}
	c.byReq[req] = e.Index
	c.rd.Appends = append(c.rd.Appends, e)
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID {
			c.send(Message{Type: MsgAppend, To: p, Index: prev, LogTerm: prevTerm, Entries: []Entry{e}})
		}
	}
}

func (c *Core) otherLeader() ID {
	if c.leader == c.cfg.ID {
		return None
	}
	return c.leader
}

// Durable is called once the local journal holds every entry up to index.
func (c *Core) Durable(index uint64) {
	c.durable = max(c.durable, index)
	switch c.role {
	case Leader:
		c.ack(c.cfg.ID, index)
	case Follower:
		if c.leader != None && c.leader != c.cfg.ID {
			c.send(Message{Type: MsgAppendResp, To: c.leader, Index: index})
		}
	}
}

func (c *Core) ack(from ID, index uint64) {
	if index > c.matched[from] {
		c.matched[from] = index
	}
	c.advanceCommit()
}

// advanceCommit commits, in order, every entry held by a quorum.
func (c *Core) advanceCommit() {
	for {
		next := c.st.Commit + 1
		p, ok := c.pending[next]
		if !ok {
			return
		}
		n := 0
		for _, id := range c.cfg.Peers {
			if c.matched[id] >= next {
				n++
			}
		}
		if n < c.quorum {
			return
		}
		c.st.Commit = next
		delete(c.pending, next)
		delete(c.byReq, p.entry.Req)
		c.rd.Committed = append(c.rd.Committed, p.entry)
		c.rd.Replies = append(c.rd.Replies, Reply{Req: p.entry.Req, Index: next})
	}
}

// Step handles a message from a peer.
func (c *Core) Step(m Message) {
	if m.Term < c.st.Term {
		// Fencing: a deposed leader's appends are refused and told the term.
		if m.Type == MsgAppend || m.Type == MsgProbe || m.Type == MsgFetch {
			c.send(Message{Type: replyType(m.Type), To: m.From, Reject: true, LastIndex: c.st.LastIndex})
		}
		return
	}
	if m.Term > c.st.Term {
		c.stepDown()
		c.adopt(m.Term, None)
		if m.Type == MsgAppend || m.Type == MsgProbe || m.Type == MsgFetch {
			c.leader = m.From
		}
	}
	switch m.Type {
	case MsgAppend:
		c.onAppend(m)
	case MsgAppendResp:
		if c.role == Leader && !m.Reject {
			c.ack(m.From, m.Index)
		} else if c.role == Leader && m.Reject && m.LastIndex < c.st.LastIndex {
			c.resend(m.From, m.LastIndex)
		}
	case MsgProbe:
		c.leader = m.From
		c.send(Message{Type: MsgProbeResp, To: m.From, LastTerm: c.st.LastTerm, LastIndex: c.st.LastIndex})
	case MsgProbeResp:
		if c.role == Recovering && !m.Reject {
			c.probes[m.From] = m
			c.maybeRecovered()
		}
	case MsgFetch:
		// The brick answers from its journal: it sees this in Messages
		// addressed to itself, reads entries after m.Index and replies
		// with a FetchResp through Fetched.
		c.rd.Messages = append(c.rd.Messages, m)
	case MsgFetchResp:
		if c.role == Recovering && !m.Reject {
			c.catchUp(m.Entries)
		}
	}
}

func replyType(t MsgType) MsgType { return t + 1 }

func (c *Core) onAppend(m Message) {
	if c.role != Follower {
		return // two leaders in one term cannot happen: terms are election revisions
	}
	c.leader = m.From
	if m.Index > c.st.LastIndex {
		c.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: c.st.LastIndex})
		return
	}
	if t, ok := c.cfg.Log.Term(m.Index); m.Index > 0 && (!ok || t != m.LogTerm) {
		// Our entry at Index came from a term the leader does not
		// have there: step back until the journals agree.
		c.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: m.Index - 1})
		return
	}
	var last uint64
	for _, e := range m.Entries {
		last = e.Index
		if e.Index > c.st.LastIndex+1 {
			c.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: c.st.LastIndex})
			return
		}
		if e.Index <= c.st.LastIndex {
			if t, ok := c.cfg.Log.Term(e.Index); ok && t == e.Term {
				continue // a resend of what we hold
			}
			// An unacknowledged tail from an older term: the newer
			// leader's entry replaces it and everything after it.
		}
		c.st.LastIndex, c.st.LastTerm = e.Index, e.Term
		c.rd.Appends = append(c.rd.Appends, e)
	}
	if len(c.rd.Appends) == 0 && last != 0 && c.durable >= last {
		c.send(Message{Type: MsgAppendResp, To: m.From, Index: last})
	}
}

// resend asks the brick to ship entries after index to a lagging follower:
// it appears as a Fetch addressed to this replica on the follower's behalf.
func (c *Core) resend(to ID, after uint64) {
	c.rd.Messages = append(c.rd.Messages, Message{Type: MsgFetch, From: to, To: c.cfg.ID, Term: c.st.Term, Index: after})
}

// maybeRecovered finishes recovery once a quorum has answered: if a peer's
// journal is ahead, fetch its tail first. Any quorum intersects every
// write quorum, so the most advanced answer holds every acknowledged write.
func (c *Core) maybeRecovered() {
	if c.role != Recovering || len(c.probes) < c.quorum {
		return
	}
	best := c.probes[c.cfg.ID]
	for _, id := range c.cfg.Peers {
		if p, ok := c.probes[id]; ok && (p.LastTerm > best.LastTerm || (p.LastTerm == best.LastTerm && p.LastIndex > best.LastIndex)) {
			best = p
		}
	}
	if best.From != c.cfg.ID {
		c.send(Message{Type: MsgFetch, To: best.From, Index: c.st.LastIndex})
		return
	}
	c.becomeLeader()
}

func (c *Core) catchUp(entries []Entry) {
	for _, e := range entries {
		if e.Index <= c.st.LastIndex && e.Term <= c.st.LastTerm {
			continue
		}
		c.st.LastIndex, c.st.LastTerm = e.Index, e.Term
		c.rd.Appends = append(c.rd.Appends, e)
	}
	c.probes[c.cfg.ID] = Message{From: c.cfg.ID, LastTerm: c.st.LastTerm, LastIndex: c.st.LastIndex}
	c.maybeRecovered()
}

func (c *Core) becomeLeader() {
	c.role = Leader
	// Entries recovered from the old term are durable here; those a
	// quorum already held were committed; the rest are handed to
	// reconciliation, which rolls them forward on the followers.
	c.st.Commit = max(c.st.Commit, c.st.LastIndex)
	for id, p := range c.probes {
		c.matched[id] = p.LastIndex
	}
	c.probes = nil
}
