package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Iterate calls fn, in index order, for every written record whose term is
// at least fromTerm and whose index is at least fromIndex. It sees at
// least the records that were written when it was called. fn may keep the
// record; an error from fn stops the walk and is returned. fn must not
// call Iterate, Unapplied or Prune: a waiting Prune would deadlock them.
func (j *Journal) Iterate(fromTerm, fromIndex uint64, fn func(*Record) error) error {
	j.pruneMu.RLock()
	defer j.pruneMu.RUnlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	var segs []segment
	for _, s := range j.segs {
		if s.term >= fromTerm && s.last >= fromIndex && s.last >= s.first {
			segs = append(segs, *s) // a snapshot: the writer moves size and last
		}
	}
	j.mu.Unlock()

	r := bufio.NewReaderSize(nil, 1<<20)
	for i := range segs {
		if err := iterateSegment(&segs[i], r, fromIndex, fn); err != nil {
			return err
		}
	}
	return nil
}

func iterateSegment(s *segment, r *bufio.Reader, fromIndex uint64, fn func(*Record) error) error {
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	r.Reset(io.NewSectionReader(f, segHeaderSize, s.size-segHeaderSize))
	bad := func(idx uint64, what string) error {
		return fmt.Errorf("%w: %s: record %d: %s", ErrCorrupt, s.path, idx, what)
	}
	var hdr [recHeaderSize]byte
	for idx := s.first; idx <= s.last; idx++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return bad(idx, err.Error())
		}
		n := int(binary.LittleEndian.Uint32(hdr[4:]))
		if n < recHeaderSize || n > MaxRecordSize {
			return bad(idx, "bad length")
		}
		if idx < fromIndex {
			if _, err := r.Discard(pad8(n) - recHeaderSize); err != nil {
				return bad(idx, err.Error())
			}
			continue
		}
		buf := make([]byte, pad8(n))
		copy(buf, hdr[:])
		if _, err := io.ReadFull(r, buf[recHeaderSize:]); err != nil {
			return bad(idx, err.Error())
		}
		h, err := parseHeader(buf, s.salt)
		if err != nil {
			return bad(idx, "checksum mismatch")
		}
		if h.term != s.term || h.index != idx {
			return bad(idx, fmt.Sprintf("holds term %d index %d", h.term, h.index))
		}
		rec, err := decode(buf)
		if err != nil {
			return bad(idx, err.Error())
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// Unapplied calls fn, in index order, for every durable record not yet
// marked applied. On start-up these are the entries to replay: above the
// applied watermark saved in this boot, else above the synced watermark.
func (j *Journal) Unapplied(fn func(*Record) error) error {
	j.mu.Lock()
	from := j.applied + 1
	done := make(map[uint64]struct{}, len(j.appliedAbove))
	for i := range j.appliedAbove {
		done[i] = struct{}{}
	}
	j.mu.Unlock()
	return j.Iterate(0, from, func(r *Record) error {
		if _, ok := done[r.Index]; ok {
			return nil
		}
		return fn(r)
	})
}

// Retain installs the reconciliation guard: no Prune method ever
// deletes a term for which keep returns true, nor any term after it, since
// what is left must stay contiguous. It is for keeping the terms that
// replicas may still need to compare (nothing in gluon installs one
// today: replicas that lag behind a pruned journal get a full resync);
// nil removes it. keep is called with no journal lock held, so it may call
// the journal.
func (j *Journal) Retain(keep func(term uint64) bool) {
	if keep == nil {
		j.retain.Store(nil)
		return
	}
	j.retain.Store(&keep)
}

// Prune deletes every term up to and including upToTerm, except the
// current term. The caller asserts those terms are no longer needed for
// reconciliation; Prune itself refuses, deleting nothing, unless every
// entry in them is applied and synced (ErrNotSynced) and none of them is
// retained (ErrRetained, see Retain).
func (j *Journal) Prune(upToTerm uint64) error {
	_, err := j.prune(upToTerm, true)
	return err
}

// PruneUpTo deletes the oldest terms, up to and including upToTerm and
// never the current one, whose entries are all applied and synced and
// which are not retained (see Retain). It stops at the first term that
// does not qualify, so it is safe to call with any term, and returns the
// highest term it deleted, 0 if none. It is how a size bound is kept.
func (j *Journal) PruneUpTo(upToTerm uint64) (uint64, error) {
	return j.prune(upToTerm, false)
}

// firstRetained returns the first of terms the Retain guard keeps. It
// calls the guard, so the caller must hold none of the journal's locks.
func (j *Journal) firstRetained(terms []uint64) (uint64, bool) {
	if keep := j.retain.Load(); keep != nil {
		for _, t := range terms {
			if (*keep)(t) {
				return t, true
			}
		}
	}
	return 0, false
}

// prune deletes old terms; all says every term up to upToTerm must go or
// none.
func (j *Journal) prune(upToTerm uint64, all bool) (uint64, error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, ErrClosed
	}
	var limit uint64 // highest term to delete: never the current one
	if j.term > 0 {
		limit = min(upToTerm, j.term-1)
	}
	var terms []uint64
	for _, s := range j.segs {
		if s.term > limit {
			break
		}
		if n := len(terms); n == 0 || terms[n-1] != s.term {
			terms = append(terms, s.term)
		}
	}
	j.mu.Unlock()

	// Ask the guard before taking any lock.
	if t, ok := j.firstRetained(terms); ok {
		if all {
			return 0, fmt.Errorf("%w: term %d", ErrRetained, t)
		}
		limit = t - 1
	}

	j.pruneMu.Lock()
	defer j.pruneMu.Unlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, ErrClosed
	}
	var victims []*segment
	for _, s := range j.segs {
		if s.term > limit {
			break
		}
		if s.last > j.synced {
			if all {
				j.mu.Unlock()
				return 0, fmt.Errorf("%w: term %d holds entries up to %d, synced up to %d", ErrNotSynced, s.term, s.last, j.synced)
			}
			// Whole terms only: keep every segment of this one.
			for len(victims) > 0 && victims[len(victims)-1].term == s.term {
				victims = victims[:len(victims)-1]
			}
			break
		}
		victims = append(victims, s)
	}
	j.mu.Unlock()

	removed := 0
	var err error
	for _, s := range victims { // oldest first: what is left stays contiguous
		if err = os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			break
		}
		err = nil
		removed++
	}
	if removed > 0 {
		if serr := j.dirf.Sync(); err == nil {
			err = serr
		}
	}
	var through uint64
	j.mu.Lock()
	if removed > 0 {
		through = j.segs[removed-1].term
		// A term partly deleted by a failed remove is not reported.
		if removed < len(j.segs) && j.segs[removed].term == through {
			through--
		}
	}
	j.segs = j.segs[removed:]
	j.mu.Unlock()
	return through, err
}

