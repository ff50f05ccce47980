package jbrserver

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// BenchmarkReplicatedWrite measures 4 KiB writes through a leader that
// replicates to two followers (peers connected directly, real journals
// and posix stores on the test's temporary directory). Each parallel
// writer has its own file, so writes apply in parallel and share
// journal fsyncs.
func BenchmarkReplicatedWrite(b *testing.B) {
	c := newCluster(b, 3, Options{})
	c.elect(0, 2)
	leader := c.n[0].srv
	data := make([]byte, 4096)
	var files atomic.Int32
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		cl := newCaller()
		fd, _, e := leader.Create(cl.next(), xl.RootGFID, fmt.Sprint("f", files.Add(1)), xl.NewGFID(), 2, 0o644)
		if e != 0 {
			b.Error(e)
			return
		}
		var off int64
		for pb.Next() {
			if _, e := leader.Write(cl.next(), fd, data, off); e != 0 {
				b.Error(e)
				return
			}
			off += int64(len(data))
		}
	})
}

// BenchmarkReplicatedLatency measures the latency of ops through a leader
// of three replicas with the default heartbeat and consistency, for 1 and
// 16 concurrent callers, each on a file of its own: bricks connected
// directly (the replication logic alone) or over loopback TCP with the
// protocol client and server (as deployed, the caller being a mount).
// The ops are 4 KiB writes at random offsets of an 8 MiB file, the same
// followed by an fsync (fio's randwrite-fsync), and stats (linearizable
// reads: a quorum round each). It reports p50, p99 and p99.9 per op.
func BenchmarkReplicatedLatency(b *testing.B) {
	for _, transport := range []string{"direct", "tcp"} {
		for _, op := range []string{"write", "write+fsync", "stat"} {
			for _, callers := range []int{1, 16} {
				b.Run(fmt.Sprintf("%s/%s/writers=%d", transport, op, callers), func(b *testing.B) {
					opts := Options{Heartbeat: DefaultHeartbeat}
					var leader xl.Xlator
					if transport == "direct" {
						c := startCluster(b, 3, opts, 0) // segments as deployed
						c.elect(0, 2)
						leader = c.n[0].srv
					} else {
						leader = newTCPCluster(b, 3, opts).elect(0, 2)
					}
					benchLatency(b, leader, callers, op)
				})
			}
		}
	}
}

func benchLatency(b *testing.B, leader xl.Xlator, callers int, op string) {
	const fileSize = 8 << 20
	data := make([]byte, 4096)
	fds := make([]xl.Fd, callers)
	cls := make([]*caller, callers)
	for w := range callers {
		cls[w] = newCaller()
		fd, _, e := leader.Create(cls[w].next(), xl.RootGFID, fmt.Sprint("f", w), xl.NewGFID(), syscall.O_RDWR, 0o644)
		if e != 0 {
			b.Fatal(e)
		}
		fds[w] = fd
	}
	lat := make([][]time.Duration, callers)
	var ops atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, fd := cls[w], fds[w]
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for ops.Add(1) <= int64(b.N) {
				off := int64(r.IntN(fileSize/len(data))) * int64(len(data))
				start := time.Now()
				var e syscall.Errno
				switch op {
				case "stat":
					_, e = leader.Getattr(cl.next(), fd.GFID)
				case "write+fsync":
					if _, e = leader.Write(cl.next(), fd, data, off); e == 0 {
						e = leader.Fsync(cl.next(), fd, true)
					}
				default:
					_, e = leader.Write(cl.next(), fd, data, off)
				}
				if e != 0 {
					b.Error(e)
					return
				}
				lat[w] = append(lat[w], time.Since(start))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.999), "p99.9-µs")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkEncodeRequest encodes a 1 MiB write as a log entry, which the
// leader does for every write it proposes.
func BenchmarkEncodeRequest(b *testing.B) {
	f := &xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID, H: 3}, Off: 1 << 20, Data: make([]byte, 1<<20)}
	c := &xl.Call{Uid: 1, Client: [16]byte{1}, Seq: 9}
	b.SetBytes(int64(len(f.Data)))
	for b.Loop() {
		encodeRequest(c, f)
	}
}
