package jbrserver

import "time"

// pruneJournal keeps the journal under Options.JournalMaxBytes: it
// deletes the oldest segments whose records are applied and synced here
// (so committed, or replaced and never to be applied), as few as the
// bound needs. A follower that later asks for deleted entries cannot be
// caught up from this journal: recon resyncs its store in full (gluon
// recon run). What the Retain guard keeps is never deleted; when that,
// or a store sync lagging behind, holds the journal over its bound, it
// says so at most once a minute.
func (s *Server) pruneJournal() {
	bound := s.opts.JournalMaxBytes
	if bound <= 0 {
		return
	}
	freed, upTo, err := s.j.PruneOver(bound, s.j.Synced())
	if err != nil {
		s.log.Warn("jbr: pruning the journal", "err", err)
		return
	}
	if freed > 0 {
		s.log.Debug("jbr: pruned the journal", "bytes", freed, "through_record", upTo)
	}
	if st := s.j.Stat(); st.Bytes > bound {
		now := time.Now().UnixNano()
		if last := s.lastPruneWarn.Load(); now-last > int64(time.Minute) && s.lastPruneWarn.CompareAndSwap(last, now) {
			s.log.Warn("jbr: journal stays over its bound: its older records are not yet synced, or are retained",
				"bytes", st.Bytes, "max_bytes", bound, "synced", st.Synced, "first", st.FirstIndex)
		}
	}
}
