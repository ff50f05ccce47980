package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where a report was measured.
type Machine struct {
	Hostname  string `json:"hostname"`
	NumCPU    int    `json:"nproc"`
	MemTotal  uint64 `json:"mem_total_bytes"`
	Kernel    string `json:"kernel"` // uname -r
	Arch      string `json:"arch"`   // uname -m
	GoVersion string `json:"go_version"`
	Fio       string `json:"fio,omitempty"`    // fio --version
	Source    string `json:"source,omitempty"` // git describe --always --dirty of the source tree
}

func machineInfo(ctx context.Context) Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Source: sourceVersion(ctx)}
	m.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
		m.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	m.MemTotal = memTotal()
	return m
}

// memTotal reads MemTotal from /proc/meminfo (0 if unavailable).
func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// sourceVersion describes the source tree: `git describe --always --dirty`
// in the working directory (where `go run . bench` runs), else the VCS
// stamp the go command put into the binary, else "".
func sourceVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
