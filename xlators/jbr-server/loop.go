package jbrserver

import (
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
)

// inbound is a peer message with its entries decoded.
type inbound struct {
	m       core.Message
	entries []*entry
}

// pendingRound is a read round waiting for a quorum's confirmation.
type pendingRound struct {
	round, index uint64
	reqs         []*request
}

type barrierWait struct {
	index uint64
	r     *request
}

// loop is the one goroutine that owns the core and carries out its
// Ready: persist the term, queue appends to the journal (it says when
// they are written, and when synced), ask the journal to sync, send
// messages, hand committed entries to the applier, answer callers.
type loop struct {
	s   *Server
	c   *core.Core
	log *jlog

	reqs      map[core.ReqID][]*request // proposals waiting to commit
	proposing map[core.ReqID]*entry     // proposed in this step
	stage     map[uint64]*entry         // entries of the message being stepped
	reads     []*request                // reads waiting for the next round
	rounds    []pendingRound
	barriers  []barrierWait
	committed uint64 // outcomes registered up to here
	submitted uint64 // handed to the applier up to here
	wj        uint64 // the journal is written up to this journal index
	dj        uint64 // ... and fdatasynced up to this one
	led       bool   // led when last processed
	broken    bool   // the journal failed: refuse everything
}

func newLoop(s *Server, c *core.Core, cs *coldStart) *loop {
	l := &loop{
		s: s, c: c, log: cs.log,
		reqs:      map[core.ReqID][]*request{},
		proposing: map[core.ReqID]*entry{},
		stage:     map[uint64]*entry{},
		committed: cs.applied,
		submitted: cs.applied,
	}
	l.wj, _ = s.j.Written()
	l.dj, _ = s.j.Durable()
	l.commit(cs.commit)
	return l
}

func (l *loop) run() {
	defer close(l.s.done)
	defer l.failAll(errStopped)
	tick := time.NewTicker(l.s.opts.Heartbeat)
	defer tick.Stop()
	// A commit no append carried to a follower goes in a heartbeat of
	// its own a little later, unless the next write's append takes it.
	notify := time.NewTimer(time.Hour)
	notify.Stop()
	defer notify.Stop()
	notifying := false
	events := l.s.opts.Elector.Events()
	for {
		select {
		case <-l.s.stop:
			return
		case ev, ok := <-events:
			l.c.SetTime(l.s.clock())
			if !ok {
				events = nil
				l.c.SessionLost()
				break
			}
			l.elector(ev)
		case in := <-l.s.inbox:
			if !l.broken {
				l.c.SetTime(l.s.clock())
				for _, e := range in.entries {
					l.stage[e.Index] = e
				}
				l.c.Step(in.m)
			}
		case r := <-l.s.reqs:
			l.c.SetTime(l.s.clock())
			l.request(r)
			// Take what else is waiting, so that reads share a round.
		drain:
			for range 256 {
				select {
				case r := <-l.s.reqs:
					l.request(r)
				default:
					break drain
				}
			}
		case <-l.s.kick:
			l.onDurable()
		case <-notify.C:
			notifying = false
			l.c.NotifyCommit()
		case now := <-tick.C:
			l.c.SetTime(l.s.clock()) // may start leading a term won within a promise
			l.c.Tick()
			l.expire(now)
		}
		l.process()
		if len(l.reads) > 0 {
			l.startRound()
			l.process()
		}
		if !notifying && l.c.CommitUnsent() {
			notify.Reset(l.s.opts.Heartbeat / commitNotifyDiv)
			notifying = true
		}
	}
}

// commitNotifyDiv sets how long, as a fraction of the heartbeat, a
// leader waits for an append to carry a commit to a follower before it
// sends it alone: 5 ms by default, well past the next request of a busy
// client, and a bound on how long an idle follower lags.
const commitNotifyDiv = 20

func (l *loop) elector(ev election.Event) {
	switch ev.Kind {
	case election.Elected:
		if ev.Leader == int(l.s.id) && !l.broken {
			l.s.log.Info("jbr: elected; recovering before taking requests", "term", ev.Term)
			l.c.Elected(ev.Term)
		}
	case election.Observed:
		l.c.Observed(core.ID(ev.Leader), ev.Term)
	case election.Lost:
		l.c.SessionLost()
	}
}

