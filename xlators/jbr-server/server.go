package jbrserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluon-fs/gluon/xlators/fdl"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Ipc ops answered by the server; every other op goes to the child.
const (
	// IpcStep carries peer messages (replica to replica).
	IpcStep xl.IpcOp = "jbr.step"
	// IpcLeader returns who leads: Xdata{"leader": index, "term": term},
	// both decimal; the leader is -1 when unknown. See ParseLeader.
	IpcLeader xl.IpcOp = "jbr.leader"
	// IpcStatus returns Xdata{"status": Status as JSON}.
	IpcStatus xl.IpcOp = "jbr.status"
	// IpcResync marks the brick as being resynced in full, with
	// Xdata{"resync": "1"}, or clears the mark ("0"): see SetResyncing.
	IpcResync xl.IpcOp = "jbr.resync"
)

// DurableKey, present in a mutating request's xl.Call Xdata (any value),
// asks the leader to answer only once the request is durable: committed
// and fdatasynced in a quorum of journals, as an Fsync after it would
// wait for. jbr-client sets it on the writes it expects to be fsynced,
// and then answers their fsync without asking (see Durability in the
// package doc). It is not journaled.
const DurableKey = "jbr.durable"

// Consistency levels for reads (see the package doc).
const (
	Linearizable = "linearizable"
	Lease        = "lease"
	FollowerRead = "follower"
)

// Defaults.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultHeartbeat      = 100 * time.Millisecond
	// DefaultLeaseDuration is well below the shortest election TTL
	// (1s), so that followers' promises have ended by the time a dead
	// leader's etcd session expires: failover waits no longer.
	DefaultLeaseDuration = 500 * time.Millisecond
	// ResultsWindow is how many committed requests' results each brick
	// keeps to answer retries.
	ResultsWindow = 1 << 16
)

// Elector reports leadership events; *election.Campaign is one, and
// FakeElector another.
type Elector interface {
	Events() <-chan election.Event
}

// Options configure a Server.
type Options struct {
	Volume string
	Set    int // replica set index
	Self   int // this brick's index within the set, 0..Replicas-1
	// Replicas is the number of bricks in the set.
	Replicas int
	// Quorum is how many replicas, the leader included, must have an
	// entry written to their journals before it commits, and synced
	// before an fsync covering it returns; 0 means a majority.
	Quorum int
	// Peers reaches the other bricks of the set (protocol clients),
	// keyed by index.
	Peers map[int]xl.Xlator
	// Journal is this brick's journal, opened by the brick, which closes
	// it after Close.
	Journal *journal.Journal
	// Elector delivers leadership changes.
	Elector Elector
	// Consistency is Linearizable (default), Lease or FollowerRead.
	Consistency string
	// RequestTimeout bounds how long a request may wait for a quorum
	// (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Heartbeat is how often a leader heartbeats its followers, and the
	// granularity of request timeouts (default DefaultHeartbeat).
	Heartbeat time.Duration
	// LeaseDuration is how long a follower promises, on each append or
	// heartbeat, to help no newer leader; it gives the leader a read
	// lease of 90% of it from each heartbeat a quorum acknowledged (see
	// Reads in the package doc). Default DefaultLeaseDuration; negative
	// disables leases, so that every linearizable read takes a round.
	// It should be several heartbeats, and below the election TTL.
	LeaseDuration time.Duration
	// Sync makes every change applied to the child so far durable (over
	// a posix store: fdl.SyncDir(brick directory)). The server calls it
	// every CheckpointInterval (default fdl.DefaultCheckpointInterval)
	// and on Close, then marks the journal synced, which bounds what a
	// reboot replays and lets old terms be pruned. Without it a reboot
	// replays every entry known committed, from the first.
	Sync               func(context.Context) error
	CheckpointInterval time.Duration
	// JournalMaxBytes caps the journal: after each checkpoint, while it
	// holds more, its oldest applied and synced segments are deleted even
	// if a replica still needs them (see pruneJournal). 0 means no cap;
	// what every replica holds is pruned regardless. Pruning needs Sync.
	JournalMaxBytes int64
	// FsyncChild makes Fsync on the leader also fsync the local store;
	// without it Fsync only waits until the entries proposed before it
	// are committed and synced in a quorum of journals.
	FsyncChild bool
	Logger     *slog.Logger
	// Metrics, if set, receives the server's metrics.
	Metrics prometheus.Registerer
}

