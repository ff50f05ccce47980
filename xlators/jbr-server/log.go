package jbrserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Journal records and the replicated log.
//
// The FDL journal is append-only and numbers its records densely, while
// JBR's log can have its tail replaced: a follower's entries from a
// deposed leader are overwritten by the new leader's. So every record
// carries its place in the replicated log in its call's xdata (posKey:
// term, index and the commit index known when it was written), and a
// record for an index the log already holds replaces that entry and
// everything after it. The log is therefore the journal read in order
// with that rule; replaced records are marked applied (they never will
// be) so that the journal's watermarks move past them.
const (
	posKey  = "jbr.pos"  // term, index, commit: u64 each
	keysKey = "jbr.keys" // extra conflict keys chosen by the leader: GFIDs
	noopOp  = "jbr.noop" // the Ipc name of a leader's no-op record
)

// entry is a log entry with its request decoded. Only the loop touches it
// until it is handed to the applier.
type entry struct {
	core.Entry
	jidx  uint64 // journal index
	call  xl.Call
	fop   xl.Fop
	keys  []xl.GFID
	noop  bool
	redo  bool // in the journal before start-up: it may have been applied
	local bool // proposed here, by a caller still waiting: keep a created fd open
	out   *outcome
}

// newEntry decodes e's data.
func newEntry(e core.Entry) (*entry, error) {
	en := &entry{Entry: e}
	if len(e.Data) == 0 {
		en.noop = true
		return en, nil
	}
	if err := decodeRequest(e.Data, &en.call, &en.fop); err != nil {
		return nil, err
	}
	en.keys = conflictKeys(&en.fop, en.call.Xdata[keysKey])
	return en, nil
}

// record is the journal record of e.
func (e *entry) record(commit uint64) *journal.Record {
	rec := &journal.Record{Call: e.call, Fop: e.fop}
	if e.noop {
		rec.Fop = xl.Fop{Op: xl.OpIpc, Name: noopOp}
	}
	x := make(xl.Xdata, len(e.call.Xdata)+1)
	for k, v := range e.call.Xdata {
		x[k] = v
	}
	pos := make([]byte, 24)
	binary.LittleEndian.PutUint64(pos, e.Term)
	binary.LittleEndian.PutUint64(pos[8:], e.Index)
	binary.LittleEndian.PutUint64(pos[16:], commit)
	x[posKey] = pos
	rec.Call.Xdata = x
	return rec
}

var errForeign = errors.New("jbr: journal record without a replication position")

// entryOf turns a journal record back into a log entry, and returns the
// commit index known when it was written.
func entryOf(rec *journal.Record) (*entry, uint64, error) {
	term, index, commit, ok := Position(rec)
	if !ok {
		return nil, 0, fmt.Errorf("%w: record %d (%v)", errForeign, rec.Index, rec.Fop.Op)
	}
	e := &entry{jidx: rec.Index}
	e.Term, e.Index = term, index
	if IsNoop(rec) {
		e.noop = true
		return e, commit, nil
	}
	e.call, e.fop = rec.Call, rec.Fop
	x := make(xl.Xdata, len(rec.Call.Xdata))
	for k, v := range rec.Call.Xdata {
		if k != posKey {
			x[k] = v
		}
	}
	if len(x) == 0 {
		x = nil
	}
	e.call.Xdata = x
	e.Req = core.ReqID{Client: e.call.Client, Seq: e.call.Seq}
	e.keys = conflictKeys(&e.fop, x[keysKey])
	e.Key = e.keys[0]
	return e, commit, nil
}

// run is a stretch of the log: indexes first..last, of one term, held by
// consecutive journal records from jfirst on.
type run struct {
	first, last, term, jfirst uint64
}

// jlog is the replicated log as the journal holds it: where each index
// is, and the entries not yet handed to the applier. It is the core's
// core.Log. Loop only.
type jlog struct {
	runs    []run
	entries map[uint64]*entry
	// replaced holds journal indexes of replaced records, to be marked
	// applied once durable.
	replaced []uint64
}

func newJlog() *jlog { return &jlog{entries: map[uint64]*entry{}} }

// find returns the run holding index i.
func (l *jlog) find(i uint64) (int, bool) {
	k, found := slices.BinarySearchFunc(l.runs, i, func(r run, i uint64) int {
		switch {
		case r.last < i:
			return -1
		case r.first > i:
			return 1
		}
		return 0
	})
	return k, found
}

// Term implements core.Log.
func (l *jlog) Term(i uint64) (uint64, bool) {
	if i == 0 {
		return 0, true
	}
	if k, ok := l.find(i); ok {
		return l.runs[k].term, true
	}
	return 0, false
}

