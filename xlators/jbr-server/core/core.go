// Package core is JBR's leader, follower and term logic as a deterministic
// state machine, in the etcd-io/raft style: no I/O, no clocks, no
// goroutines. The brick feeds it events (an election won, a request, a
// follower's ack, a tick) and carries out what it asks for in Ready:
// persist the term, append to the journal, send to peers, apply what
// committed, reply to clients.
//
// Terms come from etcd election revisions and only grow. Followers persist
// the highest term they have seen and refuse anything older, because an
// etcd election alone cannot guarantee mutual exclusion (Jepsen, etcd
// 3.4.3): a deposed leader that still believes it leads is fenced here.
//
// A newly elected leader recovers before it takes requests: it probes its
// peers, and once a quorum has answered it fetches the most advanced
// journal tail among them. Any quorum intersects every write quorum, so
// that tail holds every entry a client was told is done. If its journal
// then holds entries it does not know to be committed, it appends a no-op
// of its own term: as in Raft, only an entry of the current term commits
// by counting replicas, and it carries every entry before it with it (an
// older term's entry held by a quorum can still be replaced by a leader
// that never saw it).
//
// # Leases
//
// With Config.LeaseDuration set, a leader holds a read lease built from
// its followers' promises (Raft thesis §6.4): a follower that accepts an
// append from the leader of its term at local time t promises to accept
// nothing of a newer term, and not to start leading one it wins, before
// t + LeaseDuration. Every leader heartbeat starts a read round; once a
// quorum (the leader included) has acknowledged a round started at the
// leader's time s, no other leader can commit anything, or confirm a
// read round, before s + LeaseDuration*(1-MaxDrift) on the leader's
// clock, provided no replica's clock advances by less than
// 1-MaxDrift times another's over a lease. Until then the leader may
// serve reads without a round (see LeaseUntil). Promises are not
// persisted: a replica restarted with a term (it may have promised
// something) refuses newer terms for LeaseDuration from its first
// SetTime. Times are the brick's monotonic clock (SetTime); the core
// reads none.
package core

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
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
	// date with a quorum and committing what it recovered; it refuses
	// client requests until done, so that every request in its journal
	// is known committed before a retry of one can arrive.
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
// xl.Fop); Key is the object it conflicts on (the target GFID). An entry
// with no Data is a leader's no-op (see the package doc): nothing to apply.
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
	MsgAppend     MsgType = iota // leader -> follower: Entries (none: a heartbeat)
	MsgAppendResp                // follower -> leader: Index written, Sync synced, or Reject
	MsgProbe                     // new leader -> peer: where is your journal?
	MsgProbeResp                 // peer -> new leader: LastTerm, LastIndex
	MsgFetch                     // new leader -> peer: send entries after Index
	MsgFetchResp                 // peer -> new leader: Entries after Index
	// MsgResend never leaves a replica: the core asks its brick to send
	// the journal's entries after Index to the lagging follower From, as
	// an Append.
	MsgResend
	msgTypes
)

var msgNames = [...]string{"Append", "AppendResp", "Probe", "ProbeResp", "Fetch", "FetchResp", "Resend"}

func (t MsgType) String() string {
	if t < 0 || t >= msgTypes {
		return fmt.Sprintf("MsgType(%d)", int(t))
	}
	return msgNames[t]
}

// Valid reports whether t is a known message type.
func (t MsgType) Valid() bool { return t >= 0 && t < msgTypes }

