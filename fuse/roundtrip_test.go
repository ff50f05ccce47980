package fuse

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Round trips the mount spares the bricks.

// capsCounter counts the security.capability probes that reach the
// translators.
type capsCounter struct {
	xl.Base
	n atomic.Int32
}

func (c *capsCounter) Getxattr(ctx context.Context, ino xl.GFID, name string) ([]byte, syscall.Errno) {
	if name == capsXattr {
		c.n.Add(1)
	}
	return c.Base.Getxattr(ctx, ino, name)
}

// The kernel reads a file's capabilities before its first write. For a
// file this mount just made, or one a brick said has none, the mount
// answers without a round trip, for as long as it trusts attributes; a
// setxattr of them through the mount is seen at once.
func TestCapsProbe(t *testing.T) {
	c := &capsCounter{Base: xl.Base{Xlator: newLeaf(t)}}
	dir, _ := mount(t, c)
	fn := filepath.Join(dir, "f")
	f, err := os.OpenFile(fn, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := c.n.Load(); n != 0 {
		t.Errorf("%d capability probes reached the translators for a new file", n)
	}

	// An existing file: one probe, then the answer is kept.
	other := filepath.Join(dir, "g")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := c.n.Load()
	for range 2 {
		if _, err := unix.Getxattr(other, capsXattr, make([]byte, 64)); err != unix.ENODATA {
			t.Fatalf("getxattr: %v, want ENODATA", err)
		}
	}
	if n := c.n.Load() - before; n != 1 {
		t.Errorf("%d probes for two getxattrs, want 1", n)
	}

	caps := make([]byte, 20)
	binary.LittleEndian.PutUint32(caps[0:], 0x02000001)
	binary.LittleEndian.PutUint32(caps[4:], 1<<unix.CAP_NET_BIND_SERVICE)
	for _, p := range []string{fn, other} {
		if err := unix.Setxattr(p, capsXattr, caps, 0); err != nil {
			t.Fatal(err)
		}
		if n, err := unix.Getxattr(p, capsXattr, make([]byte, 64)); err != nil || n != len(caps) {
			t.Errorf("%s: capabilities after setxattr: %d bytes, %v", filepath.Base(p), n, err)
		}
	}
}

// flushCounter counts the Flush calls that reach the translators.
type flushCounter struct {
	xl.Base
	n atomic.Int32
}

func (c *flushCounter) Flush(ctx context.Context, fd xl.Fd) syscall.Errno {
	c.n.Add(1)
	return c.Base.Flush(ctx, fd)
}

// Closing a descriptor that was opened read-only costs no Flush: it has
// nothing to report. One opened for writing is flushed on every close.
func TestReadOnlyCloseSkipsFlush(t *testing.T) {
	c := &flushCounter{Base: xl.Base{Xlator: newLeaf(t)}}
	dir, _ := mount(t, c)
	fn := filepath.Join(dir, "f")
	if err := os.WriteFile(fn, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := c.n.Load(); n != 1 {
		t.Errorf("%d flushes for a write-only open and close, want 1", n)
	}
	for _, flags := range []int{os.O_RDONLY, os.O_RDWR} {
		before := c.n.Load()
		f, err := os.OpenFile(fn, flags, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Read(make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if n := c.n.Load() - before; n != 0 {
			t.Errorf("open flags %#x, read only: %d flushes on close, want 0", flags, n)
		}
	}
}

// A descriptor that wrote nothing has nothing to flush, whatever its open
// flags: creating an empty file costs no Flush. One that wrote, extended
// or truncated is flushed on close.
func TestCloseWithoutWriteSkipsFlush(t *testing.T) {
	c := &flushCounter{Base: xl.Base{Xlator: newLeaf(t)}}
	dir, _ := mount(t, c)
	empty := filepath.Join(dir, "empty")
	f, err := os.OpenFile(empty, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := c.n.Load(); n != 0 {
		t.Errorf("%d flushes for creating an empty file, want 0", n)
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("empty file after close: %v, %v", fi, err)
	}

	for _, tc := range []struct {
		name string
		do   func(*os.File) error
	}{
		{"write", func(f *os.File) error { _, err := f.Write([]byte("data")); return err }},
		{"fallocate", func(f *os.File) error { return unix.Fallocate(int(f.Fd()), 0, 0, 4096) }},
		{"ftruncate", func(f *os.File) error { return f.Truncate(1) }},
	} {
		before := c.n.Load()
		f, err := os.OpenFile(filepath.Join(dir, tc.name), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.do(f); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if n := c.n.Load() - before; n != 1 {
			t.Errorf("%s then close: %d flushes, want 1", tc.name, n)
		}
	}
}
