package jbrserver

import (
	"fmt"
	"sync/atomic"
	"testing"

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
