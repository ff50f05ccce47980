// Package dht2 is the client-side distribution translator ("cluster/dht2")
// over N sets, each set a subvolume (a replica set's jbr-client, or a
// protocol/client for replica 1). It fixes what GlusterFS's DHT gets wrong
// (directories on every brick, per-directory layouts, fix-layout walks):
//
// Layout. The token space has Tokens (65,536) tokens; a Layout maps each to
// a set and carries a Version. It is stored centrally (EtcdStore under
// LayoutKey(volume), saved with compare-and-swap on Version; MemStore for
// tests) and watched by every client. A GFID's two high bytes are its token
// (TokenOf, NewGFID), so every GFID names its home: inode and fd ops go to
// Layout.Owner[TokenOf(gfid)] without any lookup.
//
// Placement. A directory lives on exactly one set, its token's home, with
// no copies. A new directory's token comes from a Policy (default Spread:
// the sets in turn, a random token of each; RandomToken is uniform over
// the token space). Files, symlinks and device nodes take
// their parent's token, so lookup, create and readdirplus of a directory
// are one round trip to one set.
//
// Data is colocated with metadata: a file's data lives in the same inode,
// on the same set, as its attributes. Separating them (a data GFID on a
// data set) costs every create a second inode on a second set, every
// write of a new file a request to that set, and every stat of a file
// being written a merge of size and times from the data set (DHT2's
// "class II" metadata problem): 7 requests instead of 4 to create, write,
// close and stat a small file. What it would buy is placing data apart
// from the namespace, e.g. a huge file in a small directory; tokens
// already spread the namespace, and with it the data, evenly over sets,
// and colocating keeps one-round-trip create and stat and lets a token
// migrate as one unit. BenchmarkSmallFile measures both on in-process
// posix stores (TMPDIR on tmpfs, 2 shared cores, 3 runs of 3000 files):
// colocated 35-62 us, separated 75-85 us per file, before any network
// round trip is added.
//
// Remote names. A name whose inode carries another token than its
// directory's (a subdirectory with its own token, a hard link or a rename
// across tokens) is two halves: a stub on the directory's home (an empty
// regular file, or an empty directory for a directory so that link counts
// hold, whose GFID is the inode's masked by a hash of its place) and the
// inode's name in its own home's hidden anchor directory (AnchorName, in
// each set's root, one bucket per 256 tokens), keyed by inode, parent and
// name. The name is visible only while both exist. Both halves are made
// with ordinary entry ops, so any store and any replication below works:
// the stores need no notion of nameless inodes.
// Two-step ops make the invisible half first and switch visibility with a
// single op on one set (see entry.go), so a crash between steps leaves an
// orphan anchor name or a dangling stub, never a broken visible entry.
// Lookup and Readdir hide dangling stubs; Scrub removes both kinds,
// rate-limited, and counts them. SharedScrub runs it in the background
// for a volume's mounted clients, one at a time, claimed in etcd. Readdir lists only the directory's home; the attributes of a
// batch's stubs come from their inodes' homes, one IpcResolve per such
// set (in parallel) that the set's Guard answers with local lookups.
//
// Moving tokens. MigrateToken copies a token's directories, files and
// remote names to another set while clients work. Stale clients are kept
// from misapplying requests by a Guard, a brick-side translator on each
// set: once a token is fenced there, every request naming a GFID of that
// token gets ErrnoMoved, on which DHT2 reloads the layout, waits (up to 30
// s) for the version that moves the token, and retries at the new home.
// See MigrateToken for the protocol and its limits.
//
// Request ids. Every mutating request DHT2 sends a set carries a Seq of
// its own (see reqIDs): a replicated set takes a second request with the
// same (Client, Seq) for a retry and does not apply it, and one request
// from above is often several on one set.
//
// Statfs adds up all sets.
//
// Permissions. The sets check each request against its caller (features/
// access on the bricks). The anchor is writable by all; before a remote
// name is removed or moved, the name's own directory is asked whether the
// caller may (a rename of the name onto itself), so the usual write,
// search and sticky-bit rules hold.
//
// Limits. Unlink of a local name is one request: the parent's Guard
// refuses it for a stub, which is then removed in two steps. Rmdir looks
// the name up first (two round trips) to tell a stub from a local name;
// a lookup of a remote name is two round trips too, stub then anchor; mkdir of a directory whose token lives
// elsewhere costs three requests (inode, parent pointer, stub). A replace by rename across tokens removes
// the target first, and RENAME_EXCHANGE across tokens is three renames:
// neither is atomic. A rename's check that a directory does not move under
// itself reads each ancestor's parent pointer (an xattr DHT2 keeps on
// directories). Scrub holds every remote name in memory while it runs.
// A stub made by a rename belongs to the renamer, so a sticky directory
// judges its removal by that owner. Sets are named by their index in the
// layout: a layout that renumbers them (Layout.Without) needs clients
// rebuilt over the new list of subvolumes.
package dht2
