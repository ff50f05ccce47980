package jbrclient

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// nop answers every op at once, so the benchmarks measure the client.
type nop struct{ xl.Funnel }

func newNop() *nop {
	return &nop{xl.Funnel{H: func(context.Context, *xl.Fop) *xl.Result { return &xl.Result{} }}}
}

// Steady-state cost of routing a write (ordering bookkeeping included)
// and a read, with parallel callers.
func BenchmarkSteadyState(b *testing.B) {
	kids := []xl.Xlator{newNop(), newNop(), newNop()}
	c, err := New(kids, Options{Leaders: newSource(1, 1), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 4096)
	for _, op := range []string{"write", "read"} {
		b.Run(op, func(b *testing.B) {
			var seq atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 4096)
				for pb.Next() {
					ctx := req(seq.Add(1))
					var e syscall.Errno
					if op == "write" {
						_, e = c.Write(ctx, xl.Fd{H: 1}, data, 0)
					} else {
						_, e = c.Read(ctx, xl.Fd{H: 1}, buf, 0)
					}
					if e != 0 {
						b.Fatal(e)
					}
				}
			})
		})
	}
}