// Message is exchanged between replicas of one set.
type Message struct {
	Type      MsgType
	From, To  ID
	Term      uint64
	Index     uint64 // Append: index before Entries; AppendResp: highest index written and matching the leader; Fetch, FetchResp: entries after this
	LogTerm   uint64 // Append: term of the entry at Index, so a follower can detect a divergent tail
	LastTerm  uint64 // ProbeResp
	LastIndex uint64 // ProbeResp, and AppendResp on Reject as a hint; Append: every replica's journal holds entries up to here durably (see Core.DurableEverywhere)
	Commit    uint64 // Append: the leader's commit index
	Round     uint64 // Append: the leader's latest read round; AppendResp: the latest round the follower saw
	Sync      uint64 // Append: fdatasync your journal up to here; AppendResp: highest index synced and matching
	Reject    bool
	// Resyncing, on an AppendResp or ProbeResp, says the sender is being
	// resynced in full (see Core.SetResyncing): it counts toward no quorum.
	Resyncing bool
	// AckSynced, on an Append, asks the follower to sync the entries
	// and to acknowledge them once synced rather than once written and
	// again once synced: the leader proposed them durable
	// (ProposeDurable), so their caller waits for the sync anyway, and
	// one acknowledgement saves a message each way.
	AckSynced bool
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
// journal (an entry at an index the journal already holds replaces it
// and everything after it), send Messages, then apply and acknowledge.
type Ready struct {
	Term     uint64
	Appends  []Entry
	Messages []Message
	// Commit, when non-zero, is the new commit index: every entry up to
	// it is committed and may be applied, on any role, once the local
	// journal holds it durably.
	Commit uint64
	// Committed lists this leader's own proposals among them, in index
	// order, each also answered in Replies.
	Committed []Entry
	Replies   []Reply
	// ReadRound, when non-zero, is the highest read round (ReadIndex) in
	// which a quorum confirmed this replica still leads.
	ReadRound uint64
	// Sync, when non-zero, asks the brick to fdatasync its journal: every
	// entry appended so far, which reaches at least Sync. The brick
	// reports progress with Synced.
	Sync uint64
	// SyncCommit, when non-zero, is this leader's new synced commit
	// index: every entry up to it is committed and fdatasynced in a
	// quorum of journals.
	SyncCommit uint64
}

// Empty reports whether there is nothing to do.
func (r *Ready) Empty() bool {
	return r.Term == 0 && len(r.Appends) == 0 && len(r.Messages) == 0 && r.Commit == 0 &&
		len(r.Committed) == 0 && len(r.Replies) == 0 && r.ReadRound == 0 && r.Sync == 0 && r.SyncCommit == 0
}

// Config configures a replica's core.
type Config struct {
	ID    ID
	Peers []ID // every replica of the set, this one included
	Log   Log
	// Quorum is how many replicas, the leader included, must have
	// written an entry to their journals before it commits, and must
	// have synced it before a sync completes. 0 means a majority.
	Quorum int
	// LeaseDuration is how long a follower promises, on accepting an
	// append, not to help a newer term (see Leases in the package doc).
	// 0 disables leases: every read needs a round.
	LeaseDuration time.Duration
}

// MaxDrift bounds how much slower than another replica's a replica's
// clock may advance, as a fraction, over a lease: a leader's lease ends
// this fraction of LeaseDuration before its followers' promises.
const MaxDrift = 0.1

// Log is the read-only view of the local journal the core needs. It
// reflects every Ready.Appends the brick has carried out.
type Log interface {
	// Term returns the term of the entry at index, if the journal has it.
	Term(index uint64) (uint64, bool)
}

// State is the durable state a core restarts from.
type State struct {
	Term      uint64 // highest term ever seen
	LastTerm  uint64 // term of the last journal entry
	LastIndex uint64
	Commit    uint64 // highest index known committed
}

// syncEagerTicks is how many ticks after a Sync a leader keeps asking
// for every entry to be synced as it is appended: a client that fsyncs
// after each write then finds the fdatasyncs under way and waits about
// one sync, not a write round and then a sync round, while writers that
// never sync pay for none.
const syncEagerTicks = 10

// resendAge is how many ticks a resend to a lagging follower, or a
// recovering leader's fetch, may stay unanswered before it is repeated.
const resendAge = 2

type resend struct {
	after uint64
	ticks int
}

// Core is one replica's JBR state machine. It is not safe for concurrent
// use: the brick serialises calls.
type Core struct {
	cfg       Config
	quorum    int
	st        State
	role      Role
	leader    ID
	written   uint64 // the local journal holds every entry up to here written
	synced    uint64 // ... and fdatasynced
	syncWant  uint64 // the leader (or this one) wants entries synced up to here
	syncAsked uint64 // the brick was last asked to sync up to here

	// Follower, per leader and term.
	match     uint64 // our journal agrees with the leader's up to here
	acked     uint64 // highest index acknowledged to the leader as written
	syncAcked uint64 // ... as synced
	holdAck   uint64 // while synced is below this, acknowledge no write beyond synced (Message.AckSynced)
	seenRound uint64 // the leader's latest read round

	// Leader and recovering leader.
	pending    map[uint64]Entry // own proposals not yet committed
	matched    map[ID]uint64    // written and matching, per replica
	syncMatch  map[ID]uint64    // synced and matching, per replica
	syncCommit uint64           // committed and synced on a quorum up to here
	syncEager  int              // ticks left of syncing entries as they are appended
	byReq      map[ReqID]uint64 // in-flight requests, for dedup of retries
	termStart  uint64           // first index of this term: commits count from here
	serving    bool             // what was recovered has committed: take requests
	sentCommit map[ID]uint64
	held       []uint64 // sortedHeld's result, reused
	resending  map[ID]resend
	round      uint64 // latest read round started
	rounds     map[ID]uint64
	confirmed  uint64
	probes     map[ID]Message
	fetching   ID     // the peer a fetch is outstanding to
	fetchAge   int    // ticks it has been outstanding
	recovered  uint64 // our journal agrees with the best tail up to here

	resyncing bool // this replica's store is being resynced in full: no vote

	durableAll uint64 // every replica holds committed entries up to here durably

	// Leases (see the package doc).
	now          time.Duration // the brick's clock, from SetTime
	timed        bool          // SetTime was called
	promiseUntil time.Duration // accept no term above promiseTerm before this
	promiseTerm  uint64
	electedLater uint64        // a term won within a promise: lead it when the promise ends
	starts       []roundStart  // read rounds not yet confirmed, and when they started
	lease        time.Duration // this leader's reads need no round before this

	rd Ready
}

// roundStart is when this leader started a read round.
type roundStart struct {
	round uint64
	at    time.Duration
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
	if !slices.Contains(cfg.Peers, cfg.ID) {
		return nil, fmt.Errorf("jbr: replica %d not among peers %v", cfg.ID, cfg.Peers)
	}
	if st.Commit > st.LastIndex {
		return nil, fmt.Errorf("jbr: commit %d beyond the last index %d", st.Commit, st.LastIndex)
	}
	if cfg.LeaseDuration < 0 {
		return nil, fmt.Errorf("jbr: negative lease duration %v", cfg.LeaseDuration)
	}
	c := &Core{cfg: cfg, quorum: q, st: st, leader: None, fetching: None, promiseTerm: st.Term}
	if st.Term > 0 {
		// Promises made before a restart are forgotten: keep them all,
		// for LeaseDuration from the first SetTime.
		c.promiseUntil = cfg.LeaseDuration
	}
	return c, nil
}

// Role returns this replica's role and the leader it knows of. A leader
// whose recovered entries have not committed yet is still Recovering.
func (c *Core) Role() (Role, ID) {
	if c.role == Leader && !c.serves() {
		return Recovering, c.leader
	}
	return c.role, c.leader
}

// serves reports whether this leader takes client requests: what it
// recovered has committed, and its store is not being resynced.
func (c *Core) serves() bool { return c.serving && !c.resyncing }

// SetResyncing marks this replica as being resynced in full (its journal
// range was pruned from its leader's, its log fast-forwarded, and its
// store is being repaired behind the log) or, with false, caught up.
// While marked it still journals and applies what it receives, so that it
// is current once its store is repaired, but it is not allowed to vote:
// its acks and probe answers carry Message.Resyncing, which leaders count
// toward no quorum (commit, sync, read round, recovery), and as a leader
// it takes no requests. Cleared, it acknowledges its journal afresh, and
// counts from then on.
func (c *Core) SetResyncing(on bool) {
	if on == c.resyncing {
		return
	}
	c.resyncing = on
	if !on && c.role == Follower {
		c.acked, c.syncAcked = 0, 0 // what it acked was not counted
		c.ackLeader()
	}
}

// Resyncing reports whether this replica is marked by SetResyncing.
func (c *Core) Resyncing() bool { return c.resyncing }

// State returns the durable state.
func (c *Core) State() State { return c.st }

// Ready returns and clears the accumulated work. A leader's appends carry
// its latest commit index; followers that got none since the commit
// advanced learn it from NotifyCommit.
func (c *Core) Ready() Ready {
	if c.role == Leader {
		for i := range c.rd.Messages {
			m := &c.rd.Messages[i]
			if m.Type == MsgAppend && m.From == c.cfg.ID {
				m.Commit = c.st.Commit
				m.Sync = c.syncWant
				c.sentCommit[m.To] = c.st.Commit
			}
		}
	}
	rd := c.rd
	c.rd = Ready{}
	return rd
}

// CommitUnsent reports whether this leader has a follower it has not
// told its commit index. Its next append to that follower carries it;
// the brick calls NotifyCommit when none comes soon. Waiting a little
// lets a busy leader send one message per write and follower, not two.
func (c *Core) CommitUnsent() bool {
	if c.role != Leader {
		return false
	}
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID && c.sentCommit[p] < c.st.Commit {
			return true
		}
	}
	return false
}

