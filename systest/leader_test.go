package systest

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

const (
	recordSize = 64
	blockSize  = 4096
)

// record is the i-th numbered record of an append stream, with its
// checksum.
func record(i int) []byte {
	head := fmt.Sprintf("record %d", i)
	return fmt.Appendf(nil, "%-55s%08x\n", head, crc32.ChecksumIEEE([]byte(head)))
}

// block is the content written to block i: seeded noise, different for
// every block.
func block(i int) []byte {
	b := make([]byte, blockSize)
	r := rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), byte(i >> 16), 1})
	r.Read(b)
	return b
}

// streamStats is what one writer did.
type streamStats struct {
	acked    atomic.Int64          // writes acknowledged
	maxPause atomic.Int64          // the slowest acknowledged write, in ns
	err      atomic.Pointer[error] // the failure the writer stopped at
}

func (s *streamStats) fail(err error) { s.err.Store(&err) }

// failure returns the error the writer stopped at, or nil.
func (s *streamStats) failure() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *streamStats) took(d time.Duration) {
	for {
		old := s.maxPause.Load()
		if int64(d) <= old || s.maxPause.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// appender appends record 0, 1, ... to an O_APPEND fd until stop.
func appender(w *caller, fd xl.Fd, stop <-chan struct{}, st *streamStats) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		rec := record(i)
		start := time.Now()
		// The offset is where the writer believes the end is, as FUSE sends.
		n, e := w.top.Write(w.ctx(context.Background()), fd, rec, int64(i*recordSize))
		if e != 0 || n != len(rec) {
			st.fail(fmt.Errorf("append of record %d: wrote %d, %v", i, n, e))
			return
		}
		st.took(time.Since(start))
		st.acked.Add(1)
	}
}

// blockWriter writes block k, k+stride, k+2*stride, ... each at its own
// offset, until stop.
func blockWriter(w *caller, fd xl.Fd, k, stride int, stop <-chan struct{}, st *streamStats) {
	for j := 0; ; j++ {
		select {
		case <-stop:
			return
		default:
		}
		i := k + j*stride
		start := time.Now()
		n, e := w.top.Write(w.ctx(context.Background()), fd, block(i), int64(i*blockSize))
		if e != 0 || n != blockSize {
			st.fail(fmt.Errorf("write of block %d: wrote %d, %v", i, n, e))
			return
		}
		st.took(time.Since(start))
		st.acked.Add(1)
	}
}

// TestLeaderLoss: writers stream acknowledged writes through the client
// graph (numbered records appended to one file, seeded blocks at distinct
// offsets of another) and the leader brick is SIGKILLed mid-stream. The
// writers see no error, only a pause; the new leader holds every
// acknowledged write, each record exactly once and in order; the killed
// brick restarts and catches up, and the three replicas end identical.
func TestLeaderLoss(t *testing.T) {
	c := newCluster(t, map[string]string{volume.OptLeaseTTL: "1s", volume.OptRetryTimeout: "30s"})
	v := c.open()
	w := newCaller(v.Top)
	logFd := w.create(t, "log", syscall.O_RDWR|syscall.O_APPEND)
	blkFd := w.create(t, "blocks", syscall.O_RDWR)
	old, term := c.leader(-1, 0)

	const blockWriters = 2
	stats := make([]*streamStats, 1+blockWriters) // the appender, then the block writers
	for i := range stats {
		stats[i] = &streamStats{}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { appender(w, logFd, stop, stats[0]) })
	for k := range blockWriters {
		wg.Go(func() { blockWriter(w, blkFd, k, blockWriters, stop, stats[1+k]) })
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()

	// progress waits until every writer has had n more writes acknowledged.
	progress := func(what string, n int64) {
		t.Helper()
		base := make([]int64, len(stats))
		for i, s := range stats {
			base[i] = s.acked.Load()
		}
		c.poll(what, func() (bool, string) {
			for i, s := range stats {
				if s.acked.Load() < base[i]+n {
					return false, fmt.Sprintf("writer %d: %d acknowledged (of %d), first error %v", i, s.acked.Load()-base[i], n, s.failure())
				}
			}
			return true, ""
		})
	}
	progress("writes before the kill", 30)

	killed := time.Now()
	c.kill(old)
	leader, _ := c.leader(old, term)
	t.Logf("killed leader brick %d; brick %d leads after %v", old, leader, time.Since(killed).Round(time.Millisecond))
	progress("writes after the failover", 30)
	stopWriters()
	for i, s := range stats {
		if err := s.failure(); err != nil {
			t.Errorf("writer %d failed: %v", i, err)
		}
		t.Logf("writer %d: %d writes acknowledged, longest pause %v", i, s.acked.Load(), time.Duration(s.maxPause.Load()).Round(time.Millisecond))
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every acknowledged write is on the new leader, read through the
	// client graph and straight from its brick directory.
	var wantLog []byte
	for i := range int(stats[0].acked.Load()) {
		wantLog = append(wantLog, record(i)...)
	}
	var nblocks int
	for k := range blockWriters {
		nblocks = max(nblocks, k+int(stats[1+k].acked.Load()-1)*blockWriters+1)
	}
	wantBlocks := make([]byte, nblocks*blockSize)
	for k := range blockWriters {
		for j := range int(stats[1+k].acked.Load()) {
			i := k + j*blockWriters
			copy(wantBlocks[i*blockSize:], block(i))
		}
	}
	check := func(where, name string, got, want []byte, unit int) {
		t.Helper()
		if bytes.Equal(got, want) {
			return
		}
		if len(got) != len(want) {
			t.Errorf("%s: %s has %d bytes, want %d", where, name, len(got), len(want))
		}
		for i := 0; i < min(len(got), len(want)); i += unit {
			if !bytes.Equal(got[i:min(i+unit, len(got))], want[i:min(i+unit, len(want))]) {
				t.Errorf("%s: %s: unit %d (offset %d) differs: %.64q", where, name, i/unit, i, got[i:min(i+unit, len(got))])
				return
			}
		}
	}
	got, e := w.readAll(logFd)
	if e != 0 {
		t.Fatalf("read log: %v", e)
	}
	check("through the client", "log", got, wantLog, recordSize)
	if got, e = w.readAll(blkFd); e != 0 {
		t.Fatalf("read blocks: %v", e)
	}
	check("through the client", "blocks", got, wantBlocks, blockSize)
	onDisk := func(brick int, where string) {
		t.Helper()
		for _, f := range []struct {
			name string
			want []byte
			unit int
		}{{"log", wantLog, recordSize}, {"blocks", wantBlocks, blockSize}} {
			got, err := os.ReadFile(filepath.Join(c.dirs[brick], f.name))
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("%s brick %d", where, brick), f.name, got, f.want, f.unit)
		}
	}
	onDisk(leader, "new leader")
	for _, fd := range []xl.Fd{logFd, blkFd} {
		if e := v.Top.Release(w.ctx(context.Background()), fd); e != 0 {
			t.Errorf("release of an fd opened before the failover: %v", e)
		}
	}

	// The killed brick comes back, catches up, and all replicas agree.
	c.start(old)
	c.waitOnline(old)
	c.converge()
	onDisk(old, "restarted")
}
