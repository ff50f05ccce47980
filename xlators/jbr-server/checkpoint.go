package jbrserver

import (
	"context"
	"fmt"

	"github.com/gluon-fs/gluon/internal/tick"
)

// checkpoint syncs the store and marks what was applied before as
// synced: those entries are never replayed, even after a reboot, and
// their terms may be pruned.
func (s *Server) checkpoint(ctx context.Context) error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	applied := s.j.Applied()
	if applied <= s.j.Synced() {
		return nil
	}
	if err := s.opts.Sync(ctx); err != nil {
		return fmt.Errorf("syncing the store: %w", err)
	}
	return s.j.MarkSynced(applied)
}

func (s *Server) checkpointer(ctx context.Context) {
	tick.Every(ctx, s.opts.CheckpointInterval, func() bool {
		if err := s.checkpoint(ctx); err != nil {
			s.log.Warn("jbr: checkpoint failed", "err", err)
		}
		s.pruneJournal()
		return true
	})
}
