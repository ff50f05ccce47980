package sysmon

import (
	"os"
	"runtime"
	"sync"
)

var wide struct {
	mu    sync.Mutex
	users int
	base  int // GOMAXPROCS before the first user; 0 if not raised
}

// Widen raises GOMAXPROCS to n, or to the CPUs there are if fewer, until
// the returned function is called (once); concurrent users share the
// raise, and the last one puts it back.
//
// It is for a burst of parallel work in a process narrowed on purpose:
// gluon up runs each brick with GOMAXPROCS=1, since idle Ps cost its
// small requests CPU, but then a brick filling in a large directory
// listing uses one core while another sits idle, and its goroutines
// blocked on the disk hold the only P until sysmon notices (up to a
// millisecond or two with Relax). Changing GOMAXPROCS stops the world
// for some microseconds, so a burst should last a millisecond or more.
//
// Only a GOMAXPROCS set by the environment is raised: the runtime's own
// choice already follows the CPUs and cgroup quota the process may use.
func Widen(n int) (restore func()) {
	wide.mu.Lock()
	defer wide.mu.Unlock()
	if os.Getenv("GOMAXPROCS") != "" {
		if cur, want := runtime.GOMAXPROCS(0), min(n, runtime.NumCPU()); cur < want {
			if wide.base == 0 {
				wide.base = cur
			}
			runtime.GOMAXPROCS(want)
		}
	}
	wide.users++
	return unwiden
}

func unwiden() {
	wide.mu.Lock()
	defer wide.mu.Unlock()
	if wide.users--; wide.users == 0 && wide.base > 0 {
		runtime.GOMAXPROCS(wide.base)
		wide.base = 0
	}
}