// Server is the JBR server translator. It sits on a brick above the local
// store (its child) and replicates every mutating request to the other
// bricks of its replica set.
type Server struct {
	xl.Funnel
	child   xl.Xlator
	epoch   time.Time // clock's origin
	opts    Options
	log     *slog.Logger
	j       *journal.Journal
	id      core.ID
	peers   map[core.ID]*peer
	quorum  int
	results *results
	apply   *applier
	metrics *metrics

	// client and seq name requests that come without a request id.
	client [16]byte
	seq    atomic.Uint64

	ctx     context.Context // cancelled by Close: applies, sends, fetches
	cancel  context.CancelFunc
	stop    chan struct{} // closed by Close: the loop ends
	done    chan struct{} // closed once the loop has ended
	wg      sync.WaitGroup
	closing sync.Once

	reqs    chan *request
	inbox   chan inbound
	fetches chan fetch
	kick    chan struct{} // the journal: durability moved, or it failed

	ckMu     sync.Mutex // one checkpoint at a time
	stepMu   sync.Mutex // one batch of peer messages into the inbox at a time
	snap     atomic.Pointer[snapshot]
	lastWarn atomic.Int64 // unix nanos of the last quorum warning
	// lastPruneWarn is unix nanos of the last journal-bound warning.
	lastPruneWarn atomic.Int64
	resync        resyncs // followers to resync in full (recon_resync.go)

	loop *loop
}

// snapshot is what the loop publishes for callers.
type snapshot struct {
	role              core.Role
	leader            core.ID
	term              uint64
	lastIndex, commit uint64
	lastTerm          uint64
	syncCommit        uint64        // committed and synced on a quorum up to here
	resyncing         bool          // the store is being resynced in full
	pruneTo           uint64        // journal index of core.DurableEverywhere: prunable up to here
	leaseUntil        time.Duration // core.LeaseUntil, on clock
}

// Status describes a server, for operators (gluon recon status).
type Status struct {
	Volume    string `json:"volume"`
	Set       int    `json:"set"`
	Self      int    `json:"self"`
	Role      string `json:"role"`
	Leader    int    `json:"leader"` // -1 when unknown
	Term      uint64 `json:"term"`
	LastIndex uint64 `json:"last_index"`
	LastTerm  uint64 `json:"last_term"`
	Commit    uint64 `json:"commit"`
	Applied   uint64 `json:"applied"`
	// SyncCommit is how far, as leader, it knows entries committed and
	// fdatasynced in a quorum of journals; 0 on a follower.
	SyncCommit  uint64 `json:"sync_commit,omitempty"`
	Consistency string `json:"consistency"`
	// Resyncing: the brick's store is being resynced in full; it neither
	// votes nor serves (SetResyncing).
	Resyncing bool `json:"resyncing,omitempty"`
	// LeaseReads and RoundReads count the linearizable reads this brick
	// took on as leader since it started (failed ones included): under
	// its read lease, or after a heartbeat round with a quorum because it
	// held none.
	LeaseReads uint64 `json:"lease_reads,omitempty"`
	RoundReads uint64 `json:"round_reads,omitempty"`
}

var (
	_ xl.Xlator    = (*Server)(nil)
	_ xl.Lifecycle = (*Server)(nil)
)