func (l *jlog) last() (index, term uint64) {
	if n := len(l.runs); n > 0 {
		return l.runs[n-1].last, l.runs[n-1].term
	}
	return 0, 0
}

// jidx returns the journal index of the record holding index i.
func (l *jlog) jidx(i uint64) (uint64, bool) {
	if k, ok := l.find(i); ok {
		r := l.runs[k]
		return r.jfirst + (i - r.first), true
	}
	return 0, false
}

// add records that journal record jidx holds e, replacing the entries
// from e.Index on if the log already has them.
func (l *jlog) add(e *entry, jidx uint64) {
	if last, _ := l.last(); e.Index <= last {
		l.truncate(e.Index)
	}
	e.jidx = jidx
	if n := len(l.runs); n > 0 {
		r := &l.runs[n-1]
		if r.term == e.Term && r.last+1 == e.Index && r.jfirst+(r.last-r.first)+1 == jidx {
			r.last++
			l.entries[e.Index] = e
			return
		}
	}
	l.runs = append(l.runs, run{first: e.Index, last: e.Index, term: e.Term, jfirst: jidx})
	l.entries[e.Index] = e
}

// truncate drops the entries from index i on.
func (l *jlog) truncate(i uint64) {
	for len(l.runs) > 0 {
		r := &l.runs[len(l.runs)-1]
		if r.last < i {
			return
		}
		from := max(r.first, i)
		for k := from; k <= r.last; k++ {
			l.replaced = append(l.replaced, r.jfirst+(k-r.first))
			delete(l.entries, k)
		}
		if from == r.first {
			l.runs = l.runs[:len(l.runs)-1]
		} else {
			r.last = from - 1
		}
	}
}

// durable returns the highest index up to which the log is durable when
// the journal is durable up to journal index dj: the log's records are
// in journal order, so that is the last index held at or below dj.
func (l *jlog) durable(dj uint64) uint64 {
	k, _ := slices.BinarySearchFunc(l.runs, dj, func(r run, dj uint64) int {
		if r.jfirst <= dj {
			return -1
		}
		return 1
	})
	if k == 0 {
		return 0
	}
	r := l.runs[k-1]
	return r.first + min(dj-r.jfirst, r.last-r.first)
}

// takeReplaced returns the replaced records durable at dj.
func (l *jlog) takeReplaced(dj uint64) []uint64 {
	var out []uint64
	keep := l.replaced[:0]
	for _, j := range l.replaced {
		if j <= dj {
			out = append(out, j)
		} else {
			keep = append(keep, j)
		}
	}
	l.replaced = keep
	return out
}

// span is a stretch of journal records holding consecutive log entries.
type span struct {
	jfirst, jlast, first uint64
}

// spans returns where the entries after index i are in the journal.
func (l *jlog) spans(i uint64) []span {
	k, _ := l.find(i + 1)
	var out []span
	for ; k < len(l.runs); k++ {
		r := l.runs[k]
		from := max(r.first, i+1)
		if from > r.last {
			continue
		}
		out = append(out, span{jfirst: r.jfirst + (from - r.first), jlast: r.jfirst + (r.last - r.first), first: from})
	}
	return out
}

// coldStart is what start-up learns from the journal.
type coldStart struct {
	log     *jlog
	commit  uint64 // highest index known committed
	applied uint64 // every index up to here is applied
	records int
}

// scanJournal rebuilds the log from j. Entries up to the journal's
// applied watermark are applied; the rest stay in the log's entries,
// marked as possibly applied before (redo). Records replaced after the
// watermark are marked applied now.
func scanJournal(j *journal.Journal) (*coldStart, error) {
	cs := &coldStart{log: newJlog()}
	l := cs.log
	appliedJ := j.Applied()
	var hint uint64
	err := j.Iterate(0, 0, func(rec *journal.Record) error {
		e, commit, err := entryOf(rec)
		if err != nil {
			return err
		}
		hint = max(hint, commit)
		cs.records++
		l.add(e, rec.Index)
		if rec.Index <= appliedJ {
			delete(l.entries, e.Index)
		} else {
			e.redo = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, jidx := range l.takeReplaced(^uint64(0)) {
		j.MarkApplied(jidx)
	}
	// The log's records are in journal order, so those at or below the
	// applied watermark (or pruned, which were applied) are a prefix:
	// what is left is a suffix.
	last, _ := l.last()
	cs.applied = last
	for i := range l.entries {
		cs.applied = min(cs.applied, i-1)
	}
	cs.commit = min(max(hint, cs.applied), last)
	return cs, nil
}