func (l *loop) request(r *request) {
	role, _ := l.c.Role()
	switch {
	case r.kind == resyncOn || r.kind == resyncOff:
		switch on := r.kind == resyncOn; {
		case on && !l.c.Resyncing():
			l.s.log.Warn("jbr: being resynced in full: this brick neither votes nor serves until its store is repaired")
		case !on && l.c.Resyncing():
			l.s.log.Warn("jbr: full resync done: this brick votes and serves again")
		}
		l.c.SetResyncing(r.kind == resyncOn)
		l.s.publish() // reads see the mark once the caller is answered
		r.reply <- answer{}
	case l.broken:
		r.reply <- answer{errno: syscall.EIO}
	case role != core.Leader:
		r.reply <- answer{errno: syscall.EREMOTE}
	case r.kind == propose:
		if out := l.s.results.get(r.e.Req); out != nil {
			r.reply <- answer{out: out} // a retry of a committed request
			return
		}
		first := len(l.reqs[r.e.Req]) == 0
		l.reqs[r.e.Req] = append(l.reqs[r.e.Req], r)
		if first {
			l.proposing[r.e.Req] = r.e
			if r.durable {
				l.c.ProposeDurable(r.e.Req, r.e.Key, r.e.Data)
			} else {
				l.c.Propose(r.e.Req, r.e.Key, r.e.Data)
			}
			l.s.metrics.proposals.Inc()
		}
	case r.kind == readRound:
		l.reads = append(l.reads, r)
	case r.kind == barrier || r.kind == syncTo:
		var target uint64
		if r.kind == barrier {
			target = l.c.Sync()
		} else {
			target = l.c.SyncTo(r.index)
		}
		if l.c.SyncCommit() >= target {
			r.reply <- answer{}
		} else {
			l.barriers = append(l.barriers, barrierWait{target, r})
		}
	}
}

func (l *loop) startRound() {
	round := l.c.ReadIndex()
	if round == 0 {
		for _, r := range l.reads {
			r.reply <- answer{errno: syscall.EREMOTE}
		}
	} else {
		l.rounds = append(l.rounds, pendingRound{round: round, index: l.c.State().Commit, reqs: l.reads})
	}
	l.reads = nil
}

// process carries out the core's Ready.
func (l *loop) process() {
	rd := l.c.Ready()
	l.s.publish() // callers answered below see the role they were answered in
	if !rd.Empty() && !l.broken {
		l.carryOut(rd)
	}
	if !l.broken {
		// Also when the core had nothing to say: an entry committed by
		// the followers' acks becomes appliable here when the local
		// journal catches up, which moves no commit index.
		l.submitApplies()
	}
	clear(l.proposing)
	clear(l.stage)
	if role, _ := l.c.Role(); role != core.Leader && l.led {
		// Reads and fsyncs waiting on this leadership cannot be served.
		l.failReads(syscall.ENOTCONN)
	}
	l.led = l.s.publish() == core.Leader
}

func (l *loop) carryOut(rd core.Ready) {
	if rd.Term != 0 {
		if err := l.s.j.StartTerm(rd.Term); err != nil {
			l.fail(err)
			return
		}
	}
	for _, ce := range rd.Appends {
		if err := l.append(ce); err != nil {
			l.fail(err)
			return
		}
	}
	if rd.Sync != 0 {
		l.s.j.RequestSync() // every append so far, which covers rd.Sync
	}
	for _, m := range rd.Messages {
		l.route(m)
	}
	if rd.Commit != 0 {
		l.commit(rd.Commit)
	}
	for _, rep := range rd.Replies {
		l.reply(rep)
	}
	if rd.ReadRound != 0 {
		l.confirm(rd.ReadRound)
	}
	if rd.SyncCommit != 0 {
		l.synced(rd.SyncCommit)
	}
}