// NotifyCommit sends a heartbeat carrying the commit index to every
// follower not told it yet, so that it applies what committed.
func (c *Core) NotifyCommit() {
	if c.role != Leader {
		return
	}
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID && c.sentCommit[p] < c.st.Commit {
			c.heartbeat(p)
		}
	}
}

func (c *Core) send(m Message) {
	m.From = c.cfg.ID
	m.Term = c.st.Term
	m.Resyncing = c.resyncing && (m.Type == MsgAppendResp || m.Type == MsgProbeResp)
	c.rd.Messages = append(c.rd.Messages, m)
}

// heartbeat tells a follower the leader's last entry, commit index and
// read round: it acknowledges, or rejects and gets the entries it lacks.
func (c *Core) heartbeat(to ID) {
	c.sentCommit[to] = c.st.Commit
	c.send(Message{Type: MsgAppend, To: to, Index: c.st.LastIndex, LogTerm: c.st.LastTerm,
		Commit: c.st.Commit, Round: c.round, LastIndex: c.durableAll})
}

// adopt moves to a newer term; the caller decides the role.
func (c *Core) adopt(term uint64, leader ID) {
	if term > c.st.Term {
		c.st.Term = term
		c.rd.Term = term
		c.forgetLeader() // even if the same replica leads the new term
	}
	c.setLeader(leader)
}

func (c *Core) setLeader(leader ID) {
	if leader != c.leader {
		c.forgetLeader()
	}
	c.leader = leader
}

