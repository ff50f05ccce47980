package writebehind

import (
	"math/bits"
	"sync"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Request buffers are recycled: copying every acknowledged write into a
// fresh slice made nearly all of a client's allocations, and a
// sequential writer's garbage collection cost it a fifth of its CPU. A
// buffer goes back once its request has finished below, when nothing
// holds it any more: the translators below (protocol/client included,
// which waits for the socket write even when it gives up on a call) are
// done with a write's data when Write returns.

const (
	minBufShift = 12 // 4 KiB: the smallest class, a page
	maxBufShift = 22 // xl.MaxIO
)

// 1<<maxBufShift is xl.MaxIO: neither constant compiles otherwise.
const (
	_ uint = xl.MaxIO - 1<<maxBufShift
	_ uint = 1<<maxBufShift - xl.MaxIO
)

// bufPools holds buffers by capacity class, 1<<minBufShift to xl.MaxIO in
// powers of two.
var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// bufClass returns the class of buffers that hold n bytes, 0 < n <= xl.MaxIO.
func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a buffer of length n, 0 < n <= xl.MaxIO, holding garbage.
func getBuf(n int) []byte {
	c := bufClass(n)
	if p, _ := bufPools[c].Get().(*[]byte); p != nil {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minBufShift))
}

// putBuf recycles b, which the caller and everyone it was lent to are
// done with. Buffers not made by getBuf are left to the collector.
func putBuf(b []byte) {
	c := cap(b)
	if c < 1<<minBufShift || c > xl.MaxIO || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	bufPools[bufClass(c)].Put(&b)
}
