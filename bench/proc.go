package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat. It is part of
// the kernel ABI (USER_HZ) and 100 on every Linux architecture Go supports.
const userHZ = 100

// procStat is the part of /proc/<pid>/stat the monitor needs.
type procStat struct {
	ppid  int
	start uint64 // start time in ticks since boot: tells a reused pid apart
	ticks uint64 // utime + stime
	rss   uint64 // bytes
}

// procKey identifies a process across pid reuse.
type procKey struct {
	pid   int
	start uint64
}

func readProcStat(pid int) (procStat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// comm (field 2) may contain spaces and parentheses; it ends at the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 > len(data) {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+2:])) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(k int) uint64 { v, _ := strconv.ParseUint(f[k], 10, 64); return v }
	return procStat{
		ppid:  int(num(1)),
		ticks: num(11) + num(12),
		start: num(19),
		rss:   num(21) * uint64(os.Getpagesize()),
	}, nil
}

// descendants returns roots plus all their live descendants, except that
// the benchmark's own process is never expanded: its children are fio.
func descendants(roots []int) []int {
	self := os.Getpid()
	want := make(map[int]bool)
	var expand []int
	for _, p := range roots {
		want[p] = true
		if p != self {
			expand = append(expand, p)
		}
	}
	if len(expand) == 0 {
		return roots
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return roots
	}
	children := make(map[int][]int)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	out := append([]int(nil), roots...)
	for len(expand) > 0 {
		p := expand[len(expand)-1]
		expand = expand[:len(expand)-1]
		for _, c := range children[p] {
			if !want[c] {
				want[c] = true
				out = append(out, c)
				expand = append(expand, c)
			}
		}
	}
	return out
}

// monitor measures the CPU time and peak resident memory of a set of
// processes (and their descendants) over a window. All of it is best
// effort: processes that exit inside the window take their CPU time with
// them.
type monitor struct {
	roots []int
	stop  chan struct{}
	done  chan struct{}

	mu    sync.Mutex
	first map[procKey]uint64 // ticks when first seen
	last  map[procKey]uint64 // ticks when last seen
	peak  uint64             // highest sum of RSS over one sample
}

const (
	monitorInterval = 250 * time.Millisecond
	monitorRescan   = 4 // samples between scans for new descendants
)

// startMonitor starts sampling roots; it returns nil when there is
// nothing to watch.
func startMonitor(roots []int) *monitor {
	if len(roots) == 0 {
		return nil
	}
	m := &monitor{
		roots: roots,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		first: make(map[procKey]uint64),
		last:  make(map[procKey]uint64),
	}
	pids := descendants(roots)
	m.sample(pids, true)
	go m.loop(pids)
	return m
}

func (m *monitor) loop(pids []int) {
	defer close(m.done)
	t := time.NewTicker(monitorInterval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if n%monitorRescan == 0 {
				pids = descendants(m.roots)
			}
			m.sample(pids, false)
		}
	}
}

// sample reads every pid once. Processes that appear after the start of
// the window count from zero CPU: they were started inside it.
func (m *monitor) sample(pids []int, initial bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var rss uint64
	for _, pid := range pids {
		st, err := readProcStat(pid)
		if err != nil {
			continue
		}
		k := procKey{pid, st.start}
		if _, ok := m.first[k]; !ok {
			if initial {
				m.first[k] = st.ticks
			} else {
				m.first[k] = 0
			}
		}
		m.last[k] = st.ticks
		rss += st.rss
	}
	m.peak = max(m.peak, rss)
}

// Stop ends the window and returns the CPU time (user + system) used in
// it and the peak of the summed RSS.
func (m *monitor) Stop() (cpu time.Duration, peakRSS uint64) {
	close(m.stop)
	<-m.done
	m.sample(descendants(m.roots), false)
	m.mu.Lock()
	defer m.mu.Unlock()
	var ticks uint64
	for k, last := range m.last {
		ticks += last - m.first[k]
	}
	return time.Duration(ticks) * time.Second / userHZ, m.peak
}
