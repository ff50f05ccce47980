package journal

import (
	"slices"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// PruneThrough cuts inside the current term, only what is synced and
// asked for, whole segments only, and a reopened journal continues from
// what is left.
func TestPruneThroughInsideTerm(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{SegmentSize: 8192})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		appendT(t, j, fullRecord(xl.OpWrite, i))
	}
	st := j.Stat()
	if st.Segments < 4 {
		t.Fatalf("%d segments; the test needs several in one term", st.Segments)
	}
	for i := uint64(1); i <= 40; i++ {
		j.MarkApplied(i)
	}
	if err := j.MarkSynced(30); err != nil {
		t.Fatal(err)
	}
	freed, upTo, err := j.PruneThrough(35) // synced bounds it to 30
	if err != nil || freed <= 0 || upTo == 0 || upTo > 30 {
		t.Fatalf("PruneThrough(35) = %d bytes, through %d, %v; want some, at most through 30", freed, upTo, err)
	}
	after := j.Stat()
	if after.FirstIndex != upTo+1 || after.Bytes != st.Bytes-freed || after.Term != 1 {
		t.Fatalf("after pruning through %d (%d bytes): %+v, before %+v", upTo, freed, after, st)
	}
	if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, seq(upTo+1, 60)) {
		t.Fatalf("journal holds %v, want %d..60", got, upTo+1)
	}
	// Nothing more qualifies until more is synced.
	if freed, _, err := j.PruneThrough(35); err != nil || freed != 0 {
		t.Fatalf("second PruneThrough(35) = %d, %v; want nothing", freed, err)
	}
	closeJ(t, j)

	j = open(t, dir, Options{SegmentSize: 8192})
	defer closeJ(t, j)
	if st := j.Stat(); st.FirstIndex != upTo+1 || st.LastIndex != 60 || st.Synced < upTo {
		t.Fatalf("reopened: %+v, want records %d..60", st, upTo+1)
	}
	if idx := appendT(t, j, fullRecord(xl.OpWrite, 61)); idx != 61 {
		t.Fatalf("append after reopen got index %d, want 61", idx)
	}
	// Everything synced: all but the active segment go.
	for i := uint64(1); i <= 61; i++ {
		j.MarkApplied(i)
	}
	if err := j.MarkSynced(61); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.PruneThrough(^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if st := j.Stat(); st.Segments != 1 || st.LastIndex != 61 {
		t.Fatalf("after pruning everything: %+v, want the active segment left", st)
	}
}

// The Retain guard stops PruneThrough at the first retained term.
func TestPruneThroughRetained(t *testing.T) {
	j := threeTerms(t, 45)
	defer closeJ(t, j)
	j.Retain(func(term uint64) bool { return term >= 2 })
	if _, _, err := j.PruneThrough(45); err != nil {
		t.Fatal(err)
	}
	if got := terms(j); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("terms %v, want 2 and 3: term 2 is retained", got)
	}
	j.Retain(nil)
	if _, _, err := j.PruneThrough(45); err != nil {
		t.Fatal(err)
	}
	if st := j.Stat(); st.Segments != 1 || st.LastIndex != 45 {
		t.Fatalf("without a guard: %+v, want only the active segment", st)
	}
}

// PruneOver deletes only as many of the oldest segments as the bound
// needs.
func TestPruneOver(t *testing.T) {
	j := threeTerms(t, 45)
	defer closeJ(t, j)
	st := j.Stat()
	bound := st.Bytes / 2
	freed, _, err := j.PruneOver(bound, 45)
	if err != nil {
		t.Fatal(err)
	}
	after := j.Stat()
	if after.Bytes > bound || after.Bytes+freed != st.Bytes {
		t.Fatalf("PruneOver(%d): %d bytes left, %d freed, of %d", bound, after.Bytes, freed, st.Bytes)
	}
	if after.Segments < 2 {
		t.Fatalf("PruneOver(%d) left %d segments: it deleted more than the bound needs", bound, after.Segments)
	}
	if freed, _, err := j.PruneOver(bound, 45); err != nil || freed != 0 {
		t.Fatalf("PruneOver under the bound = %d, %v; want nothing", freed, err)
	}
}
