package sysmon

import (
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// narrowed waits for the timer to put GOMAXPROCS back, and fails if it
// is not then base or a user is left.
func narrowed(t *testing.T, base int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		wide.mu.Lock()
		users, raised := wide.users, wide.base > 0
		wide.mu.Unlock()
		if users != 0 {
			t.Fatalf("%d users left after all restored", users)
		}
		if !raised {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("GOMAXPROCS still raised 10 s after the last restore")
		}
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS %d after the last restore, want %d", got, base)
	}
}

// narrowTo1 sets GOMAXPROCS to 1 and $GLUON_WIDEN to limit for the test.
func narrowTo1(t *testing.T, limit string) {
	t.Helper()
	if runtime.NumCPU() < 2 {
		t.Skip("Widen cannot raise GOMAXPROCS above the CPUs there are, and this machine has one")
	}
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	t.Setenv(WidenEnv, limit)
}

func TestWiden(t *testing.T) {
	narrowTo1(t, strconv.Itoa(runtime.NumCPU()))

	r1 := Widen(2)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("GOMAXPROCS %d while widened to 2, want 2", got)
	}
	r2 := Widen(2)
	r1()
	r1() // again: nothing
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("GOMAXPROCS %d while a second user still has it widened, want 2", got)
	}
	r2()
	narrowed(t, 1)

	r := Widen(runtime.NumCPU() + 8)
	if got := runtime.GOMAXPROCS(0); got != runtime.NumCPU() {
		t.Errorf("GOMAXPROCS %d widened beyond the CPUs, want NumCPU %d", got, runtime.NumCPU())
	}
	r()
	narrowed(t, 1)
}

// Users coming and going at once share one raise, calling restore twice
// included, and GOMAXPROCS goes back once they are all gone.
func TestWidenConcurrent(t *testing.T) {
	narrowTo1(t, "2")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				r := Widen(2)
				if got := runtime.GOMAXPROCS(0); got != 2 {
					t.Errorf("GOMAXPROCS %d while widened to 2, want 2", got)
				}
				r()
				r()
			}
		})
	}
	wg.Wait()
	narrowed(t, 1)
}

// $GLUON_WIDEN caps the raise, and without it (or with nonsense in it)
// whatever set GOMAXPROCS is obeyed.
func TestWidenOnlyAsAllowed(t *testing.T) {
	for _, limit := range []string{"", "1", "0", "-2", "two"} {
		narrowTo1(t, limit)
		t.Setenv("GOMAXPROCS", "1")
		r := Widen(2)
		got := runtime.GOMAXPROCS(0)
		r()
		if got != 1 {
			t.Errorf("%s=%q: GOMAXPROCS %d, want 1 untouched", WidenEnv, limit, got)
		}
		narrowed(t, 1)
	}
}

// A process started with NarrowEnv runs on the Ps asked for and may
// widen to every CPU.
func TestNarrowEnv(t *testing.T) {
	want := []string{"GOMAXPROCS=1", WidenEnv + "=" + strconv.Itoa(runtime.NumCPU())}
	if got := NarrowEnv(1); !slices.Equal(got, want) {
		t.Errorf("NarrowEnv(1) = %q, want %q", got, want)
	}
}