// Stat describes the journal.
type Stat struct {
	Term uint64 // current term
	// FirstIndex and LastIndex bound the durable records held; FirstIndex
	// is LastIndex+1 when there are none.
	FirstIndex, LastIndex uint64
	Applied, Synced       uint64
	Segments              int
	Bytes                 int64 // in use by headers and records, not preallocation
	Terms                 []TermStat
}

// TermStat describes the records held for one term.
type TermStat struct {
	Term                  uint64
	FirstIndex, LastIndex uint64
	Segments              int
	Bytes                 int64
}

// Stat returns a snapshot of the journal's shape and watermarks.
func (j *Journal) Stat() Stat {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := Stat{
		Term:       j.term,
		FirstIndex: j.written + 1,
		LastIndex:  j.written,
		Applied:    j.applied,
		Synced:     j.synced,
		Segments:   len(j.segs),
	}
	if len(j.segs) > 0 {
		st.FirstIndex = j.segs[0].first
	}
	for _, s := range j.segs {
		st.Bytes += s.size
		if n := len(st.Terms); n == 0 || st.Terms[n-1].Term != s.term {
			st.Terms = append(st.Terms, TermStat{Term: s.term, FirstIndex: s.first, LastIndex: s.first - 1})
		}
		t := &st.Terms[len(st.Terms)-1]
		t.LastIndex = s.last
		t.Segments++
		t.Bytes += s.size
	}
	return st
}
