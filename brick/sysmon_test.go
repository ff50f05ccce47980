package brick

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

func TestRelaxSysmon(t *testing.T) {
	relaxSysmon(slog.Default())
	f, err := os.Open("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	tids, err := f.Readdirnames(2)
	f.Close()
	if err != nil || len(tids) < 2 {
		t.Fatalf("threads %v: %v", tids, err)
	}
	if tids[0] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("first thread %s, want the main thread %d", tids[0], os.Getpid())
	}
	b, err := os.ReadFile("/proc/" + tids[1] + "/timerslack_ns")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(string(b))
	want := strconv.FormatInt(sysmonSlack.Nanoseconds(), 10)
	if capSysNice(t) && got != want {
		t.Errorf("sysmon thread %s: timer slack %s ns, want %s", tids[1], got, want)
	}
}
