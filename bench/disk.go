package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// diskIO is what a block device wrote and discarded, in bytes, from
// /proc/diskstats (whose sectors are 512 bytes whatever the device's).
type diskIO struct {
	written, discarded uint64
}

// sub is d minus an earlier reading o; a counter that went backwards
// (the device was replaced) counts as nothing.
func (d diskIO) sub(o diskIO) diskIO {
	delta := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return diskIO{written: delta(d.written, o.written), discarded: delta(d.discarded, o.discarded)}
}

// diskDev names the block device that holds dir, as major and minor.
type diskDev struct{ major, minor uint32 }

func diskOf(dir string) (diskDev, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return diskDev{}, err
	}
	return diskDev{unix.Major(st.Dev), unix.Minor(st.Dev)}, nil
}

// readDiskIO reads dev's counters. A device /proc/diskstats does not list
// (tmpfs, overlay) is an error: there is nothing to count.
func readDiskIO(dev diskDev) (diskIO, error) {
	data, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return diskIO{}, err
	}
	return parseDiskstats(data, dev)
}

func parseDiskstats(data []byte, dev diskDev) (diskIO, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 10 {
			continue
		}
		maj, _ := strconv.ParseUint(string(f[0]), 10, 32)
		min, _ := strconv.ParseUint(string(f[1]), 10, 32)
		if uint32(maj) != dev.major || uint32(min) != dev.minor {
			continue
		}
		// Fields after major, minor and name: 7 is sectors written, 14
		// sectors discarded (kernels since 4.18; absent before).
		num := func(k int) uint64 {
			if 2+k >= len(f) {
				return 0
			}
			v, _ := strconv.ParseUint(string(f[2+k]), 10, 64)
			return v
		}
		return diskIO{written: num(7) * 512, discarded: num(14) * 512}, nil
	}
	return diskIO{}, fmt.Errorf("device %d:%d is not in /proc/diskstats", dev.major, dev.minor)
}

// diskNote describes a write workload's disk traffic against the bytes it
// wrote: how many times its data the target wrote, and what it discarded.
func diskNote(d diskIO, wrote int64) string {
	if wrote <= 0 {
		return ""
	}
	s := fmt.Sprintf("disk wrote %.1fx the data", float64(d.written)/float64(wrote))
	if float64(d.discarded)/float64(wrote) >= 0.05 {
		s += fmt.Sprintf(", discarded %.1fx", float64(d.discarded)/float64(wrote))
	}
	return s
}