// append queues an entry to the journal; the journal kicks the loop when
// it is written, and again when it is synced.
func (l *loop) append(ce core.Entry) error {
	var e *entry
	switch {
	case len(ce.Data) == 0:
		e = &entry{Entry: ce, noop: true}
	case l.stage[ce.Index] != nil && l.stage[ce.Index].Term == ce.Term:
		e = l.stage[ce.Index]
	case l.proposing[ce.Req] != nil:
		e = l.proposing[ce.Req]
		e.Term, e.Index = ce.Term, ce.Index
	default:
		var err error
		if e, err = newEntry(ce); err != nil {
			return err
		}
	}
	jidx, err := l.s.j.Enqueue(e.record(l.c.State().Commit))
	if err != nil {
		return err
	}
	l.log.add(e, jidx)
	return nil
}

func (l *loop) route(m core.Message) {
	if (m.Type == core.MsgFetch || m.Type == core.MsgResend) && m.To == l.s.id {
		sp := l.log.spans(m.Index)
		if l.resyncNeeded(m, sp) {
			return // pruned from the journal: recon resyncs the peer (recon_resync.go)
		}
		// Answer from the journal, off the loop: a recovering leader's
		// fetch, or our share of a lagging follower's entries.
		st := l.c.State()
		resp := core.Message{Type: core.MsgFetchResp, From: l.s.id, To: m.From, Term: st.Term, Index: m.Index}
		if m.Type == core.MsgResend {
			resp.Type = core.MsgAppend
			resp.LogTerm, _ = l.log.Term(m.Index)
			resp.Commit = st.Commit
		}
		select {
		case l.s.fetches <- fetch{msg: resp, spans: sp}:
		default: // the fetcher is busy: the peer asks again
		}
		return
	}
	if p := l.s.peers[m.To]; p != nil {
		p.send(m)
	}
}

// commit registers the outcomes of newly committed requests, so that a
// retry finds them from now on.
func (l *loop) commit(index uint64) {
	role, _ := l.c.Role()
	for i := l.committed + 1; i <= index; i++ {
		e := l.log.entries[i]
		if e == nil || e.noop {
			continue
		}
		e.local = role == core.Leader && len(l.reqs[e.Req]) > 0
		e.out = newOutcome(i, e.local)
		l.s.results.add(e.Req, e.out)
		l.s.metrics.commits.Inc()
	}
	l.committed = max(l.committed, index)
}

// synced releases the fsyncs a quorum's journals now cover.
func (l *loop) synced(index uint64) {
	keep := l.barriers[:0]
	for _, b := range l.barriers {
		if b.index <= index {
			b.r.reply <- answer{}
		} else {
			keep = append(keep, b)
		}
	}
	l.barriers = keep
}

func (l *loop) reply(rep core.Reply) {
	rs := l.reqs[rep.Req]
	delete(l.reqs, rep.Req)
	var a answer
	switch {
	case rep.Err == core.ErrNotLeader:
		a.errno = syscall.EREMOTE
	case rep.Err != nil:
		a.errno = syscall.ENOTCONN
	default:
		if a.out = l.s.results.get(rep.Req); a.out == nil {
			a.errno = syscall.ENOTCONN
		}
	}
	now := time.Now()
	for k, r := range rs {
		if a.errno == 0 {
			l.s.metrics.latency.Observe(now.Sub(r.start).Seconds())
		}
		// The first caller applies the entry (see outcome.turn).
		a.apply = k == 0 && a.out != nil && a.out.turn != nil
		r.reply <- a
	}
}

func (l *loop) confirm(round uint64) {
	k := 0
	for ; k < len(l.rounds) && l.rounds[k].round <= round; k++ {
		for _, r := range l.rounds[k].reqs {
			r.reply <- answer{index: l.rounds[k].index}
		}
	}
	l.rounds = l.rounds[k:]
}

// onDurable takes the journal's news: it is written or synced further,
// or failed.
func (l *loop) onDurable() {
	wj, err := l.s.j.Written()
	if err != nil && !l.broken {
		l.fail(err)
		return
	}
	dj, _ := l.s.j.Durable()
	if wj > l.wj {
		l.wj = wj
		l.c.Written(l.log.durable(wj))
		for _, j := range l.log.takeReplaced(wj) {
			l.s.j.MarkApplied(j)
		}
	}
	if dj > l.dj {
		l.dj = dj
		l.c.Synced(l.log.durable(dj))
	}
}

