package posix

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// anon is an fd the store never handed out, as a follower applies a
// replicated write with: the store opens the file by gfid (and may keep
// that open for the next such op).
func anon(g xl.GFID) xl.Fd {
	return xl.Fd{GFID: g, H: 1 << 62, Flags: uint32(os.O_RDWR)}
}

func TestAnonymousWritesReachTheFileUntilItGoes(t *testing.T) {
	b := newBrick(t)
	g := b.file(xl.RootGFID, "f", "")
	for i, s := range []string{"ab", "cd", "ef"} {
		_, e := b.Write(bg, anon(g), []byte(s), int64(2*i))
		ok(t, e)
	}
	if got := b.read(anon(g), 0, 10); got != "abcdef" {
		t.Errorf("read %q after anonymous writes", got)
	}
	_, e := b.Link(bg, g, xl.RootGFID, "f2")
	ok(t, e)
	ok(t, b.Unlink(bg, xl.RootGFID, "f"))
	_, e = b.Write(bg, anon(g), []byte("X"), 0) // f2 is left
	ok(t, e)
	ok(t, b.Unlink(bg, xl.RootGFID, "f2"))
	_, e = b.Write(bg, anon(g), []byte("Y"), 0)
	want(t, e, syscall.ESTALE)
	_, e = b.Read(bg, anon(g), make([]byte, 1), 0)
	want(t, e, syscall.ESTALE)
}

func TestAnonymousWritesToAFileUnlinkedWhileOpen(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "f")
	_, e := b.Write(bg, anon(fd.GFID), []byte("a"), 0)
	ok(t, e)
	ok(t, b.Unlink(bg, xl.RootGFID, "f"))
	_, e = b.Write(bg, anon(fd.GFID), []byte("b"), 1) // open: still there
	ok(t, e)
	if got := b.read(fd, 0, 10); got != "ab" {
		t.Errorf("read %q through the open fd", got)
	}
	ok(t, b.Release(bg, fd))
	_, e = b.Write(bg, anon(fd.GFID), []byte("c"), 2)
	want(t, e, syscall.ESTALE)
}

func TestAnonymousWritesToAFileRenamedOver(t *testing.T) {
	b := newBrick(t)
	old := b.file(xl.RootGFID, "f", "old")
	b.file(xl.RootGFID, "g", "new")
	if got := b.read(anon(old), 0, 10); got != "old" {
		t.Errorf("read %q", got)
	}
	ok(t, b.Rename(bg, xl.RootGFID, "g", xl.RootGFID, "f", 0))
	_, e := b.Write(bg, anon(old), []byte("X"), 0)
	want(t, e, syscall.ESTALE)
}

func TestAnonymousFdsStayBounded(t *testing.T) {
	b := newBrick(t)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	const n = 3 * maxAnon
	gs := make([]xl.GFID, n)
	for i := range gs {
		gs[i] = b.file(xl.RootGFID, fmt.Sprint("f", i), "")
	}
	for i, g := range gs {
		_, e := b.Write(bg, anon(g), []byte(fmt.Sprint(i)), 0)
		ok(t, e)
	}
	if d := fds() - before; d > maxAnon+8 {
		t.Errorf("%d more fds open after anonymous writes to %d files; at most %d are kept", d, n, maxAnon)
	}
	for i, g := range gs {
		if got := b.read(anon(g), 0, 10); got != fmt.Sprint(i) {
			t.Errorf("file %d holds %q", i, got)
		}
	}
	ok(t, errno(b.Close()))
	if d := fds() - before; d > 0 {
		t.Errorf("%d more fds open after Close", d)
	}
}

// An anonymous fd may name a directory for Fsync (a replica set syncing
// what a request changed): the directory is fsynced, root included, and
// one that is gone is stale.
func TestAnonymousFsyncOfADirectory(t *testing.T) {
	b := newBrick(t)
	a, e := b.Mkdir(bg, xl.RootGFID, "d", xl.NewGFID(), 0o755)
	ok(t, e)
	for _, g := range []xl.GFID{a.GFID, xl.RootGFID} {
		ok(t, b.Fsync(bg, xl.Fd{GFID: g, Flags: uint32(os.O_RDONLY)}, false))
		ok(t, b.Fsync(bg, xl.Fd{GFID: g, Flags: uint32(os.O_RDONLY)}, true))
	}
	ok(t, b.Rmdir(bg, xl.RootGFID, "d"))
	want(t, b.Fsync(bg, xl.Fd{GFID: a.GFID, Flags: uint32(os.O_RDONLY)}, false), syscall.ESTALE)
}
