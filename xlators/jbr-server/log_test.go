package jbrserver

import (
	"context"
	"reflect"
	"testing"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func ent(term, index uint64) *entry {
	return &entry{Entry: core.Entry{Term: term, Index: index}, noop: true}
}

// The log view follows the journal in order: a record for an index the
// log holds replaces it and what follows, and durability counts only
// records that are still part of the log.
func TestJlog(t *testing.T) {
	l := newJlog()
	// Journal records 1..5 hold indexes 1..3 of term 2, then 4..5 of term 3.
	for i, e := range []*entry{ent(2, 1), ent(2, 2), ent(2, 3), ent(3, 4), ent(3, 5)} {
		l.add(e, uint64(i+1))
	}
	if got := l.runs; !reflect.DeepEqual(got, []run{{1, 3, 2, 1}, {4, 5, 3, 4}}) {
		t.Fatalf("runs %+v", got)
	}
	// Record 6 replaces index 4 on with term 4.
	l.add(ent(4, 4), 6)
	if last, term := l.last(); last != 4 || term != 4 {
		t.Fatalf("last %d term %d", last, term)
	}
	if tm, ok := l.Term(5); ok {
		t.Fatalf("index 5 survived the replacement with term %d", tm)
	}
	if tm, ok := l.Term(3); !ok || tm != 2 {
		t.Fatalf("Term(3) = %d %v", tm, ok)
	}
	if j, ok := l.jidx(4); !ok || j != 6 {
		t.Fatalf("jidx(4) = %d %v", j, ok)
	}
	// Durable up to record 5 means the log is durable up to 3: records 4
	// and 5 were replaced.
	for dj, want := range map[uint64]uint64{0: 0, 2: 2, 3: 3, 5: 3, 6: 4, 9: 4} {
		if got := l.durable(dj); got != want {
			t.Errorf("durable(%d) = %d, want %d", dj, got, want)
		}
	}
	if got := l.takeReplaced(4); !reflect.DeepEqual(got, []uint64{4}) {
		t.Errorf("replaced durable at 4: %v", got)
	}
	if got := l.takeReplaced(9); !reflect.DeepEqual(got, []uint64{5}) {
		t.Errorf("replaced durable at 9: %v", got)
	}
	if got := l.spans(2); !reflect.DeepEqual(got, []span{{3, 3, 3}, {6, 6, 4}}) {
		t.Errorf("spans after 2: %+v", got)
	}
	if got := l.spans(4); len(got) != 0 {
		t.Errorf("spans after the last: %+v", got)
	}
}

// Start-up rebuilds the log from the journal: replaced records are
// skipped and marked applied, applied ones are not replayed, and the
// commit index is the highest any record recorded.
func TestScanJournal(t *testing.T) {
	j, err := journal.Open(t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.StartTerm(5); err != nil {
		t.Fatal(err)
	}
	put := func(term, index, commit uint64, data string) uint64 {
		e := &entry{Entry: core.Entry{Term: term, Index: index},
			fop: xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID}, Data: []byte(data)}}
		idx, err := j.Append(context.Background(), e.record(commit))
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	put(5, 1, 0, "a")
	put(5, 2, 1, "b")
	j.MarkApplied(1)
	put(5, 3, 2, "lost")
	if err := j.StartTerm(7); err != nil {
		t.Fatal(err)
	}
	put(7, 3, 2, "c") // replaces "lost"
	put(7, 4, 3, "d")
	cs, err := scanJournal(j)
	if err != nil {
		t.Fatal(err)
	}
	if cs.applied != 1 || cs.commit != 3 || cs.records != 5 {
		t.Errorf("applied %d commit %d records %d, want 1, 3, 5", cs.applied, cs.commit, cs.records)
	}
	var got []string
	for i := uint64(2); i <= 4; i++ {
		e := cs.log.entries[i]
		if e == nil || !e.redo {
			t.Fatalf("entry %d: %+v", i, e)
		}
		got = append(got, string(e.fop.Data))
	}
	if !reflect.DeepEqual(got, []string{"b", "c", "d"}) {
		t.Errorf("entries %q", got)
	}
	// Record 3 ("lost") counts as applied: the watermark passes it once
	// record 2 is applied.
	j.MarkApplied(2)
	if a := j.Applied(); a != 3 {
		t.Errorf("applied watermark %d, want 3", a)
	}

	// A journal FDL wrote is not one to replicate from.
	fj, err := journal.Open(t.TempDir(), journal.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer fj.Close()
	fj.StartTerm(1)
	fj.Append(context.Background(), &journal.Record{Fop: xl.Fop{Op: xl.OpMkdir}})
	if _, err := scanJournal(fj); err == nil {
		t.Error("scanned a journal without replication positions")
	}
}
