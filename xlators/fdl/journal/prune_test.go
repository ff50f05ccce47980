package journal

import (
	"errors"
	"slices"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// threeTerms fills terms 1, 2 and 3 with 15 records each over 8 KiB
// segments (several per term) and marks everything up to synced applied
// and synced.
func threeTerms(t *testing.T, synced uint64) *Journal {
	t.Helper()
	j := open(t, t.TempDir(), Options{SegmentSize: 8192})
	for term := uint64(1); term <= 3; term++ {
		if err := j.StartTerm(term); err != nil {
			t.Fatal(err)
		}
		for i := range 15 {
			appendT(t, j, fullRecord(xl.OpWrite, i))
		}
	}
	for i := uint64(1); i <= synced; i++ {
		j.MarkApplied(i)
	}
	if err := j.MarkSynced(synced); err != nil {
		t.Fatal(err)
	}
	return j
}

func terms(j *Journal) []uint64 {
	var out []uint64
	for _, ts := range j.Stat().Terms {
		out = append(out, ts.Term)
	}
	return out
}

// The reconciliation guard keeps the terms it names, and every later one.
func TestRetainGuardsPrune(t *testing.T) {
	j := threeTerms(t, 45)
	defer closeJ(t, j)
	var asked []uint64
	j.Retain(func(term uint64) bool {
		asked = append(asked, term)
		_ = j.Stat() // the guard may consult the journal
		return term == 2
	})
	if err := j.Prune(2); !errors.Is(err, ErrRetained) {
		t.Fatalf("Prune over a retained term = %v, want ErrRetained", err)
	}
	if got := terms(j); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("a refused Prune left terms %v", got)
	}
	through, err := j.PruneUpTo(3)
	if err != nil || through != 1 {
		t.Fatalf("PruneUpTo(3) with term 2 retained = %d, %v; want 1", through, err)
	}
	if got := terms(j); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("after PruneUpTo terms %v, want 2 and 3", got)
	}
	if !slices.Contains(asked, 2) || slices.Contains(asked, 3) {
		t.Fatalf("guard asked about %v: want term 2, never the current term", asked)
	}
	j.Retain(nil)
	if through, err := j.PruneUpTo(99); err != nil || through != 2 {
		t.Fatalf("PruneUpTo(99) without a guard = %d, %v; want 2", through, err)
	}
	if got := terms(j); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("terms %v, want only the current one", got)
	}
	if through, err := j.PruneUpTo(99); err != nil || through != 0 {
		t.Fatalf("PruneUpTo with nothing to prune = %d, %v", through, err)
	}
}

// PruneUpTo deletes whole terms only, and only synced ones; it stops at
// the first that is not, where Prune refuses altogether.
func TestPruneUpToStopsAtUnsynced(t *testing.T) {
	j := threeTerms(t, 20) // term 1 (1..15) synced; term 2 (16..30) partly
	defer closeJ(t, j)
	if st := j.Stat(); st.Terms[1].Segments < 2 {
		t.Fatalf("term 2 has %d segments; the test needs a synced one and an unsynced one", st.Terms[1].Segments)
	}
	if err := j.Prune(2); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Prune(2) = %v, want ErrNotSynced", err)
	}
	through, err := j.PruneUpTo(2)
	if err != nil || through != 1 {
		t.Fatalf("PruneUpTo(2) = %d, %v; want 1", through, err)
	}
	if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, seq(16, 45)) {
		t.Fatalf("after PruneUpTo the journal holds %v: term 2 must stay whole", got)
	}
}
