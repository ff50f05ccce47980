// Package bufpool recycles I/O buffers by power-of-two class: the
// protocol's request write data and read replies on the server, scratch
// space on both sides, and write-behind's copies of acknowledged writes.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 12 // 4 KiB, the smallest class
	maxShift = 24 // 16 MiB: larger ones are allocated and dropped
)

// pools[i] holds *[]byte of capacity 1<<(minShift+i).
var pools [maxShift - minShift + 1]sync.Pool

// Get returns a buffer of length n. Put it back when done.
func Get(n int) *[]byte {
	if n <= 0 || n > 1<<maxShift {
		b := make([]byte, max(n, 0))
		return &b
	}
	i := class(n)
	if p, ok := pools[i].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(minShift+i))
	return &b
}

// Put recycles b; b must not be used afterwards.
func Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minShift || c > 1<<maxShift || c&(c-1) != 0 {
		return
	}
	pools[bits.Len(uint(c))-1-minShift].Put(b)
}

// class is the smallest pool whose buffers hold n bytes.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}
