package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The disk settles before every target's turn in a round: a target
// measured right after another's writes (or after the layouts) pays for
// their writeback below this kernel, which sync(2) does not wait for
// (a VM's host cache). On the project's VM the first target of a run lost
// 30–45% of its seqwrite, randread-cold and randwrite to the layouts, in
// the first round only, and the first target is the system under test.
const (
	// settleWindow is how long each probe of synced 4 KiB writes runs.
	settleWindow = 250 * time.Millisecond
	// settleGain is the improvement over the best probe so far that
	// counts as the disk still speeding up.
	settleGain = 1.1
	// settleCalm is how many probes in a row without that improvement
	// mean it has settled.
	settleCalm = 4
	// settleMax bounds the wait: a disk that never settles (other load)
	// still gets measured.
	settleMax = 30 * time.Second
	// settleSpan is the probe file's size: small, overwritten in place,
	// so that a probe's fdatasync flushes data and no metadata.
	settleSpan = 64 << 10
)

// settle waits until synced 4 KiB writes to a file in dir stop getting
// faster (see settleCalm), at most settleMax, and returns how long it
// waited. Only a failing probe file or a cancelled ctx is an error.
func settle(ctx context.Context, dir string) (time.Duration, error) {
	start := time.Now()
	f, err := os.CreateTemp(dir, ".gluon-bench-settle-")
	if err != nil {
		return 0, fmt.Errorf("settle: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4<<10)
	for off := int64(0); off < settleSpan; off += int64(len(block)) {
		if _, err := f.WriteAt(block, off); err != nil {
			return 0, fmt.Errorf("settle: %w", err)
		}
	}
	fd := int(f.Fd())
	if err := unix.Fsync(fd); err != nil {
		return 0, fmt.Errorf("settle: fsync %s: %w", f.Name(), err)
	}
	var best float64
	for calm, n := 0, int64(0); calm < settleCalm && time.Since(start) < settleMax; {
		if err := ctx.Err(); err != nil {
			return time.Since(start), err
		}
		t0, ops := time.Now(), 0
		for time.Since(t0) < settleWindow {
			if _, err := f.WriteAt(block, n%(settleSpan/int64(len(block)))*int64(len(block))); err != nil {
				return time.Since(start), fmt.Errorf("settle: %w", err)
			}
			if err := unix.Fdatasync(fd); err != nil {
				return time.Since(start), fmt.Errorf("settle: fdatasync %s: %w", f.Name(), err)
			}
			n++
			ops++
		}
		rate := float64(ops) / time.Since(t0).Seconds()
		if rate > best*settleGain {
			calm = 0
		} else {
			calm++
		}
		best = max(best, rate)
	}
	return time.Since(start), nil
}