// forgetLeader drops what a follower knew of its leader's journal.
func (c *Core) forgetLeader() {
	c.match, c.acked, c.syncAcked, c.seenRound, c.holdAck = 0, 0, 0, 0, 0
}

// Elected is called when this replica wins an etcd election whose revision
// is term. A term not above the highest seen is stale and ignored.
//
// Within a promise to another leader (see Leases), it takes the term, so
// that it stops acknowledging that leader, but starts leading only once
// the promise ends, at a SetTime.
func (c *Core) Elected(term uint64) {
	if term <= c.st.Term {
		return
	}
	c.stepDown()
	if c.promised() {
		c.adopt(term, None)
		c.electedLater = term
		return
	}
	c.lead(term)
}

// promised reports whether a promise forbids helping a newer term now.
func (c *Core) promised() bool { return c.now < c.promiseUntil }

// SetTime tells the core the brick's monotonic clock: the time since a
// fixed origin. Time never goes back; an earlier time is ignored. A term
// won within a promise starts being led here.
func (c *Core) SetTime(now time.Duration) {
	if !c.timed {
		c.timed = true
		if c.promiseUntil > 0 {
			c.promiseUntil = now + c.cfg.LeaseDuration
		}
	}
	c.now = max(c.now, now)
	if c.electedLater != 0 && !c.promised() {
		term := c.electedLater
		c.electedLater = 0
		if term == c.st.Term && c.role == Follower && c.leader == None {
			c.lead(term)
		}
	}
}

// LeaseUntil returns when this leader's read lease ends on the brick's
// clock, or 0 when it holds none. A read that arrives before then sees
// every write acknowledged before it arrived once the store has applied
// the entries committed at its arrival: no other leader can commit
// anything before then.
func (c *Core) LeaseUntil() time.Duration {
	if c.role != Leader || !c.serves() {
		return 0
	}
	return c.lease
}

// lead starts leading term: recover, then take requests.
func (c *Core) lead(term uint64) {
	c.adopt(term, c.cfg.ID)
	c.role = Recovering
	c.pending = map[uint64]Entry{}
	c.matched = map[ID]uint64{}
	c.syncMatch = map[ID]uint64{}
	c.syncCommit, c.syncEager = 0, 0
	c.byReq = map[ReqID]uint64{}
	c.sentCommit = map[ID]uint64{}
	c.resending = map[ID]resend{}
	c.rounds = map[ID]uint64{}
	c.confirmed = c.round
	c.recovered = c.st.Commit
	c.fetching = None
	c.probes = map[ID]Message{c.cfg.ID: c.selfProbe()}
	c.probe()
	c.maybeRecovered()
}

func (c *Core) selfProbe() Message {
	return Message{From: c.cfg.ID, LastTerm: c.st.LastTerm, LastIndex: c.st.LastIndex}
}

// probe asks every peer that has not answered yet where its journal is.
func (c *Core) probe() {
	for _, p := range c.cfg.Peers {
		if _, ok := c.probes[p]; !ok {
			c.send(Message{Type: MsgProbe, To: p})
		}
	}
}

// Observed is called when etcd shows leader holding term. This replica's
// own leadership comes from Elected only: the observation of its own
// campaign may arrive first, and must not make it a follower of itself.
func (c *Core) Observed(leader ID, term uint64) {
	if leader == c.cfg.ID || term < c.st.Term || (term == c.st.Term && c.leader == leader) {
		return
	}
	if term > c.st.Term {
		c.stepDown()
	}
	if c.role != Follower {
		return // our own term: two leaders in one term cannot happen
	}
	c.adopt(term, leader)
}

// SessionLost is called when this replica's etcd session expires: a leader
// steps down at once.
func (c *Core) SessionLost() {
	c.electedLater = 0 // a term won within a promise is lost with the session
	c.stepDown()
	c.setLeader(None)
}

func (c *Core) stepDown() {
	if c.role == Follower {
		return
	}
	idx := make([]uint64, 0, len(c.pending))
	for i := range c.pending {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		c.rd.Replies = append(c.rd.Replies, Reply{Req: c.pending[i].Req, Index: i, Err: ErrStepDown, Leader: None})
	}
	c.role, c.serving, c.pending, c.matched, c.probes, c.byReq = Follower, false, nil, nil, nil, nil
	c.syncMatch, c.syncCommit, c.syncEager = nil, 0, 0
	c.sentCommit, c.resending, c.rounds, c.fetching = nil, nil, nil, None
	c.starts, c.lease = nil, 0
	c.setLeader(None)
}

// Propose submits a client request. On a leader it is stamped with
// (term, index), appended locally and sent to every follower. A retry of a
// request still in flight joins the original instead of being applied twice.
func (c *Core) Propose(req ReqID, key [16]byte, data []byte) {
	c.propose(req, key, data, false)
}

