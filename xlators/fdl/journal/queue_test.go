package journal

import (
	"sync"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Records queued one after another keep that order however their waits
// are scheduled, and the waits share fdatasyncs like concurrent Appends.
func TestQueueKeepsOrder(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	defer closeJ(t, j)
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	const n = 50
	waits := make([]func() error, n)
	for i := range n {
		idx, wait, err := j.Queue(fullRecord(xl.OpWrite, i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != uint64(i+1) {
			t.Fatalf("record %d got index %d", i, idx)
		}
		waits[i] = wait
	}
	var wg sync.WaitGroup
	for i := n - 1; i >= 0; i-- { // wait in reverse: order is fixed at Queue
		wg.Go(func() {
			if err := waits[i](); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := waits[0](); err != nil { // a second wait answers the same
		t.Fatal(err)
	}
	recs := collect(t, j, 0, 1)
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if want := fullRecord(xl.OpWrite, i); r.Fop.Name != want.Fop.Name || r.Fop.Op != want.Fop.Op {
			t.Fatalf("record %d is %v %q, want %v %q", i, r.Fop.Op, r.Fop.Name, want.Fop.Op, want.Fop.Name)
		}
	}
}
