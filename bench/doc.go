// Package bench is gluon's benchmark harness: it runs a fixed set of fio
// workloads and a metadata workload against several file systems and
// reports them side by side, so that gluon can be compared with the bare
// disk, with the fastest Go FUSE file system possible on the machine, and
// with GlusterFS.
//
// # Workloads
//
// The fio workloads are job files in jobs/ (embedded in the binary), all
// time based (Config.Runtime, default 10 s) on files of Config.Size
// (default 256 MiB) per job, buffered psync I/O unless noted:
//
//	seqwrite         1 MiB sequential writes, final fsync included
//	seqread          1 MiB sequential reads
//	randread         4 KiB random reads
//	randwrite        4 KiB random writes, final fsync included
//	randwrite-fsync  4 KiB random writes, fsync after every write
//	randrw           4 KiB random 70% reads / 30% writes, Config.Jobs jobs
//	randread-aio     4 KiB random reads, libaio, O_DIRECT, queue depth 16
//
// fio runs with --output-format=json and its output is decoded
// (ParseFioJSON). Latencies are fio's total latency percentiles (lat_ns,
// requested with lat_percentiles=1; clat_ns for other fio output) of the
// read side, or of the write side for write-only jobs.
//
// The metadata workload "meta" (RunMeta, in Go) has Config.Jobs workers
// create, stat, list (readdir + lstat, like ls -l), read and unlink small
// files spread over directories, each phase reported separately
// (meta-create ... meta-unlink) with operations per second and per-op
// p50/p99.
//
// # Targets
//
// local is a temporary directory on the disk, loopback a go-fuse loopback
// mount of one (fs.NewLoopbackRoot, mounted inside the benchmark process),
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
//	go run . bench --rounds 5 --runtime 30s --json out.json --plot out.svg gluon:replica=3 gluster:replica=3 local
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