// ProposeDurable is Propose for a request whose caller waits until it is
// durable (SyncCommit reaches its index) rather than only committed, as
// an O_DSYNC write or a write whose fsync is answered with it does: its
// entry is synced as it is appended, in the same messages, so the
// fdatasyncs overlap the commit round instead of following it. Like
// Sync, it keeps every entry appended during the next syncEagerTicks
// synced as appended.
func (c *Core) ProposeDurable(req ReqID, key [16]byte, data []byte) {
	c.propose(req, key, data, true)
}

func (c *Core) propose(req ReqID, key [16]byte, data []byte, durable bool) {
	if c.role != Leader || !c.serves() {
		c.rd.Replies = append(c.rd.Replies, Reply{Req: req, Err: ErrNotLeader, Leader: c.otherLeader()})
		return
	}
	if _, dup := c.byReq[req]; dup {
		return
	}
	if durable {
		c.syncEager = syncEagerTicks
	}
	e := c.appendLocal(req, key, data, durable)
	c.pending[e.Index] = e
	c.byReq[req] = e.Index
}

// appendLocal stamps an entry of this term, journals it and sends it;
// durable asks followers to acknowledge it once synced.
func (c *Core) appendLocal(req ReqID, key [16]byte, data []byte, durable bool) Entry {
	prev, prevTerm := c.st.LastIndex, c.st.LastTerm
	c.st.LastIndex++
	c.st.LastTerm = c.st.Term
	e := Entry{Term: c.st.Term, Index: c.st.LastIndex, Req: req, Key: key, Data: data}
	c.rd.Appends = append(c.rd.Appends, e)
	if c.syncEager > 0 {
		c.syncWant = e.Index // carried by the appends below (see Ready)
		c.askSync()
	}
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID {
			c.send(Message{Type: MsgAppend, To: p, Index: prev, LogTerm: prevTerm, Round: c.round, Entries: []Entry{e}, AckSynced: durable})
		}
	}
	return e
}

func (c *Core) otherLeader() ID {
	if c.leader == c.cfg.ID {
		return None
	}
	return c.leader
}

// Written is called once the local journal holds every entry up to index
// written, so that it survives the brick's process (after a replaced
// tail: every entry of the journal as it now is). Entries commit once a
// quorum has written them.
func (c *Core) Written(index uint64) {
	c.written = max(c.written, min(index, c.st.LastIndex))
	c.askSync()
	c.progress()
}

// Synced is called once the local journal holds every entry up to index
// fdatasynced, so that it survives a power loss.
func (c *Core) Synced(index uint64) {
	c.synced = max(c.synced, min(index, c.written))
	c.progress()
}

func (c *Core) progress() {
	switch c.role {
	case Leader:
		c.ack(c.cfg.ID, c.written)
		c.syncAck(c.cfg.ID, c.synced)
	case Follower:
		c.ackLeader()
	}
}

// Sync asks a quorum to fdatasync every entry proposed so far, and
// returns the index Ready.SyncCommit must reach for that; 0 when this
// replica does not lead. Concurrent Syncs share the journals' fdatasyncs.
func (c *Core) Sync() uint64 { return c.SyncTo(c.st.LastIndex) }

// SyncTo is Sync for the entries up to index (the last one, if index is
// beyond it): a caller that waits for one entry to be durable does not
// wait for the entries proposed after it, nor ask for them.
func (c *Core) SyncTo(index uint64) uint64 {
	if c.role != Leader || !c.serves() {
		return 0
	}
	c.syncEager = syncEagerTicks
	target := min(index, c.st.LastIndex)
	if target <= c.syncCommit || target <= c.syncWant {
		return target // done, or asked already
	}
	c.syncWant = target
	c.askSync()
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID && c.syncMatch[p] < target {
			c.heartbeat(p)
		}
	}
	return target
}

// SyncCommit returns the index up to which every entry is committed and
// fdatasynced on a quorum, as this replica leads; 0 otherwise.
func (c *Core) SyncCommit() uint64 { return c.syncCommit }

// askSync asks the brick to sync its journal when entries it holds are
// wanted synced and it was not asked for them yet.
func (c *Core) askSync() {
	if c.syncWant > c.synced && c.syncAsked < min(c.syncWant, c.st.LastIndex) {
		c.syncAsked = c.st.LastIndex
		c.rd.Sync = c.st.LastIndex
	}
}

// ackLeader tells the leader how far our journal matches its own, written
// and synced. While an entry to be acknowledged once synced is not, it
// acknowledges no write beyond what is synced: the sync's ack follows.
func (c *Core) ackLeader() {
	idx, sidx := min(c.written, c.match), min(c.synced, c.match)
	if c.synced < c.holdAck {
		idx = min(idx, max(sidx, c.acked))
	}
	if c.leader == None || c.leader == c.cfg.ID || (idx <= c.acked && sidx <= c.syncAcked) {
		return
	}
	c.acked, c.syncAcked = max(c.acked, idx), max(c.syncAcked, sidx)
	c.send(Message{Type: MsgAppendResp, To: c.leader, Index: c.acked, Sync: c.syncAcked, Round: c.seenRound})
}