// submitApplies hands the applier every entry both committed and written
// here, in order, and returns how many.
func (l *loop) submitApplies() int {
	limit := min(l.committed, l.log.durable(l.wj))
	n := 0
	for ; l.submitted < limit; n++ {
		i := l.submitted + 1
		e := l.log.entries[i]
		if e == nil {
			l.s.log.Error("jbr: committed entry missing from the log", "index", i)
			break
		}
		delete(l.log.entries, i)
		l.s.apply.submit(e)
		l.submitted = i
	}
	return n
}

// expire fails requests still waiting for a quorum at their deadline:
// ENOTCONN, which jbr-client retries with the same request id.
func (l *loop) expire(now time.Time) {
	for id, rs := range l.reqs {
		keep := rs[:0]
		for _, r := range rs {
			if now.After(r.deadline) {
				r.reply <- answer{errno: syscall.ENOTCONN}
			} else {
				keep = append(keep, r)
			}
		}
		if len(keep) == 0 {
			delete(l.reqs, id)
		} else {
			l.reqs[id] = keep
		}
	}
	for len(l.rounds) > 0 && now.After(l.rounds[0].reqs[0].deadline) {
		for _, r := range l.rounds[0].reqs {
			r.reply <- answer{errno: syscall.ENOTCONN}
		}
		l.rounds = l.rounds[1:]
	}
	keep := l.barriers[:0]
	for _, b := range l.barriers {
		if now.After(b.r.deadline) {
			b.r.reply <- answer{errno: syscall.ENOTCONN}
		} else {
			keep = append(keep, b)
		}
	}
	l.barriers = keep
}

func (l *loop) failReads(e syscall.Errno) {
	for _, r := range l.reads {
		r.reply <- answer{errno: e}
	}
	for _, pr := range l.rounds {
		for _, r := range pr.reqs {
			r.reply <- answer{errno: e}
		}
	}
	for _, b := range l.barriers {
		b.r.reply <- answer{errno: e}
	}
	l.reads, l.rounds, l.barriers = nil, nil, nil
}

func (l *loop) failAll(e syscall.Errno) {
	for id, rs := range l.reqs {
		for _, r := range rs {
			r.reply <- answer{errno: e}
		}
		delete(l.reqs, id)
	}
	l.failReads(e)
	// Callers that got here after the loop stopped.
	for {
		select {
		case r := <-l.s.reqs:
			r.reply <- answer{errno: e}
		default:
			return
		}
	}
}

// fail stops the brick from taking part: the journal refused a write, so
// nothing it says can be trusted to be durable.
func (l *loop) fail(err error) {
	if l.broken {
		return
	}
	l.broken = true
	l.s.log.Error("jbr: journal failed; this brick leaves its replica set until restarted", "err", err)
	l.c.SessionLost()
	l.c.Ready() // nothing of it can be carried out
	for id, rs := range l.reqs {
		for _, r := range rs {
			r.reply <- answer{errno: syscall.EIO}
		}
		delete(l.reqs, id)
	}
	l.failReads(syscall.EIO)
}

// publish makes the loop's view visible to callers, and returns the
// role. Loop (and New) only.
func (s *Server) publish() core.Role {
	role, leader := s.loop.c.Role()
	st := s.loop.c.State()
	if old := s.snap.Load(); old != nil && (old.role != role || old.leader != leader || old.term != st.Term) {
		s.log.Info("jbr: leadership changed", "role", role, "leader", leader, "term", st.Term)
	}
	s.snap.Store(&snapshot{role: role, leader: leader, term: st.Term, lastIndex: st.LastIndex, lastTerm: st.LastTerm,
		commit: st.Commit, syncCommit: s.loop.c.SyncCommit(), resyncing: s.loop.c.Resyncing(),
		pruneTo: s.loop.prunable(), leaseUntil: s.loop.c.LeaseUntil()})
	s.metrics.role.Set(float64(role))
	s.metrics.term.Set(float64(st.Term))
	return role
}