// New starts a JBR server over child. It rebuilds the replicated log from
// the journal and, before returning, applies the entries known committed
// but not applied (a crash between the two); entries it cannot tell are
// committed wait for the leader to say so. It starts as a follower with
// no known leader.
func New(child xl.Xlator, opts Options) (*Server, error) {
	if err := check(child, &opts); err != nil {
		return nil, err
	}
	log := opts.Logger.With("xlator", "jbr-server", "volume", opts.Volume, "set", opts.Set, "brick", opts.Self)
	cs, err := scanJournal(opts.Journal)
	if err != nil {
		return nil, fmt.Errorf("jbr: reading the journal: %w", err)
	}
	lastIndex, lastTerm := cs.log.last()
	st := core.State{Term: opts.Journal.Term(), LastTerm: lastTerm, LastIndex: lastIndex, Commit: cs.commit}
	peers := []core.ID{}
	for i := range opts.Replicas {
		peers = append(peers, core.ID(i))
	}
	c, err := core.New(core.Config{ID: core.ID(opts.Self), Peers: peers, Log: cs.log, Quorum: opts.Quorum,
		LeaseDuration: max(opts.LeaseDuration, 0)}, st)
	if err != nil {
		return nil, err
	}
	c.Written(lastIndex) // the journal is synced once open
	c.Synced(lastIndex)

	s := &Server{
		child:   child,
		epoch:   time.Now(),
		opts:    opts,
		log:     log,
		j:       opts.Journal,
		id:      core.ID(opts.Self),
		peers:   map[core.ID]*peer{},
		quorum:  opts.Quorum,
		results: newResults(ResultsWindow),
		metrics: newMetrics(opts),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		reqs:    make(chan *request, 256),
		inbox:   make(chan inbound, 256),
		fetches: make(chan fetch, 64),
		kick:    make(chan struct{}, 1),
	}
	if s.quorum == 0 {
		s.quorum = opts.Replicas/2 + 1
	}
	s.Funnel.H = s.handle
	rand.Read(s.client[:]) // never fails on Linux
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.apply = newApplier(s, cs.applied)
	for i, x := range opts.Peers {
		s.peers[core.ID(i)] = newPeer(s, core.ID(i), x)
	}
	s.loop = newLoop(s, c, cs)
	s.publish()

	// Cold start: apply what is known committed, as FDL replays.
	if n := s.loop.submitApplies(); n > 0 {
		log.Info("jbr: replaying committed entries not applied before a restart", "entries", n, "commit", cs.commit)
		s.apply.wait(context.Background(), xl.GFID{}, s.loop.submitted)
	}
	log.Info("jbr: started", "term", st.Term, "last_index", lastIndex, "commit", cs.commit,
		"applied", s.apply.appliedIndex(), "journal_records", cs.records)
	// recon: reconciliation hooks in here, before the brick joins its
	// set: it sees Status and the journal, and may repair the store.

	s.j.Notify(s.kick)
	s.wg.Add(2 + len(s.peers))
	go func() { defer s.wg.Done(); s.loop.run() }()
	go func() { defer s.wg.Done(); s.fetcher(s.ctx) }()
	if opts.Sync != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.checkpointer(s.ctx) }()
	} else {
		log.Warn("jbr: no store sync configured; journal entries are never marked synced")
	}
	for _, p := range s.peers {
		go func() { defer s.wg.Done(); p.run(s.ctx) }()
	}
	return s, nil
}

