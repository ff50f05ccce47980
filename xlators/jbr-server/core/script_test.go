package core

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memLog is an in-memory journal: the fake that ships beside the brick's real one.
type memLog struct{ terms map[uint64]uint64 }

func (l *memLog) Term(i uint64) (uint64, bool) { t, ok := l.terms[i]; return t, ok }

// replica is one simulated brick: a core, its journal, its applied state.
type replica struct {
	core      *Core
	log       *memLog
	entries   map[uint64]Entry
	persisted uint64 // term on "disk"
	applied   []string
	appliedTo uint64
	readRound uint64
	// syncCommit is the leader's synced commit index; holdSync makes the
	// journal ignore sync requests until released (a slow disk).
	syncCommit uint64
	holdSync   bool
	syncDue    bool
}

// cluster drives several cores with a deterministic network. A script
// line is one command; "expect" lines check the observable outcome.
type cluster struct {
	t       *testing.T
	r       map[ID]*replica
	inbox   []Message
	cut     map[ID]bool
	replies []string
}

func newCluster(t *testing.T, n, quorum int, lease time.Duration) *cluster {
	c := &cluster{t: t, r: map[ID]*replica{}, cut: map[ID]bool{}}
	peers := make([]ID, n)
	for i := range peers {
		peers[i] = ID(i + 1)
	}
	for _, id := range peers {
		log := &memLog{terms: map[uint64]uint64{}}
		core, err := New(Config{ID: id, Peers: peers, Quorum: quorum, Log: log, LeaseDuration: lease}, State{})
		if err != nil {
			t.Fatal(err)
		}
		c.r[id] = &replica{core: core, log: log, entries: map[uint64]Entry{}}
	}
	return c
}

// restart rebuilds a replica's core from what it persisted, as a brick
// restart does.
func (c *cluster) restart(id ID) {
	r := c.r[id]
	st := State{Term: r.persisted, Commit: r.appliedTo}
	for i, e := range r.entries {
		if i > st.LastIndex {
			st.LastIndex, st.LastTerm = i, e.Term
		}
	}
	core, err := New(r.core.cfg, st)
	if err != nil {
		c.t.Fatal(err)
	}
	core.Written(st.LastIndex) // the whole journal is on disk
	core.Synced(st.LastIndex)
	r.core = core
}

// process carries out one replica's Ready, as the brick's I/O loop does.
func (c *cluster) process(id ID) bool {
	r := c.r[id]
	rd := r.core.Ready()
	if rd.Empty() && !(r.syncDue && !r.holdSync) {
		return false
	}
	if rd.Term != 0 {
		if rd.Term < r.persisted {
			c.t.Fatalf("replica %d: term went back from %d to %d", id, r.persisted, rd.Term)
		}
		r.persisted = rd.Term
	}
	var top uint64
	for _, e := range rd.Appends {
		for i := range r.entries {
			if i >= e.Index {
				delete(r.entries, i) // a newer term's entry replaces the tail
				delete(r.log.terms, i)
			}
		}
		r.entries[e.Index] = e
		r.log.terms[e.Index] = e.Term
		top = e.Index
	}
	for _, m := range rd.Messages {
		if (m.Type == MsgFetch || m.Type == MsgResend) && m.To == id {
			// Answer from the journal: a fetch, or a resend to a
			// lagging follower as an Append.
			var es []Entry
			for i := m.Index + 1; ; i++ {
				e, ok := r.entries[i]
				if !ok {
					break
				}
				es = append(es, e)
			}
			typ := MsgFetchResp
			if m.Type == MsgResend {
				typ = MsgAppend
			}
			c.inbox = append(c.inbox, Message{Type: typ, From: id, To: m.From, Term: r.core.State().Term,
				Index: m.Index, LogTerm: r.entries[m.Index].Term, Commit: r.core.State().Commit, Entries: es})
			continue
		}
		c.inbox = append(c.inbox, m)
	}
	if top != 0 {
		r.core.Written(top)
	}
	if rd.Sync != 0 {
		r.syncDue = true
	}
	if r.syncDue && !r.holdSync {
		// Sync everything written, as an fdatasync does.
		r.syncDue = false
		var last uint64
		for i := range r.entries {
			last = max(last, i)
		}
		r.core.Synced(last)
	}
	if rd.SyncCommit != 0 {
		r.syncCommit = rd.SyncCommit
	}
	// Every role applies what committed; no-ops have nothing to apply.
	for ; r.appliedTo < rd.Commit; r.appliedTo++ {
		if e := r.entries[r.appliedTo+1]; len(e.Data) > 0 {
			r.applied = append(r.applied, string(e.Data))
		}
	}
	if rd.ReadRound != 0 {
		r.readRound = rd.ReadRound
	}
	for _, rep := range rd.Replies {
		s := fmt.Sprintf("%d:%d ok", id, rep.Req.Seq)
		if rep.Err != nil {
			s = fmt.Sprintf("%d:%d %v leader=%d", id, rep.Req.Seq, rep.Err, rep.Leader)
		}
		c.replies = append(c.replies, s)
	}
	return true
}

