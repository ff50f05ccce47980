package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

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
