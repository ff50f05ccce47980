// Package jbrserver is the JBR (journal based replication) server
// translator. It sits on every brick of a replica set, above the local
// store, with the other bricks of the set as peers (protocol clients).
// One brick, elected through etcd, leads; it orders every mutating
// request, replicates it into a quorum of journals, and only then
// applies it and answers. The replication logic is the deterministic
// state machine in package core; this package carries it out: one loop
// goroutine owns the core and does its I/O.
//
// GlusterFS's JBR had a static leader, a term that was always 0, a
// journal truncated on restart, fsync that never reached followers,
// retries that reordered writes and every write to an inode serialised.
// Here terms are etcd election revisions, durable in the journal and
// never reused; the journal is append-only; a request is acknowledged
// only once it is written to a quorum of journals, and an fsync only once
// what it covers is fdatasynced in a quorum of them; retries carry their
// request id and are deduplicated; and only conflicting requests are
// ordered.
//
// # Write path
//
// A mutating request (the op table's Mutating ops; Open with O_TRUNC
// becomes a replicated Truncate to zero plus a local open) reaches the
// leader. If fewer peers are connected than a quorum needs, it fails at
// once with EROFS and nothing is journaled. Otherwise the leader stamps
// it with (term, index), queues it to its journal and sends it to every
// follower. Once a quorum (Options.Quorum, a majority by default, the
// leader included) has written it to their journals it is committed,
// applied to the local store, and the store's result is the reply. The
// leader tells followers how far it has committed on its next append,
// or, when none follows within a twentieth of the heartbeat, in a
// heartbeat of its own; they apply the same entries. A brick applies an
// entry only once it is committed and written to its own journal.
//
// # Durability
//
// What an acknowledgement means, as for a local file system:
//
//   - A write (any mutating request) is acknowledged once a quorum has it
//     written (write(2)) to their journals. It survives the crash or
//     SIGKILL of any number of brick processes: the records are in the
//     kernel's page cache, and recovery reads them. A brick whose machine
//     loses power loses what its journal had not synced yet (records of
//     the last SyncInterval, 200 ms by default, or more if the disk's
//     cache lies); what survives is a prefix of its journal, and the
//     leader sends it the rest again. An acknowledged write is lost only
//     if no brick holding it takes part in electing the next leader:
//     the bricks of its write quorum lost power before syncing it, or
//     some lost power and the others were down when a leader was
//     elected without them. That is what a local file system risks for
//     writes not fsynced.
//   - Fsync and fdatasync on the leader, and writes through an O_SYNC or
//     O_DSYNC fd, return once every entry proposed before them is
//     committed and fdatasynced in a quorum of journals: they survive a
//     power loss of every machine at once (disks that honour flushes
//     assumed), since every leader's quorum includes one of those
//     journals. Concurrent syncs share each
//     journal's fdatasync (group commit): a journal syncs once for every
//     sync waiting when it starts, and entries of other writers ride
//     along. For a second after a sync the leader has every new entry
//     synced as it is appended, so that a client fsyncing after each
//     write finds the syncs under way instead of starting them.
//   - A mutating request whose call carries DurableKey is answered, like
//     an O_DSYNC write, only once every entry up to its own is committed
//     and fdatasynced in a quorum of journals (and, with FsyncChild, its
//     object fsynced in the local store): an Fsync after it would
//     return at once. Its entry is proposed durable (core.ProposeDurable):
//     the appends that carry it ask every journal to sync it, and
//     followers acknowledge it once synced instead of once written and
//     again once synced. A retry answered from the results cache waits
//     for the same, so whichever leader answers, the answer means
//     durable; durability is the quorum's journals', so it survives
//     leader changes. jbr-client asks for it on the writes that follow a
//     file's fsync and then answers the next fsync itself when every
//     mutation of the file it completed since the last FSYNC was
//     answered durable (see package jbrclient): an fsync after each
//     write costs one round trip, not two. The key is never journaled.
//     Bricks and clients must agree on it: protocol version 6 says so.
//   - Terms are durable before a brick sends or accepts anything in them
//     (journal.StartTerm fsyncs), so fencing holds across power losses.
//
// A leader asks for syncs in its messages (core.Message.Sync); followers
// report what they have written and what synced in each
// acknowledgement.
//
// # Ordering
//
// Committed entries apply in index order per conflict key and in
// parallel otherwise: an entry waits only for earlier entries sharing a
// key (its target GFID, the parent directories of entry ops, the object
// a create makes, and the object an unlink, rmdir or rename detaches,
// looked up by the leader; see keys.go). Writes to different files
// proceed together; writes to one file keep their order on every
// replica. Fd-based ops are applied by GFID with the fd's flags
// (anonymous fds), never through a handle: handles are per brick.
//
// # Errors
//
// Callers see, besides the store's own errors:
//
//   - EREMOTE: this brick does not lead (a follower, or a new leader
//     still recovering). Ask IpcLeader who does; jbr-client consumes it.
//   - EROFS: the leader sees too few peers connected for a quorum. The
//     request was refused before it was journaled.
//   - ENOTCONN: the request was journaled but did not commit (or, for a
//     sync, was not synced on a quorum) within
//     Options.RequestTimeout, or its leader stepped down first, or the
//     server closed. It may still commit later. The client retries with
//     the same request id (xl.Call Client and Seq); deduplication makes
//     that safe. Nothing is acknowledged that is not committed, and
//     nothing half-applied is acknowledged.
//   - EIO: the journal failed; the brick leaves its set until restarted.
//   - EINVAL for a write larger than xl.MaxIO, E2BIG for a request the
//     journal cannot hold, EINTR for a request cancelled before it was
//     proposed. A proposed request is never abandoned on cancellation.
//
// # Retries
//
// A retry of a request still in flight joins the original (the core
// matches request ids). A retry of a committed request is answered from
// a per-brick results cache: the outcome of each of the last
// ResultsWindow (65536) committed requests, keyed by request id, filled
// by every replica as it commits, so a new leader answers retries of what
// its predecessor committed. A new leader takes requests only once the
// entries it recovered have committed, so a retry cannot slip in before
// its original is known committed. The window is per brick and in
// memory: a retry arriving after 65536 newer requests, or after the
// brick restarted, is applied again. Requests without a request id (Seq
// zero) get one from the leader and cannot be recognised when retried. A retried Create answered from the cache on another brick
// than the one that applied it returns an anonymous fd (H zero).
//
// # Reads
//
// Reads are served by the leader only, except under FollowerRead.
// Options.Consistency chooses what a read promises:
//
//   - Linearizable (default): the read sees every write acknowledged
//     before it arrived, on any brick. The leader must know that no
//     newer leader can have committed anything, by a lease or by a round.
//     Lease: a follower that accepts an append or heartbeat from the
//     leader at its local time t promises to accept no newer term's
//     messages, and not to start leading a term it wins, before t +
//     Options.LeaseDuration (DefaultLeaseDuration, 500 ms; a
//     brick restarted with a term keeps that promise for LeaseDuration
//     from its start, as promises are not persisted). Every heartbeat
//     (each Options.Heartbeat) starts a round; once a quorum, the leader
//     included, has acknowledged a round sent at the leader's time s, the
//     leader holds a read lease until s + 0.9 x LeaseDuration, and serves
//     reads with no message at all, once the entries committed when the
//     read arrived that touch the object read have been applied. This
//     assumes monotonic clocks whose rates differ by less than 10% over
//     a lease (core.MaxDrift); CLOCK_MONOTONIC keeps running while a
//     process is stopped, but a suspended virtual machine may break it.
//     Without a lease (just elected, heartbeats unanswered, or
//     LeaseDuration negative) the leader confirms with a quorum that it
//     still leads its term: one heartbeat round shared by all reads that
//     arrive together, sent to as many followers as a quorum needs,
//     those that answered the latest rounds; a confirmed round also
//     renews the lease. Reads that leave no trace (all but Open and
//     Opendir) are served while the round is out and answered once it is
//     confirmed, so a cold read's disk time hides the round's; if the
//     round fails the result is thrown away. A leader cut off from its
//     quorum serves no read once its lease ends (ENOTCONN after the
//     request timeout). Promises delay a new leader by at most
//     LeaseDuration after the old leader's last heartbeat, which has
//     passed by the time a dead leader's etcd session expires.
//   - Lease: the leader serves reads from its applied state, after the
//     entries committed when the read arrived, without a round or a
//     follower lease, for as long as it holds its etcd session. A leader
//     paused or partitioned past its session may serve stale reads until
//     its session is seen to expire (up to the election TTL); writes are
//     unaffected. It saves nothing over Linearizable while that holds
//     its lease, and is kept for leaders whose followers are unreachable.
//   - FollowerRead: every brick serves reads from its own applied state,
//     which may lag the leader's; no waiting, no leader check.
//
// Writes are linearizable under every level. Flush, Release and
// Releasedir always go to the local store: fds are per brick. Fsync on
// the leader returns once every entry proposed before it is committed
// and synced in a quorum of journals (see Durability), whoever proposed
// them. With Options.FsyncChild it also fsyncs the local store. On a
// follower Fsync is EREMOTE.
//
// # Terms and fencing
//
// Terms come from the election (etcd revisions) and only grow. Every
// brick makes a new term durable in its journal (journal.StartTerm)
// before it sends anything in it, and refuses messages of older terms,
// so a deposed leader that still believes it leads gets nothing
// acknowledged: its followers answer with the newer term and it steps
// down. A leader that loses its etcd session steps down at once; its
// waiting requests fail with ENOTCONN.
//
// # Recovery
//
// A newly elected leader probes its peers, fetches the most advanced
// journal tail among a quorum of them, appends a no-op of its term if it
// recovered entries it does not know to be committed, and takes requests
// once that commits (see package core). Peers answer fetches from their
// journals, and the leader sends a lagging follower what it lacks the
// same way. A follower whose journal holds entries the leader does not
// (a deposed leader's unacknowledged tail) has them replaced.
//
// The journal is append-only, so a replacement is recorded, not done in
// place: every record carries its replicated (term, index) and the
// commit index known when written in its call's xdata, and a record for
// an index already in the log replaces that entry and all after it.
// Replaced records are marked applied in the journal and never applied
// to the store.
//
// On start-up the log is rebuilt from the journal: its last term and
// index, the highest term started, the applied watermark and the highest
// commit index any record knew. Entries known committed but not applied
// (a crash in between) are applied before New returns, idempotently the
// way FDL replays them (fdl.Reapply: fds by GFID, O_APPEND writes at
// their recorded offset, a create that finds its object done), as is
// every entry that was in the journal at start-up, since any of them may
// have been applied just before a crash. An O_APPEND write must
// therefore carry the offset its client believes is the end of the file,
// as FUSE does; live, it appends. Later entries wait until a leader says
// they committed.
//
// After each checkpoint a brick prunes the segments whose entries every
// replica holds committed and durably in its journal
// (core.DurableEverywhere: the leader's minimum of its followers' synced
// acknowledgements, sent to followers on heartbeats) and it has applied
// and synced itself (journal.PruneThrough); no replica needs those to
// catch up, and reconciliation starts after them. A replica that is
// down, lagging or being resynced holds them back. With
// Options.JournalMaxBytes (jbr.journal-max-size) each checkpoint also
// prunes the oldest synced segments past that cap (journal.PruneOver),
// needed or not. A peer that then needs entries gone from the journal (a lagging
// follower, or a recovering leader asking a follower) is reported by
// NeedsResync, and the brick daemon (package brick) does a full resync:
// it fast-forwards that brick's log while it is stopped (FastForward),
// and the recon package repairs its store from the leader's by GFID. The
// recon package also repairs stores that diverged behind gluon's back.
//
// # Goroutines
//
// A server runs its loop (the journal tells it when records are
// durable), a fetcher that reads entries from the journal for
// peers, one sender per peer (one IpcStep call at a time, preserving
// order, batching what queued meanwhile) and a pool of apply workers.
// On the leader, the caller waiting for a write applies its entry itself
// once it may, rather than being woken by a worker that did. Close stops
// them all, and waits for those callers.
package jbrserver
