package journal

import (
	"errors"
	"io/fs"
	"os"
)

// PruneThrough deletes the oldest segments whose records all have
// indexes up to through and are applied and synced, never the active
// segment, and never a segment of a term the Retain guard keeps (nor any
// after it, so what is left stays contiguous). Unlike PruneUpTo it cuts
// inside a term: a term can be long, and a size bound must hold during
// it. It returns the bytes given back and the highest index deleted, 0
// if none. A later Open resumes from the first segment left; the entries
// deleted count as synced.
func (j *Journal) PruneThrough(through uint64) (freed int64, upTo uint64, err error) {
	return j.pruneSegments(through, 0)
}

// PruneOver is PruneThrough that stops once the journal holds at most
// maxBytes (Stat's Bytes): it deletes only what a size bound needs,
// leaving the rest for replicas that may still ask for it.
func (j *Journal) PruneOver(maxBytes int64, through uint64) (freed int64, upTo uint64, err error) {
	return j.pruneSegments(through, max(maxBytes, 0))
}

func (j *Journal) pruneSegments(through uint64, maxBytes int64) (freed int64, upTo uint64, err error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, 0, ErrClosed
	}
	limit := min(through, j.synced)
	var terms []uint64
	var total int64
	for _, s := range j.segs {
		total += s.size
	}
	n := 0
	for _, s := range j.segs[:max(len(j.segs)-1, 0)] { // the last one is active
		if s.last > limit || s.last < s.first || total <= maxBytes {
			break
		}
		total -= s.size
		if k := len(terms); k == 0 || terms[k-1] != s.term {
			terms = append(terms, s.term)
		}
		n++
	}
	j.mu.Unlock()
	if n == 0 {
		return 0, 0, nil
	}
	// Ask the guard before taking any lock: it may call the journal.
	keepFrom, ok := j.firstRetained(terms)
	if !ok {
		keepFrom = ^uint64(0)
	}

	j.pruneMu.Lock()
	defer j.pruneMu.Unlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return 0, 0, ErrClosed
	}
	var victims []*segment
	for _, s := range j.segs[:max(len(j.segs)-1, 0)] {
		if len(victims) == n || s.term >= keepFrom || s.last > limit || s.last < s.first {
			break
		}
		victims = append(victims, s)
	}
	j.mu.Unlock()

	removed := 0
	for _, s := range victims { // oldest first: what is left stays contiguous
		if err = os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			break
		}
		err = nil
		removed++
		freed += s.size
		upTo = s.last
	}
	if removed > 0 {
		if serr := j.dirf.Sync(); err == nil {
			err = serr
		}
		j.mu.Lock()
		j.segs = j.segs[removed:]
		j.mu.Unlock()
	}
	return freed, upTo, err
}

// FirstIndex returns the index of the oldest record held, the next
// index when there is none: what PruneThrough and PruneOver have left.
func (j *Journal) FirstIndex() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.segs) > 0 {
		return j.segs[0].first
	}
	return j.written + 1
}
