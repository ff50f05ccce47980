package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// BenchmarkAppendGroupCommit measures durable appends of 4 KiB writes by
// 1, 8 and 64 concurrent appenders sharing fdatasyncs. Run it on the disk
// that will hold journals: go test -bench . -run '^$' ./xlators/fdl/journal
func BenchmarkAppendGroupCommit(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			j := open(b, b.TempDir(), Options{})
			defer closeJ(b, j)
			if err := j.StartTerm(1); err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 4096)
			var left atomic.Int64
			left.Store(int64(b.N))
			b.SetBytes(4096)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					rec := &Record{Call: xl.Call{Seq: uint64(w)}, Fop: xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID}, Data: data}}
					for left.Add(-1) >= 0 {
						if _, err := j.Append(context.Background(), rec); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkEnqueueApply measures what a replica does per request: queue a
// 4 KiB write, wait until Notify says it is written, mark it applied. It
// reports the process's CPU time per record (cpu-ns/op) beside wall time:
// on a small machine shared by bricks, CPU per request is what counts.
func BenchmarkEnqueueApply(b *testing.B) {
	j := open(b, b.TempDir(), Options{})
	defer closeJ(b, j)
	if err := j.StartTerm(1); err != nil {
		b.Fatal(err)
	}
	written := make(chan struct{}, 1)
	j.Notify(written)
	rec := &Record{Fop: xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID}, Data: make([]byte, 4096)}}
	b.SetBytes(4096)
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		idx, err := j.Enqueue(rec)
		if err != nil {
			b.Fatal(err)
		}
		for {
			w, err := j.Written()
			if err != nil {
				b.Fatal(err)
			}
			if w >= idx {
				break
			}
			<-written
		}
		j.MarkApplied(idx)
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
