package bufpool

import "testing"

func TestGetSizes(t *testing.T) {
	for _, n := range []int{0, 1, 4095, 4096, 4097, 1 << 20, 1<<20 + 1, 1 << 24, 1<<24 + 1} {
		b := Get(n)
		if len(*b) != n {
			t.Errorf("Get(%d) has length %d", n, len(*b))
		}
		if c := cap(*b); n > 0 && n <= 1<<24 && (c < n || c&(c-1) != 0 || c < 1<<minShift) {
			t.Errorf("Get(%d) has capacity %d, want a power of two class", n, c)
		}
		Put(b)
	}
}

// Buffers from outside the pool, or of odd capacity, are dropped rather
// than handed out again under the wrong class.
func TestPutOddBuffers(t *testing.T) {
	odd := make([]byte, 5000)
	Put(&odd)
	for range 10 {
		if b := Get(5000); cap(*b) == 5000 {
			t.Fatal("an odd-sized buffer came back from the pool")
		}
	}
}