func (c *Core) syncAck(from ID, index uint64) {
	if index > c.syncMatch[from] {
		c.syncMatch[from] = index
	}
	c.advanceSyncCommit()
}

// sortedHeld returns every replica's index in m, ascending. It runs on
// every acknowledgement, twice: the slice is c.held, reused.
func (c *Core) sortedHeld(m map[ID]uint64) []uint64 {
	c.held = c.held[:0]
	for _, id := range c.cfg.Peers {
		c.held = append(c.held, m[id])
	}
	slices.Sort(c.held)
	return c.held
}

// advanceSyncCommit moves the synced commit index to the highest
// committed index a quorum holds synced.
func (c *Core) advanceSyncCommit() {
	held := c.sortedHeld(c.syncMatch)
	if q := min(held[len(held)-c.quorum], c.st.Commit); q > c.syncCommit {
		c.syncCommit = q
		c.rd.SyncCommit = q
	}
	// held[0] is 0 for a replica not heard from in this term, or being
	// resynced: it holds the index back.
	c.durableAll = max(c.durableAll, min(held[0], c.st.Commit))
}

// DurableEverywhere returns an index up to which every entry is
// committed and durable in the journal of every replica of the set: no
// replica can need them from another's journal, to catch up or to
// reconcile. A leader computes it from its followers' synced
// acknowledgements (a replica it has not heard from this term, or one
// being resynced, holds it at what was known before); followers learn it
// from the leader's heartbeats. It never decreases, and is 0 until known.
func (c *Core) DurableEverywhere() uint64 { return c.durableAll }

func (c *Core) ack(from ID, index uint64) {
	if index > c.matched[from] {
		c.matched[from] = index
	}
	if r, ok := c.resending[from]; ok && index > r.after {
		delete(c.resending, from)
	}
	c.advanceCommit()
}

// advanceCommit commits up to the highest index a quorum holds, if that
// entry is of this term.
func (c *Core) advanceCommit() {
	held := c.sortedHeld(c.matched)
	q := held[len(held)-c.quorum]
	if q <= c.st.Commit || q < c.termStart {
		return
	}
	for i := c.st.Commit + 1; i <= q; i++ {
		if e, ok := c.pending[i]; ok {
			delete(c.pending, i)
			delete(c.byReq, e.Req)
			c.rd.Committed = append(c.rd.Committed, e)
			c.rd.Replies = append(c.rd.Replies, Reply{Req: e.Req, Index: i})
		}
	}
	c.commitTo(q)
}

func (c *Core) commitTo(index uint64) {
	if index > c.st.Commit {
		c.st.Commit = index
		c.rd.Commit = index
	}
	if c.role == Leader && c.st.Commit >= c.termStart {
		c.serving = true
		c.advanceSyncCommit()
	}
}

// ReadIndex starts a read round: it asks every follower to confirm this
// replica still leads, and returns the round's number, or 0 when it does
// not lead. A read that arrived before the call may be served once
// Ready.ReadRound reaches the round, from a store that has applied every
// entry up to the commit index at the time of the call.
func (c *Core) ReadIndex() uint64 {
	if c.role != Leader || !c.serves() {
		return 0
	}
	c.startRound()
	// Ask only as many followers as a quorum needs, those that answered
	// the latest rounds: each round costs every follower asked a message
	// each way. The others learn the round from the next tick's
	// heartbeat, which confirms it should one asked have gone quiet.
	asked := make([]ID, 0, len(c.cfg.Peers)-1)
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID {
			asked = append(asked, p)
		}
	}
	slices.SortStableFunc(asked, func(a, b ID) int { return cmp.Compare(c.rounds[b], c.rounds[a]) })
	for _, p := range asked[:min(len(asked), c.quorum-1)] {
		c.heartbeat(p)
	}
	c.confirmRounds()
	return c.round
}

// startRound starts a read round, and notes when for the lease.
func (c *Core) startRound() {
	c.round++
	if c.cfg.LeaseDuration > 0 {
		c.starts = append(c.starts, roundStart{c.round, c.now})
	}
}

// leaseSpan is how long after a round started a quorum's confirmation
// of it holds the lease.
func (c *Core) leaseSpan() time.Duration {
	return c.cfg.LeaseDuration - time.Duration(float64(c.cfg.LeaseDuration)*MaxDrift)
}

// extendLease takes the lease from the rounds a quorum confirmed, and
// forgets those, and those too old to give one.
func (c *Core) extendLease() {
	span := c.leaseSpan()
	k := 0
	for ; k < len(c.starts) && (c.starts[k].round <= c.confirmed || c.starts[k].at+span <= c.now); k++ {
		if c.starts[k].round <= c.confirmed {
			c.lease = max(c.lease, c.starts[k].at+span)
		}
	}
	c.starts = c.starts[:copy(c.starts, c.starts[k:])]
}

