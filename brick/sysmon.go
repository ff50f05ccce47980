package brick

import (
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// sysmonSlack is the timer slack given to the Go runtime's system monitor
// thread (the kernel's default is 50 µs).
const sysmonSlack = time.Millisecond

var relaxSysmonOnce sync.Once

// relaxSysmon lengthens the timer slack of the runtime's sysmon thread.
// While any goroutine runs, sysmon sleeps 20 µs at a time (plus the
// slack) and each first syscall after an idle spell wakes it. A brick
// answering requests one at a time is idle between most of them, so
// sysmon woke several times per request: more than half of a follower's
// context switches, over a tenth of its CPU, with every brick and the
// client of a machine sharing its few cores. With more slack the kernel
// lets those sleeps run longer, so sysmon wakes less often; it still
// retakes a P stuck in a syscall, within a millisecond or two.
//
// sysmon is the first thread the runtime starts, so it is the second in
// /proc/self/task, which lists threads in creation order. Setting
// another thread's slack needs CAP_SYS_NICE; without it nothing changes.
func relaxSysmon(log *slog.Logger) {
	relaxSysmonOnce.Do(func() {
		f, err := os.Open("/proc/self/task")
		if err != nil {
			return
		}
		tids, err := f.Readdirnames(2)
		f.Close()
		if err != nil || len(tids) < 2 || tids[0] != strconv.Itoa(os.Getpid()) {
			return
		}
		ns := strconv.FormatInt(sysmonSlack.Nanoseconds(), 10)
		if err := os.WriteFile("/proc/"+tids[1]+"/timerslack_ns", []byte(ns), 0); err != nil {
			log.Debug("brick: cannot set the runtime monitor's timer slack", "err", err)
		}
	})
}
