package sysmon

import (
	"bufio"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
)

// capSysNice reports whether this process may set other threads' slack.
func capSysNice(t *testing.T) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<23) != 0 // CAP_SYS_NICE
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

func TestRelax(t *testing.T) {
	if !capSysNice(t) {
		t.Skip("without CAP_SYS_NICE a process cannot set its threads' slack, and Relax leaves it")
	}
	Relax(slog.Default())
	tid, ok := thread()
	if !ok {
		t.Fatal("/proc/self/task does not list the main thread first and another after it")
	}
	b, err := os.ReadFile("/proc/" + tid + "/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(b))
	want := strconv.FormatInt(Slack.Nanoseconds(), 10)
	if got != want {
		t.Errorf("sysmon thread %s: timer slack %s ns, want %s", tid, got, want)
	}
}
