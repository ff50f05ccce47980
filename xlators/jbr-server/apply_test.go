package jbrserver

import (
	"context"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// A log fast-forwarded for a full resync has a hole where the entries it
// was never sent would be. A restart that finds entries before the hole
// still to redo (the journal's applied watermark was saved late) must
// not leave the watermark stuck below the hole: reads and the replica's
// convergence wait on it.
func TestApplierStepsOverHoles(t *testing.T) {
	j, err := journal.Open(t.TempDir(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s := &Server{j: j, stop: make(chan struct{})}
	a := newApplier(s, 39)
	defer a.close()
	noop := func(i uint64) *entry { return &entry{Entry: core.Entry{Term: 1, Index: i}, noop: true} }
	a.submit(noop(40))
	a.submit(noop(100)) // the fast-forward's mark
	a.submit(noop(101))
	// A bound for a hang, not a timing target.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !a.wait(ctx, xl.GFID{}, 101) {
		t.Fatalf("the watermark stuck at %d, below the hole", a.appliedIndex())
	}
	if got := a.appliedIndex(); got != 101 {
		t.Errorf("applied watermark %d, want 101", got)
	}
}
