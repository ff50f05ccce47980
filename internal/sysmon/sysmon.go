// Package sysmon tunes the Go runtime's scheduling for processes that
// serve small requests one at a time on few Ps, as bricks do: Relax
// lengthens the timer slack of the runtime's system monitor thread, and
// Widen lends such a process more Ps for a burst of parallel work. A
// mount does not relax: side by side, a relaxed mount served meta-read
// 0.7× as fast and randread-cold no faster.
package sysmon

import (
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// Slack is the timer slack given to the runtime's system monitor thread
// (the kernel's default is 50 µs).
const Slack = time.Millisecond

var once sync.Once

// Relax lengthens the timer slack of the runtime's sysmon thread. While
// any goroutine runs, sysmon sleeps 20 µs at a time (plus the slack) and
// each first syscall after an idle spell wakes it. A brick answering
// requests one at a time is idle between most of them, so sysmon woke
// several times per request: more than half of a follower's context
// switches, and over a tenth of its CPU, with the client and bricks of a
// machine sharing its few cores. With more
// slack the kernel lets those sleeps run longer, so sysmon wakes less
// often; it still retakes a P stuck in a syscall within a millisecond or
// two.
//
// Threads inherit their creator's slack, and sysmon starts threads when
// it retakes a P from a blocked syscall, so some of the brick's worker
// threads carry the slack too: their timed sleeps (timers, deadlines)
// may end up to a millisecond late. Nothing in a brick needs that
// precision; its 1 ms hand-off of a stalled request may take 2 ms.
//
// sysmon is the first thread the runtime starts, so it is the second in
// /proc/self/task, which lists threads in creation order. Setting
// another thread's slack needs CAP_SYS_NICE; without it nothing changes.
func Relax(log *slog.Logger) {
	once.Do(func() {
		tid, ok := thread()
		if !ok {
			return
		}
		ns := strconv.FormatInt(Slack.Nanoseconds(), 10)
		if err := os.WriteFile("/proc/"+tid+"/timerslack_ns", []byte(ns), 0); err != nil {
			log.Debug("cannot set the runtime monitor's timer slack", "err", err)
		}
	})
}

// thread is the sysmon thread's id, if /proc shows it where expected.
func thread() (string, bool) {
	f, err := os.Open("/proc/self/task")
	if err != nil {
		return "", false
	}
	tids, err := f.Readdirnames(2)
	f.Close()
	if err != nil || len(tids) < 2 || tids[0] != strconv.Itoa(os.Getpid()) {
		return "", false
	}
	return tids[1], true
}
