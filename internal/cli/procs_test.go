package cli

import (
	"os"
	"runtime"
	"testing"
)

// gluon up divides the CPUs among its bricks unless the user chose.
func TestCPUShare(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3") // restored after the test
	if got := cpuShare(4); got != 0 {
		t.Errorf("with GOMAXPROCS set: cpuShare(4) = %d, want 0 (inherit the user's)", got)
	}
	os.Unsetenv("GOMAXPROCS")
	for _, n := range []int{1, 4, 10, 1000} {
		want := max(1, runtime.NumCPU()/n)
		if got := cpuShare(n); got != want {
			t.Errorf("cpuShare(%d) = %d, want %d on %d CPUs", n, got, want, runtime.NumCPU())
		}
	}
}
