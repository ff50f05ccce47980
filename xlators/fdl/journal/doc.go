// Package journal is gluon's full-data log: every mutating request, with
// its payload, is made durable here before the store sees it, so a crash
// can be replayed and replicas can be reconciled term by term.
//
// # Layout
//
// A journal is a directory:
//
//	term-<term>-<first index>.log   segments, 16 hex digits each, so names sort
//	term      highest term ever started, and its first index (durable)
//	synced    synced watermark (durable)
//	applied   applied watermark, saved lazily, trusted within one boot
//	lock      flock held while open
//
// Segments are preallocated (Options.SegmentSize, default 64 MiB) and
// rotated when full; a sealed segment gives back its unused space. The
// active segment is also written with zeros a stretch ahead of its
// records, so that each batch's fdatasync flushes data into blocks
// already written instead of committing an extent conversion as well. Every
// value on disk is little-endian and versioned, and every record carries
// an xxhash64 checksum (record.go and segment.go give the layouts).
//
// # Terms and indexes
//
// Indexes are dense and increase across terms. A term, once started, is
// never started again, not even after a restart: the term file is
// replaced atomically (tmp, fsync, rename, fsync dir) before a term's
// first record. Open resumes the highest term; StartTerm begins a higher
// one. Replication drives terms (and may pass indexes) from above.
//
// # Written and durable: group commit
//
// Append reserves the next index under a lock, checksums its record
// outside it, and waits. A flusher goroutine takes every sealed record
// queued so far and writes them with one pwritev: they are then written
// (Written), which survives the process but not a power loss. Enqueue
// writes them itself when nobody else is writing and they fit the active
// segment, saving the thread switches of a handoff to the flusher and
// back; only one goroutine writes segment files at a time. A
// syncer goroutine fdatasyncs the active segment whenever a caller waits
// for durability (Append, Queue's wait, Sync, RequestSync) and, failing
// that, Options.SyncInterval after records were written; one fdatasync
// covers every record written before it (Durable), so sync throughput
// grows with the number of concurrent appenders. Enqueue writes without
// asking for a sync: replication acknowledges written records and syncs
// only for fsync. A sealed segment is synced before it is closed, so only
// the active one ever holds unsynced records; Open syncs it too, since a
// process that died may have left records only in the page cache.
//
// # States
//
// A record is logged when Append returns, applied when the caller says
// so (MarkApplied), and synced when the caller has synced the store after
// applying it (MarkSynced). States are watermarks, not rewrites of the
// records, so records stay immutable once written. On start the entries
// to replay (Unapplied) are those above the applied watermark if it was
// saved in the current boot (the store's unsynced changes survived in the
// page cache), else those above the synced watermark.
//
// # Recovery
//
// Open never truncates valid records. It checks every record; damage at
// the end of the last batch written (a torn write: bad length, bad
// checksum, garbage or zeros) is cut at the last intact record and
// logged at Warn with the file and offset. Each record stores the highest
// index that was durable when it was queued, so damage followed by an
// intact record written after the damaged one was acknowledged is
// corruption in the middle of the journal, and Open fails with
// ErrCorrupt instead of dropping acknowledged data. So does damage to a
// sealed segment, a missing segment, a damaged state file, and a segment
// that lost its header although the synced watermark says it held
// records. A journal Open refuses is left as it was, for inspection.
// Indexes continue right after the last intact record, even when the
// term file names a later first index that a torn write never reached.
//
// Damage inside the last batch cannot be told from a torn write, so an
// acknowledged record there may be cut as one; the checksums guarantee
// only that no damaged record is ever returned. FuzzCrash and
// TestDamagePatterns check these rules against truncation, flipped bytes
// and zeroed ranges.
//
// # Pruning
//
// Only applied and synced records are deleted, whole segments at a time,
// oldest first and never the active segment. Prune and PruneUpTo delete
// whole terms, never the current one: fdl's Options.MaxBytes bound ends
// a term and calls PruneUpTo. PruneThrough deletes segments up to a
// record index, inside a term too: jbr-server prunes with it, after each
// checkpoint, through the index every replica of the set holds durably
// (what no replica can need from this journal). PruneOver stops once the
// journal holds at most a byte count: jbr-server keeps the hard cap
// jbr.journal-max-size with it, needed or not. A Retain guard, if installed, keeps the terms it names and every
// term after; Prune fails rather than delete part of what it was asked.
// A replica that lags behind what its leader's journal still holds is
// caught up by a full resync (see jbr-server's NeedsResync and
// FastForward).
package journal
