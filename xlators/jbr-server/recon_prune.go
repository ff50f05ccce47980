package jbrserver

import "time"

// prunable returns the journal index of the record holding
// core.DurableEverywhere, a log index: records up to it may be pruned
// once applied and synced. Journal and log indexes differ (replaced
// records, fast-forwards), so the log maps one to the other. 0 when this
// log does not hold that entry. Loop only.
func (l *loop) prunable() uint64 {
	ji, ok := l.log.jidx(l.c.DurableEverywhere())
	if !ok {
		return 0
	}
	return ji
}

// pruneJournal runs after each checkpoint. By default it deletes the
// oldest segments whose records every replica of the set holds
// committed and durably in its journal (core.DurableEverywhere) and this
// brick has applied and synced: no replica can need them from this
// journal, to catch up or to reconcile, since reconciliation starts after
// the last index known committed. A replica that is down, lagging or
// being resynced holds that index back, and what it lacks is kept for
// it. The active segment is always kept.
//
// Options.JournalMaxBytes is the hard cap on top: past it, the oldest
// applied and synced segments go even if a replica still needs them. A
// follower that later asks for deleted entries cannot be caught up from
// this journal: recon resyncs its store in full (gluon recon run). What
// the Retain guard keeps is never deleted; when that, or a store sync
// lagging behind, holds the journal over its bound, it says so at most
// once a minute.
func (s *Server) pruneJournal() {
	if snap := s.snap.Load(); snap != nil && snap.pruneTo > 0 {
		freed, upTo, err := s.j.PruneThrough(snap.pruneTo)
		if err != nil {
			s.log.Warn("jbr: pruning the journal", "err", err)
			return
		}
		if freed > 0 {
			s.log.Debug("jbr: pruned what every replica holds", "bytes", freed, "through_record", upTo)
		}
	}
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
		s.log.Debug("jbr: pruned the journal to its bound", "bytes", freed, "through_record", upTo)
	}
	if st := s.j.Stat(); st.Bytes > bound {
		now := time.Now().UnixNano()
		if last := s.lastPruneWarn.Load(); now-last > int64(time.Minute) && s.lastPruneWarn.CompareAndSwap(last, now) {
			s.log.Warn("jbr: journal stays over its bound: its older records are not yet synced, or are retained",
				"bytes", st.Bytes, "max_bytes", bound, "synced", st.Synced, "first", st.FirstIndex)
		}
	}
}