func (c *cluster) ids() []ID {
	ids := make([]ID, 0, len(c.r))
	for id := range c.r {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	return ids
}

// round processes every replica's Ready, then delivers what was sent.
// Messages from or to a cut replica are lost.
func (c *cluster) round() bool {
	moved := false
	for _, id := range c.ids() {
		moved = c.process(id) || moved
	}
	msgs := c.inbox
	c.inbox = nil
	for _, m := range msgs {
		if c.cut[m.From] || c.cut[m.To] {
			continue
		}
		c.r[m.To].core.Step(m)
		moved = true
	}
	return moved
}

// stabilize runs rounds until nothing moves. Once nothing does, leaders
// notify followers of commits no append carried, as their bricks do
// shortly after.
func (c *cluster) stabilize() {
	for range 1000 {
		if c.round() {
			continue
		}
		quiet := true
		for _, id := range c.ids() {
			if r := c.r[id]; r.core.CommitUnsent() {
				r.core.NotifyCommit()
				quiet = false
			}
		}
		if quiet {
			return
		}
	}
	c.t.Fatal("no quiescence after 1000 rounds")
}

func kv(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

func num(t *testing.T, s string) uint64 {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("bad number %q", s)
	}
	return n
}

func (c *cluster) run(line string) {
	f := strings.Fields(line)
	t := c.t
	id := func(i int) ID { return ID(num(t, f[i])) }
	switch f[0] {
	case "elect": // elect ID TERM
		c.r[id(1)].core.Elected(num(t, f[2]))
	case "observe": // observe ID LEADER TERM
		c.r[id(1)].core.Observed(id(2), num(t, f[3]))
	case "session-lost":
		c.r[id(1)].core.SessionLost()
	case "tick": // tick ID
		c.r[id(1)].core.Tick()
	case "notify-commit": // notify-commit ID
		c.r[id(1)].core.NotifyCommit()
	case "expect-commit-unsent": // expect-commit-unsent ID yes|no
		if got := c.r[id(1)].core.CommitUnsent(); got != (f[2] == "yes") {
			t.Errorf("%q: commit unsent %v", line, got)
		}
	case "sync": // sync ID: ask for everything proposed to be synced on a quorum
		c.r[id(1)].core.Sync()
	case "hold-sync": // hold-sync ID yes|no: the journal ignores sync requests while yes
		c.r[id(1)].holdSync = f[2] == "yes"
	case "expect-sync-commit": // expect-sync-commit ID INDEX
		if got := c.r[id(1)].syncCommit; got != num(t, f[2]) {
			t.Errorf("%q: sync commit %d", line, got)
		}
	case "expect-durable": // expect-durable ID INDEX (DurableEverywhere)
		if got := c.r[id(1)].core.DurableEverywhere(); got != num(t, f[2]) {
			t.Errorf("%q: durable everywhere %d", line, got)
		}
	case "read": // read ID: start a read round
		c.r[id(1)].core.ReadIndex()
	case "expect-read-round": // expect-read-round ID ROUND (highest confirmed)
		if got := c.r[id(1)].readRound; got != num(t, f[2]) {
			t.Errorf("%q: read round %d", line, got)
		}
	case "expect-commit": // expect-commit ID INDEX
		if got := c.r[id(1)].core.State().Commit; got != num(t, f[2]) {
			t.Errorf("%q: commit %d", line, got)
		}
	case "propose": // propose ID SEQ DATA
		c.r[id(1)].core.Propose(ReqID{Seq: num(t, f[2])}, [16]byte{}, []byte(f[3]))
	case "propose-durable": // propose-durable ID SEQ DATA: its caller waits for SyncCommit
		c.r[id(1)].core.ProposeDurable(ReqID{Seq: num(t, f[2])}, [16]byte{}, []byte(f[3]))
	case "sync-to": // sync-to ID INDEX: ask for the entries up to INDEX to be synced on a quorum
		c.r[id(1)].core.SyncTo(num(t, f[2]))
	case "expect-sync-asked": // expect-sync-asked ID yes|no: the replica's journal has a sync due
		if got := c.r[id(1)].syncDue; got != (f[2] == "yes") {
			t.Errorf("%q: sync due %v", line, got)
		}
	case "resync": // resync ID on|off: mark or clear a full resync
		c.r[id(1)].core.SetResyncing(f[2] == "on")
	case "time": // time ID|all MS: the replicas' clocks read MS milliseconds
		ids := c.ids()
		if f[1] != "all" {
			ids = []ID{id(1)}
		}
		for _, i := range ids {
			c.r[i].core.SetTime(time.Duration(num(t, f[2])) * time.Millisecond)
		}
	case "expect-lease": // expect-lease ID MS: LeaseUntil, in milliseconds (0: none)
		if got := c.r[id(1)].core.LeaseUntil(); got != time.Duration(num(t, f[2]))*time.Millisecond {
			t.Errorf("%q: lease until %v", line, got)
		}
	case "cut":
		c.cut[id(1)] = true
	case "heal":
		c.cut[id(1)] = false
	case "restart":
		c.restart(id(1))
	case "stabilize":
		c.stabilize()
	case "round": // one round of processing and delivery
		c.round()
	case "expect-role": // expect-role ID ROLE
		if got, _ := c.r[id(1)].core.Role(); got.String() != f[2] {
			t.Errorf("%q: replica role %v", line, got)
		}
	case "expect-applied": // expect-applied ID a,b,c | -
		want := f[2]
		got := strings.Join(c.r[id(1)].applied, ",")
		if want == "-" {
			want = ""
		}
		if got != want {
			t.Errorf("%q: applied %q", line, got)
		}
	case "expect-journal": // expect-journal ID TERM:INDEX:DATA... (DATA - for a no-op)
		r := c.r[id(1)]
		var got []string
		for i := uint64(1); i <= uint64(len(r.entries)); i++ {
			e := r.entries[i]
			data := string(e.Data)
			if data == "" {
				data = "-"
			}
			got = append(got, fmt.Sprintf("%d:%d:%s", e.Term, e.Index, data))
		}
		if g, w := strings.Join(got, " "), strings.Join(f[2:], " "); g != w {
			t.Errorf("%q: journal %q", line, g)
		}
	case "expect-term": // expect-term ID TERM (persisted)
		if got := c.r[id(1)].persisted; got != num(t, f[2]) {
			t.Errorf("%q: persisted term %d", line, got)
		}
	case "expect-replies": // expect-replies ... (all replies since the last check)
		want := strings.TrimSpace(strings.TrimPrefix(line, "expect-replies"))
		got := strings.Join(c.replies, "; ")
		c.replies = nil
		if got != want {
			t.Errorf("%q: replies %q", line, got)
		}
	default:
		t.Fatalf("unknown command %q", line)
	}
}

// TestScripts runs testdata/*.txt. Each starts with
// "replicas N [quorum Q] [lease MS]".
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			fh, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			var c *cluster
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				if f := strings.Fields(line); f[0] == "replicas" {
					q, lease := 0, time.Duration(0)
					for i := 2; i+1 < len(f); i += 2 {
						switch f[i] {
						case "quorum":
							q = int(num(t, f[i+1]))
						case "lease":
							lease = time.Duration(num(t, f[i+1])) * time.Millisecond
						default:
							t.Fatalf("bad header %q", line)
						}
					}
					c = newCluster(t, int(num(t, f[1])), q, lease)
					continue
				}
				c.run(line)
			}
		})
	}
}

func TestNewRejectsImpossibleQuorum(t *testing.T) {
	log := &memLog{}
	if _, err := New(Config{ID: 1, Peers: []ID{1, 2, 3}, Quorum: 4, Log: log}, State{}); err == nil {
		t.Error("quorum 4 of 3 accepted")
	}
	if _, err := New(Config{ID: 9, Peers: []ID{1, 2, 3}, Log: log}, State{}); err == nil {
		t.Error("replica outside its set accepted")
	}
}
