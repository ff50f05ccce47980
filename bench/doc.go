// Package bench is gluon's benchmark harness: it runs a fixed set of fio
// workloads and a metadata workload against several file systems and
// reports them side by side, so that gluon can be compared with the bare
// disk, with the fastest Go FUSE file system possible on the machine, and
// with GlusterFS.
//
// # Workloads
//
// The fio workloads are those of the reference suite the 2026-11-21
// baseline was measured with (/work/shared/bench/fio-suite.sh), with the
// same names and fio options, so that ratios compare with
// baseline-2026-11-21.md. They are job files in jobs/ (embedded in the
// binary), buffered psync I/O unless noted:
//
//	seqwrite             1 MiB sequential writes into a new file of ReadSize, final fsync included
//	seqread-cold         1 MiB sequential reads of the ReadSize file "read", caches dropped first
//	seqread-warm         the same right after an (untimed) cold pass, fio's invalidate off
//	randread-cold        4 KiB random reads of "read", caches dropped first; every block at most once
//	randread-aio-direct  4 KiB random reads of "read", libaio, O_DIRECT, queue depth 16, caches dropped first
//	randwrite            4 KiB random writes into the Size file "rw.0", final fsync included
//	randwrite-fsync      4 KiB random writes into "rw.0", fsync after every write
//	randrw               4 KiB random 70% reads / 30% writes, Config.Jobs jobs on "rw.0" ... "rw.N",
//	                     caches dropped first
//
// The one-pass workloads (seq*, randread-*) stop after Config.Runtime if
// the pass takes longer; the others run for Config.Runtime.
//
// The files the workloads read or overwrite ("read", "rw.N") are laid out
// once per target, before the first round, with 1 MiB writes and an
// fsync, and shared by every workload and round (layoutData); seqwrite
// writes a new file in a scratch directory of its own. "Caches dropped"
// means sync and echo 3 > /proc/sys/vm/drop_caches just before the
// measured run. That empties the page, dentry and inode caches of the
// FUSE mount and of the disk behind it (bricks, loopback's backing
// directory) alike, which fio's own posix_fadvise does not reach through
// FUSE. It needs root; Config.KeepCaches skips it.
//
// # Durations and sizes
//
// The defaults are chosen so that the comparison the issue asks for,
// gluon bench gluon:replica=3 gluster:replica=3 loopback, finishes in
// about 10 minutes on a 2-core machine (the limit is 15), and still
// measures something:
//
//   - 2 rounds, so that the rounds interleave the targets and a median
//     exists; 6 s per fio workload (the reference suite: 5 rounds of
//     15 s, more than an hour for six targets). On a replicated volume
//     at ~1,000 IOPS that is still thousands of I/Os per run.
//   - 128 MiB per rw file (4 for randrw) and a 512 MiB read file: 1 GiB
//     laid out per target, about 20 s on a replicated volume writing
//     ~50 MiB/s, instead of the suite's 1 GiB read file per read job and
//     round, which took minutes. The random workloads touch each 4 KiB
//     block at most a few times in 6 s, and the cold ones read from
//     disk, not from a cache the run filled.
//   - The read file is not larger than the page cache (24 GiB here; that
//     would take minutes to lay out per target); the cold workloads drop
//     the caches instead, which is what makes them cold on every target.
//     A 512 MiB sequential pass takes well under a second on the bare
//     disk, so seqread-* on local and loopback are the least precise rows.
//   - meta: 2,000 files of 1 KiB in 20 directories (100 per directory, as
//     in the suite's 5,000 in 50), single-threaded; meta-create stops at
//     Config.Runtime (or Config.MetaCreateFor) and the later phases work
//     on the files it made (the NOTE says how many), so a slow target
//     costs seconds, not minutes: GlusterFS replica 3 creates ~300
//     files/s here, fewer under load. The directories are filled one
//     after another, so meta-ls lists directories of 100 entries on every
//     target however many files it got to create. meta-ls-big is off: its
//     directory costs an untimed create and unlink of every file.
//
// Run prints an estimate of the total before it starts (Report.Estimate)
// and the table header shows it next to the time taken. Larger --runtime,
// --rounds, --size, --read-size and --meta-files give steadier numbers
// when there is time.
//
// fio runs with --output-format=json and its output is decoded
// (ParseFioJSON). Latencies are fio's total latency percentiles (lat_ns,
// requested with lat_percentiles=1; clat_ns for other fio output) of the
// read side, or of the write side for write-only jobs.
//
// For the workloads that write, the NOTE also says how much the disk
// under the work directory (where every target but an existing
// directory keeps its files) wrote (and discarded, where the file system
// discards freed blocks) from the start of the run to a sync after it,
// as a multiple of the bytes fio wrote: a replica-3 volume writes at
// least 3x, and gluon's journal doubles that. The sync is untimed; it
// counts what the run left in the page cache (a brick's store, local's
// file). The counters are the device's (/proc/diskstats), so anything
// else writing to that disk meanwhile is counted too.
//
// The metadata workload "meta" (RunMeta, in Go) has Config.MetaWorkers
// workers (default 1, as in the reference suite) create, stat, list
// (meta-ls), read and unlink Config.MetaFiles files of 1 KiB spread over
// Config.MetaDirs directories, worker w owning directories w, w+workers,
// and so on. Between listing and reading, meta-find walks the whole tree
// in one thread, and meta-ls-big, if Config.MetaBig is positive, lists
// one directory of that many files in one thread. Each phase is reported
// separately (meta-create ... meta-unlink) with operations per second
// (for meta-find and the listings: entries per second; the NOTE gives the
// entries and the time) and p50/p99 per operation, per directory for
// meta-ls and meta-find, per entry for meta-ls-big. The caches are dropped
// before every phase that reads, all but meta-create and meta-unlink, and
// the phase waits 1.1 s more, untimed: GlusterFS's md-cache keeps stat
// and xattr answers in its client for 1 s by default, where dropping the
// kernel's caches does not reach.
// Every phase checks what it sees (sizes, bytes, the exact names of every
// directory, the number and types of entries find sees), so a file system
// that loses or invents entries fails instead of looking fast.
//
// The listings and the walk make the system calls GNU ls -l and find make
// (coreutils 9.1, findutils 4.9, seen with strace), since through FUSE each
// may be a round trip to the daemon. ls -l: lstat, lgetxattr
// security.selinux and getxattr system.posix_acl_access of the directory
// and of every entry (and the directory's default ACL if it has no access
// ACL), asking no more for an attribute once the file system answers
// ENOTSUP. gluon answers ENOTSUP for both. GlusterFS does for ACLs
// (without -o acl) but answers security.selinux with ENODATA (without
// --selinux), so ls -l goes on asking every entry for its label there:
// meta-ls and meta-ls-big make one more FUSE call per entry on GlusterFS
// than on gluon, answered by its client process, not the bricks. The
// harness keeps that call, as it is what ls -l costs a user. find: per
// directory an lstat and an open relative to its parent, an fstat and
// getdents; entries are told apart by the type getdents reports, so
// regular files are not stat'ed.
//
// meta-ls-big's files are created by all workers, untimed, after
// meta-find (so that find walks the same tree as meta-ls and meta-unlink),
// then listed cold and removed again, untimed. Its directory holds files
// of the same size as the others.
//
// Issue 5's metadata benchmark (create, stat, ls -l and unlink of 50,000
// files in 4 parallel jobs, find over the tree, ls -l of a 10,000-entry
// directory) against GlusterFS 3x3 distributed-replicate is:
//
//	gluon bench --rounds 1 --workloads meta --meta-files 50000 --meta-workers 4 --meta-dirs 200 \
//	    --meta-big 10000 --meta-create-for 30m gluon:replica=3,distribute=3 gluster:replica=3,distribute=3
//
// 4 workers of 50 directories of 250 files each, as the jobs of the
// earlier out-of-tree script (meta.py), which differs in that its files
// were empty, its directories were made within the timed create, and its
// ls -l of the tree did not ask for extended attributes. --meta-create-for
// lifts the cap of meta-create (--runtime, 6s by default) well above what
// GlusterFS needs, so that both targets create, list and find all 50,000
// files.
//
// # Targets
//
// local is a temporary directory on the disk, loopback a go-fuse loopback
// mount of one (fs.NewLoopbackRoot, mounted inside the benchmark process;
// on kernels with FUSE passthrough its reads and writes bypass the daemon,
// loopback-np turns that off so the daemon serves the data as gluon does),
// loopback-r3 (loopback-np keeping every file in three copies on the same
// disk, see below), gluon:replica=N[,distribute=M] a gluon volume started
// through a Starter,
// gluster:replica=N[,distribute=M] a GlusterFS volume on this host (Debian's
// glusterfs-server: glusterd on 127.0.0.1, bricks in a temporary directory,
// default volume options, mount -t glusterfs), and
// any other argument an existing directory such as a mount point. Every
// target is set up once, the rounds run interleaved (Config.Rounds), and
// everything is torn down at the end.
//
// loopback-r3 is the ceiling for any three-way replicated FUSE file
// system on this machine, gluon's and GlusterFS's alike. It is loopback-np
// (same mount, timeouts and passthrough off) whose files also have two
// copies at the same paths in two more directories on the same disk. A
// WRITE is written to both copies' page caches, then to the file, before
// it is answered, as JBR answers once a quorum has written it, not synced
// it. An FSYNC fdatasyncs the file and both copies at once and answers
// when the file and one copy are on disk (a quorum of two of three); the
// third finishes in the background, and closing the target waits for it.
// Creating or truncating a file, and unlinking, renaming or removing
// entries, do the same to the copies. There is no network, no journal and
// no ordering between replicas: whatever a replicated design adds to that
// is its own cost. Its CPU and RSS are this process's, as for loopback-np.
//
// For each workload and target the report has the median throughput over
// rounds, p50 and p99 latency, the ratio to the first target, and the CPU
// time (user + system, from /proc/<pid>/stat) and peak RSS of the
// processes serving the target: the gluon processes and their children,
// glusterd with the volume's bricks, client and self-heal daemon, or the
// benchmark itself for loopback. Report.WriteTable, WriteJSON and WriteSVG
// render it; every report records the machine and `git describe` of the
// source tree.
//
// # Usage
//
//	go run . bench gluon:replica=3 gluster:replica=3 loopback   # the comparison in RESULTS.md
//	go run . bench --rounds 5 --runtime 15s --json out.json --plot out.svg gluon:replica=3 local
//	go run . bench --rounds 1 --runtime 1s --size 4M --workloads randread-cold,meta local   # smoke test
//
// gluon bench takes Config's fields as flags (go run . bench --help);
// --plot writes SVG or, for FILE.png, PNG. gluon: targets are started
// with ExecStarter, which runs this binary's gluon up (see UpArgs).
//
// # Micro-benchmarks
//
// The hot paths have go test benchmarks of their own, outside this
// package; run them with go test -run '^$' -bench . PKG:
//
//	./xlators/protocol/wire      frame encode and decode (BenchmarkEncodeWrite4k, BenchmarkDecodeWrite4k, ...Readdir100)
//	./xlators/protocol/client    a request's round trip over TCP loopback (BenchmarkRoundTrip*)
//	./xlators/fdl/journal        journal append with group commit at 1, 8 and 64 writers (BenchmarkAppendGroupCommit)
//	./xlators/fdl                destaging the journal to the brick (BenchmarkDestage)
//	./xlators/posix              posix create and write (BenchmarkCreate, BenchmarkWrite4k, BenchmarkWrite1M)
//	./xlators/stackbench         a full mount-to-brick stack in process, no FUSE (BenchmarkStack*)
//	./xlators/jbr-server         replicated writes and latency through a JBR leader (BenchmarkReplicated*)
//	./xlators/jbr-client         the client side of a replica set (BenchmarkSteadyState)
//	./fuse                       the FUSE bridge on a real mount (BenchmarkWrite, BenchmarkReadDirect, BenchmarkStatUncached)
//
// stackbench is the one to profile without the kernel:
//
//	go test ./xlators/stackbench -run '^$' -bench Write4k -cpuprofile cpu.out
//	go tool pprof -top cpu.out
//
// # Profiling a brick or a mount under load
//
// gluon's daemons serve net/http/pprof when given --pprof 127.0.0.1:PORT
// (off by default; keep it on loopback): gluon brick, gluon mount
// --foreground, and gluon up, whose own process holds the FUSE client.
// Bring the volume up with profiling on, point a long benchmark at its
// mount directory, and take a 30 second CPU profile while it runs:
//
//	gluon up --dir /tmp/v --mount /tmp/v/mnt --pprof 127.0.0.1:6060 &
//	gluon bench --rounds 1 --runtime 120s --workloads randwrite /tmp/v/mnt &
//	go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=30
//
// That profiles the mount side. To profile a brick, run it by hand as
// gluon brick ... --pprof 127.0.0.1:6061 (gluon up starts its bricks
// without a debug server), mount its volume, and profile port 6061 the
// same way while the benchmark runs. /debug/pprof/heap, /goroutine and
// /mutex work alike. The CPU column of the report shows which process
// is worth profiling first.
package bench
