package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

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

// Enqueue's records become durable in order; Notify tells their owner
// when Durable moved, and when the journal failed.
func TestEnqueueNotify(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	t.Cleanup(func() { j.Close() }) // if the test stops early; it fails, by design
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	kick := make(chan struct{}, 1)
	j.Notify(kick)
	const n = 50
	for i := range n {
		idx, err := j.Enqueue(fullRecord(xl.OpWrite, i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != uint64(i+1) {
			t.Fatalf("record %d got index %d", i, idx)
		}
	}
	waitDurable := func(want uint64) error {
		for {
			d, err := j.Durable()
			if d >= want || err != nil {
				return err
			}
			select {
			case <-kick:
			case <-time.After(20 * time.Second):
				t.Fatalf("durable %d, waiting for %d: no notification", d, want)
			}
		}
	}
	if err := waitDurable(n); err != nil {
		t.Fatal(err)
	}
	if recs := collect(t, j, 0, 1); len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}

	// The segment's file fails under the flusher, which is idle now.
	j.active.Close()
	if _, err := j.Enqueue(fullRecord(xl.OpWrite, n)); err != nil {
		t.Fatal(err)
	}
	if err := waitDurable(n + 1); err == nil {
		t.Fatal("a failed write reported durable")
	}
	if d, _ := j.Durable(); d != n {
		t.Fatalf("durable %d after the failure, want %d", d, n)
	}
	if _, err := j.Enqueue(fullRecord(xl.OpWrite, n+1)); err == nil {
		t.Fatal("Enqueue after a failure succeeded")
	}
	if err := j.Close(); err == nil {
		t.Fatal("Close forgot the failure")
	}
}

// Record buffers are recycled: a record encoded into one that held a
// longer record leaves nothing of it behind, in the record or its
// padding, and the segment reopens clean.
func TestRecycledBuffers(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	var want []*Record
	for i := range 40 {
		r := fullRecord(xl.OpWrite, i)
		r.Fop.Data = bytes.Repeat([]byte{0xff}, 2000-40*i+i%3) // shrinking, odd lengths
		if _, err := j.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	closeJ(t, j)
	j = open(t, dir, Options{})
	defer closeJ(t, j)
	got := collect(t, j, 0, 1)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if !bytes.Equal(r.Fop.Data, want[i].Fop.Data) || r.Fop.Name != want[i].Fop.Name {
			t.Fatalf("record %d: %d bytes of data, name %q", i, len(r.Fop.Data), r.Fop.Name)
		}
	}
	path := segFiles(t, dir)[0]
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range recordOffsets(t, path) {
		n := int(binary.LittleEndian.Uint32(data[off+4:]))
		if slices.ContainsFunc(data[off+21:off+24], nonZero) || slices.ContainsFunc(data[off+n:off+pad8(n)], nonZero) {
			t.Fatalf("record %d: reserved bytes or padding not zero", i)
		}
	}
}

func nonZero(b byte) bool { return b != 0 }

// Enqueued records are written without an fdatasync nobody asked for;
// RequestSync and Sync make them durable, and Notify reports both steps.
// A record written but not synced may be marked applied.
func TestEnqueueWritesAndSyncsOnRequest(t *testing.T) {
	j := open(t, t.TempDir(), Options{SyncInterval: time.Hour})
	defer closeJ(t, j)
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	kick := make(chan struct{}, 1)
	j.Notify(kick)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !ok() {
			select {
			case <-kick:
			case <-deadline:
				t.Fatalf("%s never happened", what)
			}
		}
	}
	for i := range 3 {
		if _, err := j.Enqueue(fullRecord(xl.OpWrite, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("writing 3", func() bool { w, _ := j.Written(); return w == 3 })
	if d, _ := j.Durable(); d != 0 {
		t.Errorf("durable %d before any sync was asked for", d)
	}
	j.MarkApplied(1)
	if a := j.Applied(); a != 1 {
		t.Errorf("applied %d after marking a written record applied", a)
	}
	j.RequestSync()
	waitFor("syncing 3", func() bool { d, _ := j.Durable(); return d == 3 })

	if _, err := j.Enqueue(fullRecord(xl.OpWrite, 3)); err != nil {
		t.Fatal(err)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if d, _ := j.Durable(); d != 4 {
		t.Errorf("durable %d after Sync of 4 records", d)
	}
	// MarkSynced makes the journal durable first.
	if _, err := j.Enqueue(fullRecord(xl.OpWrite, 4)); err != nil {
		t.Fatal(err)
	}
	waitFor("writing 5", func() bool { w, _ := j.Written(); return w == 5 })
	j.MarkApplied(2)
	j.MarkApplied(3)
	j.MarkApplied(4)
	j.MarkApplied(5)
	if err := j.MarkSynced(5); err != nil {
		t.Fatal(err)
	}
	if d, _ := j.Durable(); d != 5 {
		t.Errorf("durable %d after MarkSynced(5)", d)
	}
}

// Records written but never synced by request are synced after
// SyncInterval.
func TestWrittenRecordsSyncAfterInterval(t *testing.T) {
	j := open(t, t.TempDir(), Options{SyncInterval: time.Millisecond})
	defer closeJ(t, j)
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Enqueue(fullRecord(xl.OpWrite, 1)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if d, _ := j.Durable(); d == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("an enqueued record never became durable")
		}
	}
}