func (c *Core) confirmRounds() {
	seen := make([]uint64, 0, len(c.cfg.Peers))
	for _, id := range c.cfg.Peers {
		if id == c.cfg.ID {
			seen = append(seen, c.round)
		} else {
			seen = append(seen, c.rounds[id])
		}
	}
	slices.Sort(seen)
	if r := seen[len(seen)-c.quorum]; r > c.confirmed {
		c.confirmed = r
		c.rd.ReadRound = r
		c.extendLease()
	}
}

// Tick is called periodically. A leader sends heartbeats, which carry its
// commit index and let a follower that lost messages ask for what it
// lacks, and, with leases, start a read round that renews the lease; a
// recovering leader repeats the probes and fetch that went unanswered.
func (c *Core) Tick() {
	switch c.role {
	case Leader:
		if c.cfg.LeaseDuration > 0 {
			c.startRound()
			c.extendLease() // forget rounds too old to help
		}
		if c.syncEager > 0 {
			c.syncEager--
		}
		for p, r := range c.resending {
			if r.ticks++; r.ticks >= resendAge {
				delete(c.resending, p)
			} else {
				c.resending[p] = r
			}
		}
		for _, p := range c.cfg.Peers {
			if p != c.cfg.ID {
				c.heartbeat(p)
			}
		}
	case Recovering:
		c.probe()
		if c.fetching != None {
			if c.fetchAge++; c.fetchAge < resendAge {
				return
			}
			c.fetching = None
		}
		c.maybeRecovered()
	}
}

// Step handles a message from a peer.
func (c *Core) Step(m Message) {
	if m.Term > c.promiseTerm && c.promised() {
		return // a newer term within a promise: it asks again
	}
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
	}
	switch m.Type {
	case MsgAppend:
		c.onAppend(m)
	case MsgAppendResp:
		if c.role != Leader {
			return
		}
		if m.Resyncing {
			c.nonVoting(m)
			return
		}
		if m.Round > c.rounds[m.From] {
			c.rounds[m.From] = m.Round
			c.confirmRounds()
		}
		if !m.Reject {
			c.ack(m.From, m.Index)
			c.syncAck(m.From, m.Sync)
		} else if m.LastIndex < c.st.LastIndex {
			c.resend(m.From, m.LastIndex)
		}
	case MsgProbe:
		if c.role == Follower {
			c.setLeader(m.From)
		}
		c.send(Message{Type: MsgProbeResp, To: m.From, LastTerm: c.st.LastTerm, LastIndex: c.st.LastIndex})
	case MsgProbeResp:
		if c.role == Recovering && !m.Reject && !m.Resyncing {
			c.probes[m.From] = m
			c.maybeRecovered()
		}
	case MsgFetch:
		// The brick answers from its journal: it sees this in Messages
		// addressed to itself, reads entries after m.Index and replies
		// with a FetchResp.
		c.rd.Messages = append(c.rd.Messages, m)
	case MsgFetchResp:
		if c.role == Recovering && !m.Reject && m.From == c.fetching && m.Index == c.recovered {
			c.catchUp(m)
		}
	}
}

func replyType(t MsgType) MsgType { return t + 1 }

// nonVoting takes an ack from a follower being resynced: it is fed what
// it lacks, as any follower, but what it holds counts toward no quorum,
// not even what it acknowledged before it was marked.
func (c *Core) nonVoting(m Message) {
	delete(c.matched, m.From)
	delete(c.syncMatch, m.From)
	delete(c.rounds, m.From)
	switch r, ok := c.resending[m.From]; {
	case m.Reject && m.LastIndex < c.st.LastIndex:
		c.resend(m.From, m.LastIndex)
	case !m.Reject && ok && m.Index > r.after:
		delete(c.resending, m.From)
	}
}

func (c *Core) onAppend(m Message) {
	if c.role != Follower {
		return // two leaders in one term cannot happen: terms are election revisions
	}
	c.setLeader(m.From)
	if c.cfg.LeaseDuration > 0 {
		c.promiseUntil = max(c.promiseUntil, c.now+c.cfg.LeaseDuration)
		c.promiseTerm = c.st.Term
	}
	c.seenRound = max(c.seenRound, m.Round)
	c.syncWant = max(c.syncWant, m.Sync)
	c.durableAll = max(c.durableAll, m.LastIndex)
	if m.Index > c.st.LastIndex {
		c.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: c.st.LastIndex, Round: c.seenRound})
		return
	}
	if !c.holds(m.Index, m.LogTerm) {
		// Our entry at Index came from a term the leader does not have
		// there: step back over that term's entries until the journals
		// agree (they do up to our commit index).
		t, _ := c.cfg.Log.Term(m.Index)
		hint := m.Index - 1
		for hint > c.st.Commit {
			if ht, ok := c.cfg.Log.Term(hint); !ok || ht != t {
				break
			}
			hint--
		}
		c.send(Message{Type: MsgAppendResp, To: m.From, Reject: true, LastIndex: hint, Round: c.seenRound})
		return
	}
	appended := len(c.rd.Appends)
	c.appendEntries(m.Entries)
	c.match = max(c.match, m.Index+uint64(len(m.Entries)))
	if m.AckSynced && len(m.Entries) > 0 {
		c.holdAck = max(c.holdAck, min(m.Entries[len(m.Entries)-1].Index, c.st.LastIndex))
		c.syncWant = max(c.syncWant, c.holdAck)
	}
	c.commitTo(min(m.Commit, c.match))
	c.askSync()
	if len(c.rd.Appends) == appended {
		// Nothing new to write: answer now, with the read round, and
		// hold back what must be acknowledged once synced, as ackLeader.
		idx, sidx := min(c.written, c.match), min(c.synced, c.match)
		if c.synced < c.holdAck {
			idx = min(idx, max(sidx, c.acked))
		}
		c.acked, c.syncAcked = idx, sidx
		c.send(Message{Type: MsgAppendResp, To: m.From, Index: c.acked, Sync: c.syncAcked, Round: c.seenRound})
	}
}

