package sysmon

import (
	"runtime"
	"testing"
)

func TestWiden(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("Widen cannot raise GOMAXPROCS above the CPUs there are, and this machine has one")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)

	r1 := Widen(2)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("GOMAXPROCS %d while widened to 2, want 2", got)
	}
	r2 := Widen(2)
	r1()
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("GOMAXPROCS %d while a second user still has it widened, want 2", got)
	}
	r2()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("GOMAXPROCS %d after the last user restored it, want the environment's 1", got)
	}

	r := Widen(runtime.NumCPU() + 8)
	if got := runtime.GOMAXPROCS(0); got != runtime.NumCPU() {
		t.Errorf("GOMAXPROCS %d widened beyond the CPUs, want NumCPU %d", got, runtime.NumCPU())
	}
	r()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS %d after restore, want 1", got)
	}
}

// Without GOMAXPROCS in the environment the runtime's choice stands.
func TestWidenLeavesTheRuntimesChoice(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(1)
	r := Widen(2)
	got := runtime.GOMAXPROCS(0)
	r()
	if got != 1 {
		t.Errorf("GOMAXPROCS %d, want 1 untouched without GOMAXPROCS in the environment", got)
	}
}
