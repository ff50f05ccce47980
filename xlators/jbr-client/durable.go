package jbrclient

import (
	"context"
	"maps"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// durableKey is jbr-server's DurableKey: in a mutating request's Call
// Xdata it makes the leader answer only once the request is committed
// and fdatasynced in a quorum of journals. (Not imported: the server
// package brings the whole brick with it.)
const durableKey = "jbr.durable"

const (
	// durableRun bounds how many mutations of a file after an fsync of
	// it ask for a durable answer: as many as came between its last two
	// fsyncs, at least one, at most this. A writer that fsyncs after
	// every write or few then needs no FSYNC round trip; one that writes
	// much between fsyncs delays a few answers (hidden by write-behind)
	// and fsyncs as before.
	durableRun = 8
	// maxTracked bounds the files the client keeps fsync state for.
	maxTracked = 4096
)

// fsyncHint is what the client learnt of a file's fsyncs.
type fsyncHint struct {
	since int // mutations since its last fsync
	run   int // mutations between its last two fsyncs, at most durableRun
}

// durability is what the client knows of which of its mutations are not
// known durable. Every mutation that completes without a durable answer
// (an answer to a request without durableKey, an error, an outcome
// unknown) gets the next mark. A file's Fsync needs a round trip only
// while the file, or the objects of an entry op, holds a mark no FSYNC
// has covered since. All of it is guarded by Client.mu.
type durability struct {
	mark uint64
	// dirty maps a file to the mark of its latest mutation not known
	// durable; absent when none is.
	dirty map[xl.GFID]uint64
	// other is the mark of the latest such mutation whose objects the
	// client cannot all name (entry ops: the object an unlink or rename
	// detaches is the brick's to know), or of dirt folded in from dirty
	// when it grew too large; 0 when covered. Every Fsync waits for it.
	other uint64
	hints map[xl.GFID]*fsyncHint
}

// singleObject reports whether f changes its target alone, so that a
// mark on the target covers it.
func singleObject(f *xl.Fop) bool {
	switch f.Op {
	case xl.OpWrite, xl.OpFallocate, xl.OpSetattr, xl.OpTruncate, xl.OpSetxattr, xl.OpRemovexattr, xl.OpOpen:
		return true
	}
	return false
}

// askDurable reports whether the mutating f, about to be sent, should
// ask for a durable answer, and counts it toward its file's run.
func (c *Client) askDurable(f *xl.Fop) bool {
	if !singleObject(f) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.dur.hints[f.Target()]
	if h == nil {
		return false // never fsynced here: do not delay its answers
	}
	h.since++
	return h.since <= max(h.run, 1)
}

// withDurable returns ctx with its Call asking for a durable answer. The
// Call keeps its Client and Seq, so retries are still deduplicated.
func withDurable(ctx context.Context) context.Context {
	call := *xl.CallFrom(ctx)
	x := make(xl.Xdata, len(call.Xdata)+1)
	maps.Copy(x, call.Xdata)
	x[durableKey] = []byte{1}
	call.Xdata = x
	return xl.WithCall(ctx, &call)
}

// completed records the outcome of the mutating f: durable when the
// leader said so, by answering a request that asked (asked) or an
// O_SYNC or O_DSYNC write, which it makes durable before answering.
func (c *Client) completed(f *xl.Fop, asked bool, r *xl.Result) {
	if r.Errno == 0 && (asked || (f.Op == xl.OpWrite && f.Fd.Flags&syscall.O_DSYNC != 0)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &c.dur
	d.mark++
	if !singleObject(f) {
		d.other = d.mark
		return
	}
	if len(d.dirty) >= maxTracked {
		// Fold: every Fsync waits for the next FSYNC once.
		d.other = d.mark
		clear(d.dirty)
	}
	d.dirty[f.Target()] = d.mark
}

// fsyncStart notes an fsync of g and reports whether it must go to the
// leader, and the mark an FSYNC sent now covers.
func (c *Client) fsyncStart(g xl.GFID) (send bool, mark uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &c.dur
	h := d.hints[g]
	if h == nil {
		if len(d.hints) >= maxTracked {
			clear(d.hints) // hints only: answers go back to being plain
		}
		h = &fsyncHint{}
		d.hints[g] = h
	}
	h.run, h.since = min(h.since, durableRun), 0
	_, dirty := d.dirty[g]
	return dirty || d.other != 0, d.mark
}

// fsynced records a successful FSYNC sent when the marks stood at mark:
// the leader synced every entry proposed before it, hence every mutation
// that succeeded before it was sent, of every file. A mutation whose
// outcome was unknown (given up on) may reach the leader after the
// FSYNC and is not covered; its caller was told it failed.
func (c *Client) fsynced(mark uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &c.dur
	if d.other <= mark {
		d.other = 0
	}
	maps.DeleteFunc(d.dirty, func(_ xl.GFID, m uint64) bool { return m <= mark })
}
