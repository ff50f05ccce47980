package jbrserver

import "github.com/gluon-fs/gluon/xlators/jbr-server/core"

// LeaderTerm reports the current term and whether this brick leads in it
// and takes requests (not while it recovers). A translator above the
// server (cluster/dht2-guard) rereads state it keeps in the store when
// the term changes under it.
func (s *Server) LeaderTerm() (term uint64, leading bool) {
	sn := s.snap.Load()
	return sn.term, sn.role == core.Leader
}
