package systest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestColdStart: records are written, and files created, through the
// client graph; then all three bricks are SIGKILLed at once while a
// writer streams, and restarted. Nothing acknowledged is lost, on any
// replica, and the same client graph carries on: the write in flight at
// the crash completes once the bricks are back, without an error.
//
// Records go at fixed offsets, not with O_APPEND: a brick's results cache
// is in memory, so a retry of a write whose acknowledgement the crash
// swallowed is applied again after the restart (see package jbrserver,
// Retries), which only a positional write survives unchanged.
func TestColdStart(t *testing.T) {
	c := newCluster(t, map[string]string{volume.OptLeaseTTL: "1s", volume.OptRetryTimeout: "30s"})
	v := c.open()
	w := newCaller(v.Top)
	fd := w.create(t, "records", syscall.O_RDWR)

	// Before the crash: records, and small files each holding its name.
	const before, files = 100, 10
	for i := range before {
		if n, e := v.Top.Write(w.ctx(context.Background()), fd, record(i), int64(i*recordSize)); e != 0 || n != recordSize {
			t.Fatalf("write record %d: %d, %v", i, n, e)
		}
	}
	for i := range files {
		name := fmt.Sprintf("f%02d", i)
		ffd := w.create(t, name, syscall.O_WRONLY)
		if n, e := v.Top.Write(w.ctx(context.Background()), ffd, []byte(name), 0); e != 0 || n != len(name) {
			t.Fatalf("write %s: %d, %v", name, n, e)
		}
		if e := v.Top.Release(w.ctx(context.Background()), ffd); e != 0 {
			t.Fatalf("release %s: %v", name, e)
		}
	}
	_, term := c.leader(-1, 0)

	// A writer streams more records through the crash.
	st := &streamStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := before; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			n, e := v.Top.Write(w.ctx(context.Background()), fd, record(i), int64(i*recordSize))
			if e != 0 || n != recordSize {
				st.fail(fmt.Errorf("write of record %d: wrote %d, %v", i, n, e))
				return
			}
			st.took(time.Since(start))
			st.acked.Add(1)
		}
	})
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriter()
	progress := func(what string, n int64) {
		t.Helper()
		base := st.acked.Load()
		c.poll(what, func() (bool, string) {
			return st.acked.Load() >= base+n, fmt.Sprintf("%d acknowledged, error %v", st.acked.Load()-base, st.failure())
		})
	}
	progress("records before the crash", 20)

	crashed := time.Now()
	c.kill(0, 1, 2)
	ackedAtCrash := st.acked.Load()
	for i := range replicas {
		c.start(i)
	}
	leader, _ := c.leader(-1, term)
	t.Logf("all bricks killed after %d streamed records; brick %d leads %v later", ackedAtCrash, leader, time.Since(crashed).Round(time.Millisecond))
	progress("records after the restart", 20)
	stopWriter()
	if err := st.failure(); err != nil {
		t.Fatalf("the writer did not resume: %v", err)
	}
	t.Logf("writer: %d records acknowledged, longest pause %v", st.acked.Load(), time.Duration(st.maxPause.Load()).Round(time.Millisecond))

	var want []byte
	for i := range before + int(st.acked.Load()) {
		want = append(want, record(i)...)
	}
	checkRecords := func(where string, got []byte) {
		t.Helper()
		if bytes.Equal(got, want) {
			return
		}
		for i := 0; i < len(want); i += recordSize {
			if i+recordSize > len(got) || !bytes.Equal(got[i:i+recordSize], want[i:i+recordSize]) {
				t.Errorf("%s: records has %d bytes, want %d; record %d is %q", where, len(got), len(want), i/recordSize, got[i:min(i+recordSize, len(got))])
				return
			}
		}
		t.Errorf("%s: records has %d bytes, want %d: extra %q", where, len(got), len(want), got[len(want):])
	}
	got, e := w.readAll(fd)
	if e != 0 {
		t.Fatalf("read records: %v", e)
	}
	checkRecords("through the client", got)
	for i := range files {
		name := fmt.Sprintf("f%02d", i)
		a, e := v.Top.Lookup(w.ctx(context.Background()), xl.RootGFID, name)
		if e != 0 || a.Size != uint64(len(name)) {
			t.Errorf("lookup %s after the restart: size %d, %v", name, a.Size, e)
		}
	}

	c.converge()
	for i, d := range c.dirs {
		got, err := os.ReadFile(filepath.Join(d, "records"))
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(fmt.Sprintf("brick %d", i), got)
		for j := range files {
			name := fmt.Sprintf("f%02d", j)
			if b, err := os.ReadFile(filepath.Join(d, name)); err != nil || string(b) != name {
				t.Errorf("brick %d: %s holds %q, %v", i, name, b, err)
			}
		}
	}
}
