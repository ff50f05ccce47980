package sysmon

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// WidenEnv names the environment variable that lets Widen raise
// GOMAXPROCS, and to at most how many Ps. gluon up sets it (NarrowEnv)
// for the bricks whose GOMAXPROCS it narrows; a GOMAXPROCS the user set,
// or the runtime chose, is left alone unless the user sets it too.
const WidenEnv = "GLUON_WIDEN"

// linger is how long the Ps lent by Widen stay after the last user gives
// them back: a listing is a burst of Readdirs, and each change of
// GOMAXPROCS stops the world (waiting out a GC mark phase in progress),
// so a burst pays for a raise and a restore once, off its replies.
const linger = 100 * time.Millisecond

// NarrowEnv is the environment for a Go process to run on gomaxprocs Ps
// and widen, for a burst of parallel work, to every CPU there is: the
// GOMAXPROCS and WidenEnv variables to add to its own.
func NarrowEnv(gomaxprocs int) []string {
	return []string{
		"GOMAXPROCS=" + strconv.Itoa(gomaxprocs),
		WidenEnv + "=" + strconv.Itoa(runtime.NumCPU()),
	}
}

var wide struct {
	mu    sync.Mutex
	users int
	base  int         // GOMAXPROCS before the raise; 0 if not raised
	timer *time.Timer // restores base linger after the last user
}

// Widen raises GOMAXPROCS to n, or to fewer if $GLUON_WIDEN or the CPUs
// there are say so, until the returned function is called (again it
// does nothing); concurrent users share the raise, and linger after the
// last one GOMAXPROCS goes back.
//
// It is for a burst of parallel work in a process narrowed on purpose:
// gluon up runs each brick with GOMAXPROCS=1, since idle Ps cost its
// small requests CPU, but then a brick filling in a large directory
// listing uses one core while another sits idle, and its goroutines
// blocked on the disk hold the only P until sysmon notices (up to a
// millisecond or two with Relax).
//
// Without $GLUON_WIDEN (a positive number) it does nothing: whoever set
// GOMAXPROCS meant it, and the runtime's own choice already follows the
// CPUs and cgroup quota the process may use.
func Widen(n int) (restore func()) {
	limit, err := strconv.Atoi(os.Getenv(WidenEnv))
	if err != nil || limit <= 0 {
		return func() {}
	}
	want := min(n, limit, runtime.NumCPU())
	wide.mu.Lock()
	defer wide.mu.Unlock()
	wide.users++
	if cur := runtime.GOMAXPROCS(0); cur < want {
		if wide.base == 0 {
			wide.base = cur
		}
		runtime.GOMAXPROCS(want)
	}
	return sync.OnceFunc(unwiden)
}

// unwiden lets go of one user's raise, and has the last one's undone
// after linger unless another comes.
func unwiden() {
	wide.mu.Lock()
	defer wide.mu.Unlock()
	if wide.users--; wide.users > 0 || wide.base == 0 {
		return
	}
	if wide.timer == nil {
		wide.timer = time.AfterFunc(linger, narrow)
	} else {
		wide.timer.Reset(linger)
	}
}

// narrow restores GOMAXPROCS if no one has it widened. A timer that was
// reset as it fired may call it early; that only ends the linger early.
func narrow() {
	wide.mu.Lock()
	defer wide.mu.Unlock()
	if wide.users == 0 && wide.base > 0 {
		runtime.GOMAXPROCS(wide.base)
		wide.base = 0
	}
}
