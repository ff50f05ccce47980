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
// same names, options and defaults, so that results compare with
// baseline-2026-11-21.md. They are job files in jobs/ (embedded in the
// binary), buffered psync I/O unless noted. The sequential and read
// workloads make one pass over a file of Config.ReadSize (default 1 GiB)
// capped at Config.Runtime (default 15 s); the write and mixed ones run for
// Config.Runtime on files of Config.Size (default 256 MiB) per job:
//
//	seqwrite             1 MiB sequential writes into a new file, final fsync included
//	seqread-cold         1 MiB sequential reads, caches dropped first
//	seqread-warm         the same right after an (untimed) cold pass, fio's invalidate off
//	randread-cold        4 KiB random reads, caches dropped first; every block at most once
//	randread-aio-direct  4 KiB random reads, libaio, O_DIRECT, queue depth 16, caches dropped first
//	randwrite            4 KiB random writes, final fsync included
//	randwrite-fsync      4 KiB random writes, fsync after every write
//	randrw               4 KiB random 70% reads / 30% writes, Config.Jobs jobs, caches dropped first
//
// Each workload runs in a scratch directory of its own. The files a
// workload reads are laid out beforehand (fio --create_only=1, untimed);
// "caches dropped" means sync and echo 3 > /proc/sys/vm/drop_caches
// between layout and measurement. That empties the page, dentry and inode
// caches of the FUSE mount and of the disk behind it (bricks, loopback's
// backing directory) alike, which fio's own posix_fadvise does not reach
// through FUSE. It needs root; Config.KeepCaches skips it.
//
// fio runs with --output-format=json and its output is decoded
// (ParseFioJSON). Latencies are fio's total latency percentiles (lat_ns,
// requested with lat_percentiles=1; clat_ns for other fio output) of the
// read side, or of the write side for write-only jobs.
//
// The metadata workload "meta" (RunMeta, in Go) has Config.MetaWorkers
// workers (default 1, as in the reference suite) create, stat, list
// (readdir + lstat, like ls -l), read and unlink 5000 files of 1 KiB
// spread over 50 directories, each phase reported separately (meta-create
// ... meta-unlink) with operations per second and per-op p50/p99. The
// caches are dropped before meta-stat and meta-read.
//
// # Targets
//
// local is a temporary directory on the disk, loopback a go-fuse loopback
// mount of one (fs.NewLoopbackRoot, mounted inside the benchmark process;
// on kernels with FUSE passthrough its reads and writes bypass the daemon,
// loopback-np turns that off so the daemon serves the data as gluon does),
// gluon:replica=N[,distribute=M] a gluon volume started through a Starter,
// gluster:replica=N[,distribute=M] a GlusterFS volume on this host (Debian's
// glusterfs-server: glusterd on 127.0.0.1, bricks in a temporary directory,
// default volume options, mount -t glusterfs), and
// any other argument an existing directory such as a mount point. Every
// target is set up once, the rounds run interleaved (Config.Rounds), and
// everything is torn down at the end.
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
//	go run . bench gluon:replica=3 loopback local
//	go run . bench --rounds 5 --json out.json --plot out.svg gluon:replica=3 gluster:replica=3 local
//	go run . bench --rounds 1 --runtime 1s --size 4M --workloads randread-cold,meta local   # smoke test
//
// gluon bench takes Config's fields as flags (go run . bench --help).
// gluon: targets are started with ExecStarter, which runs this binary's
// gluon up (see UpArgs).
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