// holds reports whether the local journal has an entry of term at index.
// Committed entries are the same on every replica, even where the
// journal no longer holds them.
func (c *Core) holds(index, term uint64) bool {
	if index == 0 || index <= c.st.Commit {
		return true
	}
	t, ok := c.cfg.Log.Term(index)
	return ok && t == term
}

// appendEntries appends consecutive entries that follow a point where the
// journals agree. An entry the journal holds is skipped; one that differs
// replaces the local tail from its index on.
func (c *Core) appendEntries(entries []Entry) {
	for _, e := range entries {
		if e.Index > c.st.LastIndex+1 {
			return
		}
		if e.Index <= c.st.LastIndex {
			if c.holds(e.Index, e.Term) {
				continue
			}
			// An unacknowledged tail from an older term: the newer
			// leader's entry replaces it and everything after it.
			c.written = min(c.written, e.Index-1)
			c.synced = min(c.synced, e.Index-1)
			c.syncAsked = min(c.syncAsked, e.Index-1)
			c.holdAck = min(c.holdAck, e.Index-1)
		}
		c.st.LastIndex, c.st.LastTerm = e.Index, e.Term
		c.rd.Appends = append(c.rd.Appends, e)
	}
}

// resend asks the brick to ship entries after index to a lagging
// follower. One resend per follower is outstanding at a time, unless it
// asks for entries further back.
func (c *Core) resend(to ID, after uint64) {
	if r, ok := c.resending[to]; ok && after >= r.after {
		return
	}
	c.resending[to] = resend{after: after}
	c.rd.Messages = append(c.rd.Messages, Message{Type: MsgResend, From: to, To: c.cfg.ID, Term: c.st.Term, Index: after})
}

// maybeRecovered finishes recovery once a quorum has answered: if a peer's
// journal is ahead, fetch its tail first. Any quorum intersects every
// write quorum, so the most advanced answer holds every acknowledged write.
func (c *Core) maybeRecovered() {
	if c.role != Recovering || len(c.probes) < c.quorum || c.fetching != None {
		return
	}
	best := c.probes[c.cfg.ID]
	for _, id := range c.cfg.Peers {
		if p, ok := c.probes[id]; ok && (p.LastTerm > best.LastTerm || (p.LastTerm == best.LastTerm && p.LastIndex > best.LastIndex)) {
			best = p
		}
	}
	if best.From != c.cfg.ID {
		c.fetching, c.fetchAge = best.From, 0
		c.send(Message{Type: MsgFetch, To: best.From, Index: c.recovered})
		return
	}
	c.becomeLeader()
}

// catchUp takes entries of the best journal tail. Our journal agrees with
// it up to c.recovered (initially our commit index: committed entries are
// in every most advanced tail), so they follow on from there.
func (c *Core) catchUp(m Message) {
	c.fetching = None
	if len(m.Entries) == 0 {
		return // nothing durable to send yet; Tick asks again
	}
	before := len(c.rd.Appends)
	c.appendEntries(m.Entries)
	last := m.Entries[len(m.Entries)-1].Index
	if len(c.rd.Appends) == before && last > c.st.LastIndex {
		return // a gap: ignore, Tick asks again
	}
	c.recovered = min(last, c.st.LastIndex)
	c.probes[c.cfg.ID] = c.selfProbe()
	c.maybeRecovered()
}

func (c *Core) becomeLeader() {
	c.role = Leader
	c.probes = nil
	c.termStart = c.st.LastIndex + 1
	c.serving = c.st.LastIndex == c.st.Commit
	c.matched[c.cfg.ID] = min(c.written, c.st.LastIndex)
	c.syncMatch[c.cfg.ID] = min(c.synced, c.st.LastIndex)
	if c.st.LastIndex > c.st.Commit {
		// Entries recovered from older terms commit with the first entry
		// of this one.
		c.appendLocal(ReqID{}, [16]byte{}, nil, false)
		return
	}
	for _, p := range c.cfg.Peers {
		if p != c.cfg.ID {
			c.heartbeat(p)
		}
	}
}