func check(child xl.Xlator, o *Options) error {
	switch {
	case child == nil:
		return errors.New("jbr: no child")
	case o.Journal == nil:
		return errors.New("jbr: no journal")
	case o.Elector == nil:
		return errors.New("jbr: no elector")
	case o.Replicas < 1:
		return fmt.Errorf("jbr: %d replicas", o.Replicas)
	case o.Self < 0 || o.Self >= o.Replicas:
		return fmt.Errorf("jbr: brick index %d outside a set of %d", o.Self, o.Replicas)
	case o.Quorum < 0 || o.Quorum > o.Replicas:
		return fmt.Errorf("jbr: quorum %d impossible with %d replicas", o.Quorum, o.Replicas)
	case len(o.Peers) != o.Replicas-1:
		return fmt.Errorf("jbr: %d peers for a set of %d", len(o.Peers), o.Replicas)
	case o.RequestTimeout < 0 || o.Heartbeat < 0 || o.CheckpointInterval < 0:
		return errors.New("jbr: negative timeout")
	}
	for i, x := range o.Peers {
		if i < 0 || i >= o.Replicas || i == o.Self || x == nil {
			return fmt.Errorf("jbr: bad peer %d", i)
		}
	}
	switch o.Consistency {
	case "":
		o.Consistency = Linearizable
	case Linearizable, Lease, FollowerRead:
	default:
		return fmt.Errorf("jbr: unknown consistency %q (want %s, %s or %s)", o.Consistency, Linearizable, Lease, FollowerRead)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = fdl.DefaultCheckpointInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Close stops the server: requests in flight fail with ENOTCONN, entries
// being applied finish, the rest stay in the journal for the next start.
// With Options.Sync it takes a last checkpoint, so a clean shutdown
// leaves nothing to replay. It closes neither the journal nor the child.
func (s *Server) Close() error {
	var err error
	s.closing.Do(func() {
		close(s.stop)
		<-s.done
		s.j.Notify(nil)
		s.cancel()
		s.apply.close()
		s.wg.Wait()
		s.metrics.group.Unregister()
		if s.opts.Sync != nil {
			err = s.checkpoint(context.Background())
		}
	})
	return err
}

// Status returns the server's state.
func (s *Server) Status() Status {
	sn := s.snap.Load()
	return Status{
		Volume: s.opts.Volume, Set: s.opts.Set, Self: s.opts.Self,
		Role: sn.role.String(), Leader: int(sn.leader), Term: sn.term,
		LastIndex: sn.lastIndex, LastTerm: sn.lastTerm, Commit: sn.commit, SyncCommit: sn.syncCommit,
		Applied: s.apply.appliedIndex(), Consistency: s.opts.Consistency,
		Resyncing:  sn.resyncing,
		LeaseReads: s.metrics.leaseReads.Load(), RoundReads: s.metrics.roundReads.Load(),
	}
}

// SetResyncing marks this brick as being resynced in full, or clears the
// mark once its store is repaired (package brick does, from recon's etcd
// marks). While marked it journals and applies what its leader sends,
// but counts toward no quorum, refuses follower reads (EREMOTE), and
// takes no requests should it be elected.
func (s *Server) SetResyncing(on bool) syscall.Errno {
	kind := resyncOff
	if on {
		kind = resyncOn
	}
	return s.ask(&request{kind: kind}).errno
}

func (s *Server) setID() setID { return setID{volume: s.opts.Volume, set: uint32(s.opts.Set)} }

// ParseLeader reads an IpcLeader reply.
func ParseLeader(x xl.Xdata) (leader int, term uint64, err error) {
	leader, err = strconv.Atoi(string(x["leader"]))
	if err == nil {
		term, err = strconv.ParseUint(string(x["term"]), 10, 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("jbr: bad leader reply: %w", err)
	}
	return leader, term, nil
}

// handle routes every op: Ipc, local-only fd ops, writes, reads.
func (s *Server) handle(ctx context.Context, f *xl.Fop) *xl.Result {
	switch {
	case f.Op == xl.OpIpc:
		return s.ipc(ctx, f)
	case isRecon(ctx):
		return s.recon(ctx, f)
	case f.Op == xl.OpFlush || f.Op == xl.OpRelease || f.Op == xl.OpReleasedir:
		// Fds are the local store's: they never replicate.
		return xl.Dispatch(ctx, s.child, f)
	case f.Op == xl.OpFsync:
		return s.fsync(ctx, f)
	case f.Op == xl.OpOpen && f.Mutates():
		return s.openTrunc(ctx, f)
	case f.Mutates():
		return s.write(ctx, f)
	}
	return s.read(ctx, f)
}

func (s *Server) ipc(ctx context.Context, f *xl.Fop) *xl.Result {
	switch xl.IpcOp(f.Name) {
	case IpcStep:
		return &xl.Result{Errno: s.step(ctx, f.Xdata)}
	case IpcLeader:
		sn := s.snap.Load()
		leader := sn.leader
		if sn.role != core.Leader && leader == s.id {
			leader = core.None // recovering: not serving yet
		}
		return &xl.Result{Xdata: xl.Xdata{
			"leader": []byte(strconv.Itoa(int(leader))),
			"term":   []byte(strconv.FormatUint(sn.term, 10)),
		}}
	case IpcStatus:
		b, err := json.Marshal(s.Status())
		if err != nil {
			return &xl.Result{Errno: syscall.EIO}
		}
		return &xl.Result{Xdata: xl.Xdata{"status": b}}
	case IpcReconJournal:
		return s.reconJournal()
	case IpcResync:
		on, err := strconv.ParseBool(string(f.Xdata["resync"]))
		if err != nil {
			return &xl.Result{Errno: syscall.EINVAL}
		}
		return &xl.Result{Errno: s.SetResyncing(on)}
	}
	return xl.Dispatch(ctx, s.child, f)
}

// step hands peer messages to the loop, in order, and returns before
// they are processed: answers travel as messages of their own.
func (s *Server) step(ctx context.Context, x xl.Xdata) syscall.Errno {
	id, ms, err := decodeMessages(x)
	if err != nil {
		s.log.Warn("jbr: refusing peer messages", "err", err)
		return syscall.EINVAL
	}
	if id != s.setID() {
		s.log.Error("jbr: refusing messages meant for another replica set; check the volfile",
			"their_volume", id.volume, "their_set", id.set)
		return syscall.EINVAL
	}
	ins := make([]inbound, 0, len(ms))
	for _, m := range ms {
		if m.To != s.id || m.From == s.id || s.peers[m.From] == nil {
			s.log.Warn("jbr: refusing a peer message not meant for this brick", "from", m.From, "to", m.To)
			return syscall.EINVAL
		}
		in := inbound{m: m}
		for _, e := range m.Entries {
			en, err := newEntry(e)
			if err != nil {
				s.log.Warn("jbr: refusing peer messages", "from", m.From, "err", err)
				return syscall.EINVAL
			}
			in.entries = append(in.entries, en)
		}
		ins = append(ins, in)
	}
	// Peers do not wait for one batch to be taken before sending the
	// next, and the protocol serves them in order as a rule, not always:
	// keep each batch whole. The core copes with messages out of order,
	// as with lost ones.
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	for _, in := range ins {
		select {
		case s.inbox <- in:
		case <-s.stop:
			return syscall.ENOTCONN
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
	return 0
}

// clock is the monotonic time the core's leases are measured in. It
// keeps running while the process is stopped (SIGSTOP), not while the
// machine is suspended.
func (s *Server) clock() time.Duration { return time.Since(s.epoch) }
