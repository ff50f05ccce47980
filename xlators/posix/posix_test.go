package posix

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestNewRejectsBadDirs(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "missing"), Options{}); err == nil {
		t.Error("New on a missing directory succeeded")
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(f, Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("New on a file: %v", err)
	}
	other := filepath.Join(dir, "other")
	os.Mkdir(other, 0o755)
	g := xl.NewGFID()
	if err := unix.Setxattr(other, gfidXattr, g[:], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := New(other, Options{}); err == nil || !strings.Contains(err.Error(), "not the volume root") {
		t.Errorf("New on a directory labelled with another gfid: %v", err)
	}
}

func TestRootHidesMetadata(t *testing.T) {
	b := newBrick(t)
	a, e := b.Getattr(bg, xl.RootGFID)
	ok(t, e)
	if a.GFID != xl.RootGFID || !a.IsDir() || a.Nlink != 2 {
		t.Errorf("root attr %+v: want a directory with nlink 2", a)
	}
	_, e = b.Lookup(bg, xl.RootGFID, metaName)
	want(t, e, syscall.ENOENT)
	_, e = b.Mkdir(bg, xl.RootGFID, metaName, xl.NewGFID(), 0o755)
	want(t, e, syscall.EPERM)
	_, _, e = b.Create(bg, xl.RootGFID, metaName, xl.NewGFID(), uint32(os.O_RDWR), 0o644)
	want(t, e, syscall.EPERM)
	_, e = b.Symlink(bg, xl.RootGFID, metaName, xl.NewGFID(), "x")
	want(t, e, syscall.EPERM)
	want(t, b.Rmdir(bg, xl.RootGFID, metaName), syscall.ENOENT)
	want(t, b.Rename(bg, xl.RootGFID, metaName, xl.RootGFID, "x", 0), syscall.ENOENT)
	b.file(xl.RootGFID, "f", "")
	want(t, b.Rename(bg, xl.RootGFID, "f", xl.RootGFID, metaName, 0), syscall.EPERM)

	d := b.mkdir(xl.RootGFID, "sub")
	b.mkdir(d, metaName) // only the root's is reserved
	fd, e := b.Opendir(bg, xl.RootGFID)
	ok(t, e)
	defer b.Releasedir(bg, fd)
	var names []string
	for _, de := range b.readdirAll(fd, 100) {
		names = append(names, de.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"f", "sub"}) {
		t.Errorf("root lists %q, want [f sub]", names)
	}
}

func TestCreateLayout(t *testing.T) {
	b := newBrick(t)
	d := b.mkdir(xl.RootGFID, "d")
	fd, a := b.create(d, "f")
	defer b.Release(bg, fd)
	if a.GFID != fd.GFID || a.Nlink != 1 || a.Mode != syscall.S_IFREG|0o644 || a.Size != 0 {
		t.Errorf("create attr %+v", a)
	}
	la, e := b.Lookup(bg, d, "f")
	ok(t, e)
	if la.GFID != fd.GFID || la.Nlink != 1 {
		t.Errorf("lookup attr %+v, want gfid %v nlink 1", la, fd.GFID)
	}

	// The namespace is a real tree; the file's handle is a hard link of it.
	var fst, hst unix.Stat_t
	if err := unix.Lstat(filepath.Join(b.dir, "d", "f"), &fst); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(b.handlePath(fd.GFID), &hst); err != nil {
		t.Fatal(err)
	}
	if fst.Ino != hst.Ino || fst.Nlink != 2 {
		t.Errorf("handle inode %d, file inode %d nlink %d", hst.Ino, fst.Ino, fst.Nlink)
	}
	var v gfidValue
	n, err := unix.Getxattr(filepath.Join(b.dir, "d", "f"), gfidXattr, v[:])
	if g, f, err := v.parse(n, err); err != nil || g != fd.GFID || f != 0 {
		t.Errorf("gfid xattr %v flags %#x, %v", g, f, err)
	}
	// The directory's handle is a symlink recording parent and name.
	target, err := os.Readlink(b.handlePath(d))
	if err != nil || target != xl.RootGFID.String()+"/d" {
		t.Errorf("directory handle %q, %v", target, err)
	}
}

func TestCreateExisting(t *testing.T) {
	b := newBrick(t)
	g := b.file(xl.RootGFID, "f", "hello")
	_, _, e := b.Create(bg, xl.RootGFID, "f", xl.NewGFID(), uint32(os.O_RDWR|os.O_EXCL), 0o644)
	want(t, e, syscall.EEXIST)

	fd, a, e := b.Create(bg, xl.RootGFID, "f", xl.NewGFID(), uint32(os.O_RDWR), 0o600)
	ok(t, e)
	if fd.GFID != g || a.GFID != g || a.Size != 5 || a.Mode&0o777 != 0o644 {
		t.Errorf("create of an existing file: fd %v attr %+v, want its gfid %v untouched", fd.GFID, a, g)
	}
	if got := b.read(fd, 0, 10); got != "hello" {
		t.Errorf("read %q", got)
	}
	ok(t, b.Release(bg, fd))

	fd, a, e = b.Create(bg, xl.RootGFID, "f", xl.NewGFID(), uint32(os.O_RDWR|os.O_TRUNC), 0o644)
	ok(t, e)
	ok(t, b.Release(bg, fd))
	if a.Size != 0 || fd.GFID != g {
		t.Errorf("O_TRUNC create: size %d gfid %v", a.Size, fd.GFID)
	}
	b.mkdir(xl.RootGFID, "d")
	_, _, e = b.Create(bg, xl.RootGFID, "d", xl.NewGFID(), uint32(os.O_RDWR), 0o644)
	want(t, e, syscall.EISDIR)
	_, _, e = b.Create(bg, xl.RootGFID, "g", g, uint32(os.O_RDWR|os.O_EXCL), 0o644)
	want(t, e, syscall.EEXIST) // the gfid is taken
	_, _, e = b.Create(bg, xl.RootGFID, "g", g, uint32(os.O_RDWR), 0o644)
	want(t, e, syscall.EEXIST)
	fd, _, e = b.Create(bg, xl.RootGFID, "f", g, uint32(os.O_RDWR), 0o644) // a retried Create
	ok(t, e)
	ok(t, b.Release(bg, fd))
	_, _, e = b.Create(bg, xl.RootGFID, "g", xl.GFID{}, uint32(os.O_RDWR), 0o644)
	want(t, e, syscall.EINVAL)
}

func TestOwnerAndMode(t *testing.T) {
	b := newBrick(t)
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	user := asUser(1000, 1000)
	fd, a, e := b.Create(user, xl.RootGFID, "f", xl.NewGFID(), uint32(os.O_RDWR), 0o4755)
	ok(t, e)
	b.Release(bg, fd)
	if a.Uid != 1000 || a.Gid != 1000 || a.Mode != syscall.S_IFREG|0o4755 {
		t.Errorf("file attr uid %d gid %d mode %o", a.Uid, a.Gid, a.Mode)
	}
	// Root's files: the brick's umask does not apply, whether or not it
	// would cut the mode.
	for _, mode := range []uint32{0o666, 0o600, 0o2755} {
		fd, a, e := b.Create(bg, xl.RootGFID, fmt.Sprintf("r%o", mode), xl.NewGFID(), uint32(os.O_RDWR), mode)
		ok(t, e)
		b.Release(bg, fd)
		if a.Mode != syscall.S_IFREG|mode {
			t.Errorf("root's file mode %o, want %o", a.Mode&0o7777, mode)
		}
	}
	a, e = b.Mkdir(user, xl.RootGFID, "d", xl.NewGFID(), 0o777)
	ok(t, e)
	if a.Uid != 1000 || a.Gid != 1000 || a.Mode != syscall.S_IFDIR|0o777 {
		t.Errorf("dir attr uid %d gid %d mode %o", a.Uid, a.Gid, a.Mode)
	}
	a, e = b.Symlink(user, xl.RootGFID, "l", xl.NewGFID(), "f")
	ok(t, e)
	if a.Uid != 1000 || a.Gid != 1000 {
		t.Errorf("symlink owner %d:%d", a.Uid, a.Gid)
	}

	// In a setgid directory new objects take its group, and directories
	// inherit the bit.
	sg, e := b.Mkdir(bg, xl.RootGFID, "sg", xl.NewGFID(), 0o2777)
	ok(t, e)
	_, e = b.Setattr(bg, sg.GFID, xl.SetattrIn{Valid: xl.SetGid, Gid: 50})
	ok(t, e)
	fd, a, e = b.Create(user, sg.GFID, "f", xl.NewGFID(), uint32(os.O_RDWR), 0o644)
	ok(t, e)
	b.Release(bg, fd)
	if a.Uid != 1000 || a.Gid != 50 {
		t.Errorf("file in setgid dir: owner %d:%d, want 1000:50", a.Uid, a.Gid)
	}
	a, e = b.Mkdir(user, sg.GFID, "sub", xl.NewGFID(), 0o755)
	ok(t, e)
	if a.Gid != 50 || a.Mode&unix.S_ISGID == 0 {
		t.Errorf("dir in setgid dir: gid %d mode %o, want 50 and setgid", a.Gid, a.Mode)
	}
}

func TestReadWrite(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "f")
	n, e := b.Write(bg, fd, []byte("hello world"), 0)
	ok(t, e)
	if n != 11 {
		t.Fatalf("wrote %d", n)
	}
	if got := b.read(fd, 6, 100); got != "world" {
		t.Errorf("read %q, want short read at EOF", got)
	}
	if got := b.read(fd, 100, 10); got != "" {
		t.Errorf("read past EOF %q", got)
	}
	ok(t, b.Flush(bg, fd))
	ok(t, b.Fsync(bg, fd, false))
	ok(t, b.Fsync(bg, fd, true))
	ok(t, b.Release(bg, fd))

	// O_APPEND writes at the end whatever the offset.
	afd, e := b.Open(bg, fd.GFID, uint32(os.O_WRONLY|os.O_APPEND))
	ok(t, e)
	_, e = b.Write(bg, afd, []byte("!"), 0)
	ok(t, e)
	ok(t, b.Release(bg, afd))
	a, _ := b.Getattr(bg, fd.GFID)
	if a.Size != 12 {
		t.Errorf("size after append %d, want 12", a.Size)
	}
	// A read-only fd cannot write.
	rfd, e := b.Open(bg, fd.GFID, uint32(os.O_RDONLY))
	ok(t, e)
	_, e = b.Write(bg, rfd, []byte("x"), 0)
	want(t, e, syscall.EBADF)
	if got := b.read(rfd, 0, 100); got != "hello world!" {
		t.Errorf("read %q", got)
	}
	ok(t, b.Release(bg, rfd))
	// O_TRUNC on open.
	tfd, e := b.Open(bg, fd.GFID, uint32(os.O_RDWR|os.O_TRUNC))
	ok(t, e)
	ok(t, b.Release(bg, tfd))
	if a, _ := b.Getattr(bg, fd.GFID); a.Size != 0 {
		t.Errorf("size after O_TRUNC %d", a.Size)
	}
	d := b.mkdir(xl.RootGFID, "d")
	_, e = b.Open(bg, d, uint32(os.O_RDONLY))
	want(t, e, syscall.EISDIR)
	_, e = b.Open(bg, xl.RootGFID, uint32(os.O_RDONLY))
	want(t, e, syscall.EISDIR)
}

func TestHardLinks(t *testing.T) {
	b := newBrick(t)
	g := b.file(xl.RootGFID, "a", "data")
	d := b.mkdir(xl.RootGFID, "d")
	a, e := b.Link(bg, g, d, "b")
	ok(t, e)
	if a.Nlink != 2 || a.GFID != g {
		t.Errorf("link attr %+v", a)
	}
	ok(t, b.Unlink(bg, xl.RootGFID, "a"))
	la, e := b.Lookup(bg, d, "b")
	ok(t, e)
	if la.GFID != g || la.Nlink != 1 {
		t.Errorf("surviving link: %+v", la)
	}
	fd, e := b.Open(bg, g, uint32(os.O_RDONLY))
	ok(t, e)
	if got := b.read(fd, 0, 10); got != "data" {
		t.Errorf("read %q", got)
	}
	b.Release(bg, fd)
	_, e = b.Link(bg, d, xl.RootGFID, "dlink")
	want(t, e, syscall.EPERM)
	_, e = b.Link(bg, g, d, "b")
	want(t, e, syscall.EEXIST)
	_, e = b.Link(bg, xl.NewGFID(), d, "c")
	want(t, e, syscall.ESTALE)
	ok(t, b.Unlink(bg, d, "b"))
	if b.hasHandle(g) {
		t.Error("handle survives the last unlink")
	}
}

func TestUnlinkWhileOpen(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "f")
	_, e := b.Write(bg, fd, []byte("before"), 0)
	ok(t, e)
	ok(t, b.Unlink(bg, xl.RootGFID, "f"))
	_, e = b.Lookup(bg, xl.RootGFID, "f")
	want(t, e, syscall.ENOENT)
	a, e := b.Getattr(bg, fd.GFID)
	ok(t, e)
	if a.Nlink != 0 {
		t.Errorf("nlink of an unlinked open file %d, want 0", a.Nlink)
	}
	_, e = b.Write(bg, fd, []byte("after"), 6)
	ok(t, e)
	if got := b.read(fd, 0, 100); got != "beforeafter" {
		t.Errorf("read %q", got)
	}
	// A second open by gfid still works, as NFS's silly rename allows.
	fd2, e := b.Open(bg, fd.GFID, uint32(os.O_RDONLY))
	ok(t, e)
	_, e = b.Link(bg, fd.GFID, xl.RootGFID, "back")
	want(t, e, syscall.ENOENT)
	ok(t, b.Release(bg, fd))
	if !b.hasHandle(fd.GFID) {
		t.Fatal("handle gone while a handle is still open")
	}
	if got := b.read(fd2, 0, 6); got != "before" {
		t.Errorf("read %q", got)
	}
	ok(t, b.Release(bg, fd2))
	if b.hasHandle(fd.GFID) {
		t.Error("handle survives the last release")
	}
	_, e = b.Getattr(bg, fd.GFID)
	want(t, e, syscall.ESTALE)
}

func TestUnknownGFID(t *testing.T) {
	b := newBrick(t)
	g := xl.NewGFID()
	_, e := b.Getattr(bg, g)
	want(t, e, syscall.ESTALE)
	_, e = b.Lookup(bg, g, "x")
	want(t, e, syscall.ESTALE)
	_, e = b.Open(bg, g, 0)
	want(t, e, syscall.ESTALE)
	_, e = b.Opendir(bg, g)
	want(t, e, syscall.ESTALE)
	_, e = b.Read(bg, xl.Fd{GFID: g, H: 12345}, make([]byte, 1), 0)
	want(t, e, syscall.ESTALE)
	_, e = b.Getxattr(bg, g, "user.x")
	want(t, e, syscall.ESTALE)
	_, e = b.Mkdir(bg, g, "x", xl.NewGFID(), 0o755)
	want(t, e, syscall.ESTALE)
	want(t, b.Release(bg, xl.Fd{GFID: g, H: 12345}), 0)
	want(t, b.Releasedir(bg, xl.Fd{GFID: g, H: 12345}), 0)
}

func TestRmdir(t *testing.T) {
	b := newBrick(t)
	d := b.mkdir(xl.RootGFID, "d")
	b.file(d, "f", "")
	want(t, b.Rmdir(bg, xl.RootGFID, "d"), syscall.ENOTEMPTY)
	want(t, b.Unlink(bg, xl.RootGFID, "d"), syscall.EISDIR)
	want(t, b.Rmdir(bg, d, "f"), syscall.ENOTDIR)
	ok(t, b.Unlink(bg, d, "f"))
	ok(t, b.Rmdir(bg, xl.RootGFID, "d"))
	if b.hasHandle(d) {
		t.Error("directory handle survives rmdir")
	}
	_, e := b.Getattr(bg, d)
	want(t, e, syscall.ESTALE)
	// The same name again is a new directory; the old gfid stays stale
	// although its fd was cached.
	d2 := b.mkdir(xl.RootGFID, "d")
	_, e = b.Mkdir(bg, d, "x", xl.NewGFID(), 0o755)
	want(t, e, syscall.ESTALE)
	b.mkdir(d2, "x")
}

func TestRename(t *testing.T) {
	b := newBrick(t)
	d1 := b.mkdir(xl.RootGFID, "d1")
	d2 := b.mkdir(xl.RootGFID, "d2")
	sub := b.mkdir(d1, "sub")
	b.file(sub, "f", "x")

	ok(t, b.Rename(bg, d1, "sub", d2, "moved", 0))
	// Resolve through the rewritten handle in a fresh store, without the
	// cache.
	b = b.reopen()
	a, e := b.Lookup(bg, sub, "f")
	ok(t, e)
	if target, _ := os.Readlink(b.handlePath(sub)); target != d2.String()+"/moved" {
		t.Errorf("handle after rename %q", target)
	}
	if a.Size != 1 {
		t.Errorf("file in renamed dir: %+v", a)
	}

	// Exchange two directories, then resolve both afresh.
	x := b.mkdir(d1, "x")
	y := b.mkdir(d2, "y")
	ok(t, b.Rename(bg, d1, "x", d2, "y", xl.RenameExchange))
	b = b.reopen()
	b.mkdir(x, "in-x")
	b.mkdir(y, "in-y")
	if _, err := os.Stat(filepath.Join(b.dir, "d2", "y", "in-x")); err != nil {
		t.Errorf("exchanged dir x is not at d2/y: %v", err)
	}

	// NOREPLACE, bad flags.
	b.file(d1, "a", "A")
	g2 := b.file(d1, "b", "B")
	want(t, b.Rename(bg, d1, "a", d1, "b", xl.RenameNoreplace), syscall.EEXIST)
	want(t, b.Rename(bg, d1, "a", d1, "b", 7), syscall.EINVAL)
	want(t, b.Rename(bg, d1, "nope", d1, "b", 0), syscall.ENOENT)

	// Over an existing file: the victim's handle goes.
	ok(t, b.Rename(bg, d1, "a", d1, "b", 0))
	if b.hasHandle(g2) {
		t.Error("victim handle survives")
	}
	_, e = b.Getattr(bg, g2)
	want(t, e, syscall.ESTALE)

	// Over an open file: the victim lives until its release.
	g3 := b.file(d1, "c", "C")
	vfd, e := b.Open(bg, g3, uint32(os.O_RDONLY))
	ok(t, e)
	ok(t, b.Rename(bg, d1, "b", d1, "c", 0))
	if got := b.read(vfd, 0, 10); got != "C" {
		t.Errorf("victim read %q", got)
	}
	ok(t, b.Release(bg, vfd))
	if b.hasHandle(g3) {
		t.Error("open victim's handle survives its release")
	}

	// Over an empty directory: its handle goes; a non-empty one refuses.
	e1 := b.mkdir(d1, "e1")
	e2 := b.mkdir(d1, "e2")
	b.file(e2, "f", "")
	want(t, b.Rename(bg, d1, "e1", d1, "e2", 0), syscall.ENOTEMPTY)
	e3 := b.mkdir(d1, "e3")
	ok(t, b.Rename(bg, d1, "e1", d1, "e3", 0))
	if b.hasHandle(e3) {
		t.Error("replaced directory's handle survives")
	}
	b.mkdir(e1, "still-works")
	_, e = b.Getattr(bg, e3)
	want(t, e, syscall.ESTALE)
	// Into its own subtree.
	want(t, b.Rename(bg, xl.RootGFID, "d1", e1, "loop", 0), syscall.EINVAL)
	// Two links of one file: nothing happens.
	g4 := b.file(d1, "h1", "")
	_, e = b.Link(bg, g4, d1, "h2")
	ok(t, e)
	ok(t, b.Rename(bg, d1, "h1", d1, "h2", 0))
	if a, _ := b.Getattr(bg, g4); a.Nlink != 2 {
		t.Errorf("nlink %d after renaming a link onto its twin", a.Nlink)
	}
}

func TestSetattr(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "f")
	b.Release(bg, fd)
	g := fd.GFID
	before, _ := b.Getattr(bg, g)
	a, e := b.Setattr(bg, g, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600})
	ok(t, e)
	if a.Mode != syscall.S_IFREG|0o600 || a.Uid != before.Uid {
		t.Errorf("chmod: %+v", a)
	}
	a, e = b.Setattr(bg, g, xl.SetattrIn{Valid: xl.SetUid | xl.SetGid, Uid: 7, Gid: 8})
	ok(t, e)
	if a.Uid != 7 || a.Gid != 8 || a.Mode&0o777 != 0o600 {
		t.Errorf("chown: %+v", a)
	}
	a, e = b.Setattr(bg, g, xl.SetattrIn{Valid: xl.SetGid, Gid: 9})
	ok(t, e)
	if a.Uid != 7 || a.Gid != 9 {
		t.Errorf("chgrp: %+v", a)
	}
	a, e = b.Setattr(bg, g, xl.SetattrIn{Valid: xl.SetSize, Size: 1 << 20})
	ok(t, e)
	if a.Size != 1<<20 {
		t.Errorf("truncate: %+v", a)
	}
	at := xl.Timespec{Sec: 1000, Nsec: 123456789}
	mt := xl.Timespec{Sec: 2000, Nsec: 987654321}
	a, e = b.Setattr(bg, g, xl.SetattrIn{Valid: xl.SetAtime | xl.SetMtime, Atime: at, Mtime: mt})
	ok(t, e)
	if a.Atime != at || a.Mtime != mt {
		t.Errorf("utimes: atime %v mtime %v", a.Atime, a.Mtime)
	}
	a, e = b.Setattr(bg, g, xl.SetattrIn{Valid: xl.SetMtimeNow})
	ok(t, e)
	if a.Atime != at || a.Mtime.Sec < 1e9 {
		t.Errorf("mtime=now: atime %v (want untouched) mtime %v", a.Atime, a.Mtime)
	}
	a, e = b.Truncate(bg, g, 3)
	ok(t, e)
	if a.Size != 3 {
		t.Errorf("Truncate: size %d", a.Size)
	}
	d := b.mkdir(xl.RootGFID, "d")
	a, e = b.Setattr(bg, d, xl.SetattrIn{Valid: xl.SetMode | xl.SetUid | xl.SetAtime, Mode: 0o711, Uid: 5, Atime: at})
	ok(t, e)
	if a.Mode != syscall.S_IFDIR|0o711 || a.Uid != 5 || a.Atime != at {
		t.Errorf("dir setattr: %+v", a)
	}
	_, e = b.Truncate(bg, d, 0)
	want(t, e, syscall.EISDIR)
	a, e = b.Setattr(bg, xl.RootGFID, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o755})
	ok(t, e)
	if a.Mode != syscall.S_IFDIR|0o755 {
		t.Errorf("root chmod: %o", a.Mode)
	}
}

func TestAccess(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "f")
	b.Release(bg, fd)
	_, e := b.Setattr(bg, fd.GFID, xl.SetattrIn{Valid: xl.SetMode | xl.SetUid | xl.SetGid, Mode: 0o640, Uid: 10, Gid: 20})
	ok(t, e)
	g := fd.GFID
	cases := []struct {
		who  string
		uid  uint32
		gids []uint32
		mask uint32
		want syscall.Errno
	}{
		{"root reads", 0, []uint32{0}, unix.R_OK | unix.W_OK, 0},
		{"root cannot exec without x bits", 0, []uint32{0}, unix.X_OK, syscall.EACCES},
		{"owner writes", 10, []uint32{99}, unix.R_OK | unix.W_OK, 0},
		{"owner cannot exec", 10, []uint32{99}, unix.X_OK, syscall.EACCES},
		{"group reads", 11, []uint32{20}, unix.R_OK, 0},
		{"supplementary group reads", 11, []uint32{1, 20}, unix.R_OK, 0},
		{"group cannot write", 11, []uint32{20}, unix.W_OK, syscall.EACCES},
		{"other cannot read", 12, []uint32{30}, unix.R_OK, syscall.EACCES},
		{"anyone: existence", 12, []uint32{30}, unix.F_OK, 0},
	}
	for _, c := range cases {
		ctx := asUser(c.uid, c.gids[0], c.gids[1:]...)
		if e := b.Access(ctx, g, c.mask); e != c.want {
			t.Errorf("%s: %v, want %v", c.who, e, c.want)
		}
	}
	ok(t, b.Access(bg, xl.RootGFID, unix.X_OK))
}

func TestSpecialFiles(t *testing.T) {
	b := newBrick(t)
	a, e := b.Mknod(bg, xl.RootGFID, "fifo", xl.NewGFID(), syscall.S_IFIFO|0o640, 0)
	ok(t, e)
	if a.Mode != syscall.S_IFIFO|0o640 || a.Nlink != 1 {
		t.Errorf("fifo %+v", a)
	}
	_, e = b.Open(bg, a.GFID, uint32(os.O_RDONLY)) // would block, or worse for a device
	want(t, e, syscall.EPERM)
	rdev := unix.Mkdev(1, 3)
	a, e = b.Mknod(bg, xl.RootGFID, "null", xl.NewGFID(), syscall.S_IFCHR|0o666, rdev)
	ok(t, e)
	if a.Rdev != rdev || a.Mode != syscall.S_IFCHR|0o666 {
		t.Errorf("char device %+v", a)
	}
	a, e = b.Mknod(bg, xl.RootGFID, "sock", xl.NewGFID(), syscall.S_IFSOCK|0o600, 0)
	ok(t, e)
	la, e := b.Lookup(bg, xl.RootGFID, "sock")
	ok(t, e)
	if la.GFID != a.GFID || la.Mode != syscall.S_IFSOCK|0o600 {
		t.Errorf("socket lookup %+v", la)
	}
	_, e = b.Mknod(bg, xl.RootGFID, "dir", xl.NewGFID(), syscall.S_IFDIR|0o755, 0)
	want(t, e, syscall.EINVAL)

	a, e = b.Symlink(bg, xl.RootGFID, "ln", xl.NewGFID(), "../../somewhere")
	ok(t, e)
	if a.Mode&syscall.S_IFMT != syscall.S_IFLNK || a.Nlink != 1 || a.Size != 15 {
		t.Errorf("symlink %+v", a)
	}
	target, e := b.Readlink(bg, a.GFID)
	ok(t, e)
	if target != "../../somewhere" {
		t.Errorf("readlink %q", target)
	}
	// Getattr by gfid must not mistake the symlink's handle for a directory's.
	ga, e := b.Getattr(bg, a.GFID)
	ok(t, e)
	if ga.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Errorf("getattr of symlink: mode %o", ga.Mode)
	}
	// Even a target that looks like a directory handle.
	fake := xl.RootGFID.String() + "/ln"
	a, e = b.Symlink(bg, xl.RootGFID, "tricky", xl.NewGFID(), fake)
	ok(t, e)
	if target, _ := b.Readlink(bg, a.GFID); target != fake {
		t.Errorf("readlink %q", target)
	}
	_, e = b.Readlink(bg, xl.RootGFID)
	want(t, e, syscall.EINVAL)
	_, e = b.Symlink(bg, xl.RootGFID, "empty", xl.NewGFID(), "")
	want(t, e, syscall.ENOENT)
	ok(t, b.Unlink(bg, xl.RootGFID, "ln"))
	if b.hasHandle(ga.GFID) {
		t.Error("symlink handle survives unlink")
	}
}

func TestXattrs(t *testing.T) {
	// ext4 without ea_inode keeps all of an inode's xattrs in one block.
	testXattrs(t, newBrick(t), 2<<10)
}

// 64 KiB values work on any brick filesystem: ext4 without ea_inode
// refuses them, and the store spills them.
func TestXattrs64KiB(t *testing.T) {
	b := newBrick(t)
	testXattrs(t, b, 64<<10)
	want(t, b.Setxattr(bg, xl.RootGFID, "user.huge", make([]byte, 64<<10+1), 0), syscall.E2BIG)
}

func testXattrs(t *testing.T, b *brick, size int) {
	g := b.file(xl.RootGFID, "f", "")
	d := b.mkdir(xl.RootGFID, "d")
	big := make([]byte, size)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, ino := range []xl.GFID{g, d, xl.RootGFID} {
		ok(t, b.Setxattr(bg, ino, "user.big", big, 0))
		ok(t, b.Setxattr(bg, ino, "trusted.other", []byte("t"), 0))
		ok(t, b.Setxattr(bg, ino, "user.empty", nil, 0))
		got, e := b.Getxattr(bg, ino, "user.big")
		ok(t, e)
		if !slices.Equal(got, big) {
			t.Errorf("%v: %d-byte xattr came back as %d bytes", ino, size, len(got))
		}
		if got, e := b.Getxattr(bg, ino, "user.empty"); e != 0 || len(got) != 0 {
			t.Errorf("empty xattr: %q %v", got, e)
		}
		want(t, b.Setxattr(bg, ino, "user.big", []byte("x"), unix.XATTR_CREATE), syscall.EEXIST)
		want(t, b.Setxattr(bg, ino, "user.nope", []byte("x"), unix.XATTR_REPLACE), syscall.ENODATA)
		names, e := b.Listxattr(bg, ino)
		ok(t, e)
		slices.Sort(names)
		if !slices.Equal(names, []string{"trusted.other", "user.big", "user.empty"}) {
			t.Errorf("%v: listxattr %q", ino, names)
		}
		// The internal gfid xattr is invisible and untouchable.
		_, e = b.Getxattr(bg, ino, gfidXattr)
		want(t, e, syscall.ENODATA)
		want(t, b.Setxattr(bg, ino, gfidXattr, make([]byte, 16), 0), syscall.EPERM)
		want(t, b.Setxattr(bg, ino, "trusted.gluon.new", []byte("x"), 0), syscall.EPERM)
		want(t, b.Removexattr(bg, ino, gfidXattr), syscall.EPERM)
		ok(t, b.Removexattr(bg, ino, "user.big"))
		_, e = b.Getxattr(bg, ino, "user.big")
		want(t, e, syscall.ENODATA)
	}
	if a, _ := b.Getattr(bg, d); a.GFID != d {
		t.Error("directory lost its gfid")
	}
	// Linux allows no user.* xattrs on symlinks; trusted.* works.
	ln, e := b.Symlink(bg, xl.RootGFID, "ln", xl.NewGFID(), "f")
	ok(t, e)
	want(t, b.Setxattr(bg, ln.GFID, "user.x", []byte("x"), 0), syscall.EPERM)
	ok(t, b.Setxattr(bg, ln.GFID, "trusted.x", []byte("x"), 0))
	if _, e := b.Getxattr(bg, g, "trusted.x"); e != syscall.ENODATA {
		t.Errorf("setxattr on a symlink reached its target: %v", e)
	}
}

func TestStatfsIpc(t *testing.T) {
	b := newBrick(t)
	st, e := b.Statfs(bg, xl.RootGFID)
	ok(t, e)
	if st.Blocks == 0 || st.Bsize == 0 || st.NameLen != 255 {
		t.Errorf("statfs %+v", st)
	}
	_, e = b.Statfs(bg, xl.NewGFID())
	want(t, e, syscall.ESTALE)
	_, e = b.Ipc(bg, "anything", nil)
	want(t, e, syscall.ENOTSUP)
}

func TestSparseAndSeek(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "sparse")
	defer b.Release(bg, fd)
	const off = 5 << 30
	_, e := b.Write(bg, fd, []byte("tail"), off)
	ok(t, e)
	a, _ := b.Getattr(bg, fd.GFID)
	if a.Size != off+4 || a.Blocks > 64 {
		t.Errorf("sparse file: size %d blocks %d", a.Size, a.Blocks)
	}
	data, e := b.Lseek(bg, fd, 0, unix.SEEK_DATA)
	ok(t, e)
	if data > off || data < off-(1<<20) {
		t.Errorf("SEEK_DATA from 0 = %d, want near %d", data, off)
	}
	hole, e := b.Lseek(bg, fd, 0, unix.SEEK_HOLE)
	ok(t, e)
	if hole != 0 {
		t.Errorf("SEEK_HOLE from 0 = %d", hole)
	}
	_, e = b.Lseek(bg, fd, off+4, unix.SEEK_DATA)
	want(t, e, syscall.ENXIO)
	if got := b.read(fd, off-2, 10); got != "\x00\x00tail" {
		t.Errorf("read across the hole %q", got)
	}
}

func TestPunchHole(t *testing.T) {
	b := newBrick(t)
	fd, _ := b.create(xl.RootGFID, "f")
	defer b.Release(bg, fd)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 'x'
	}
	_, e := b.Write(bg, fd, buf, 0)
	ok(t, e)
	ok(t, b.Fsync(bg, fd, false))
	before, _ := b.Getattr(bg, fd.GFID)
	ok(t, b.Fallocate(bg, fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 256<<10, 256<<10))
	after, _ := b.Getattr(bg, fd.GFID)
	if after.Size != 1<<20 || after.Blocks >= before.Blocks {
		t.Errorf("punch: size %d blocks %d -> %d", after.Size, before.Blocks, after.Blocks)
	}
	if got := b.read(fd, 256<<10, 4); got != "\x00\x00\x00\x00" {
		t.Errorf("punched range reads %q", got)
	}
	hole, e := b.Lseek(bg, fd, 0, unix.SEEK_HOLE)
	ok(t, e)
	if hole != 256<<10 {
		t.Errorf("SEEK_HOLE %d, want %d", hole, 256<<10)
	}
	// Preallocation extends the size without KEEP_SIZE.
	ok(t, b.Fallocate(bg, fd, 0, 1<<20, 4096))
	if a, _ := b.Getattr(bg, fd.GFID); a.Size != 1<<20+4096 {
		t.Errorf("fallocate size %d", a.Size)
	}
}

func TestAnonymousFdAfterRestart(t *testing.T) {
	b := newBrick(t)
	d := b.mkdir(xl.RootGFID, "d")
	fd, _ := b.create(d, "f")
	_, e := b.Write(bg, fd, []byte("hello"), 0)
	ok(t, e)
	afd, e := b.Open(bg, fd.GFID, uint32(os.O_WRONLY|os.O_APPEND))
	ok(t, e)
	dfd, e := b.Opendir(bg, d)
	ok(t, e)

	b = b.reopen()
	if got := b.read(fd, 0, 10); got != "hello" {
		t.Errorf("anonymous read %q", got)
	}
	_, e = b.Write(bg, fd, []byte("J"), 0)
	ok(t, e)
	_, e = b.Write(bg, afd, []byte("!"), 0) // O_APPEND kept
	ok(t, e)
	if got := b.read(fd, 0, 10); got != "Jello!" {
		t.Errorf("after anonymous writes %q", got)
	}
	ok(t, b.Fsync(bg, fd, true))
	ok(t, b.Flush(bg, fd))
	pos, e := b.Lseek(bg, fd, 0, unix.SEEK_HOLE)
	ok(t, e)
	if pos != 6 {
		t.Errorf("SEEK_HOLE %d", pos)
	}
	ents := b.readdirAll(dfd, 10)
	if len(ents) != 1 || ents[0].Name != "f" || ents[0].Attr.GFID != fd.GFID {
		t.Errorf("anonymous readdir %+v", ents)
	}
	ok(t, b.Release(bg, fd))
	ok(t, b.Releasedir(bg, dfd))
	// An H from before the restart never reaches another file.
	fd2, _ := b.create(d, "g")
	defer b.Release(bg, fd2)
	stale := xl.Fd{GFID: fd.GFID, H: fd2.H}
	if got := b.read(stale, 0, 10); got != "Jello!" {
		t.Errorf("read through a reused H %q", got)
	}
}

func TestGCOrphanedHandles(t *testing.T) {
	b := newBrick(t)
	keep := b.file(xl.RootGFID, "keep", "k")
	d := b.mkdir(xl.RootGFID, "d")
	lost := b.file(xl.RootGFID, "lost", "l")
	ln, e := b.Symlink(bg, xl.RootGFID, "ln", xl.NewGFID(), "x")
	ok(t, e)
	// A crash while open, or behind the store's back: the names go, the
	// handles stay.
	os.Remove(filepath.Join(b.dir, "lost"))
	os.Remove(filepath.Join(b.dir, "ln"))
	tmp := b.handlePath(d) + ".tmp"
	if err := os.Symlink("leftover", tmp); err != nil {
		t.Fatal(err)
	}
	b = b.reopen()
	for _, g := range []xl.GFID{lost, ln.GFID} {
		if b.hasHandle(g) {
			t.Errorf("orphaned handle %v survives", g)
		}
	}
	if _, err := os.Lstat(tmp); err == nil {
		t.Error("temporary handle survives")
	}
	if !b.hasHandle(keep) || !b.hasHandle(d) {
		t.Fatal("live handles collected")
	}
	b.mkdir(d, "x")
	_, e = b.Getattr(bg, keep)
	ok(t, e)
	b.wantLogged("removed orphaned handles")
}

func TestAdoptsUnlabelledObjects(t *testing.T) {
	b := newBrick(t)
	if err := os.Mkdir(filepath.Join(b.dir, "admin-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "admin-dir", "file"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	da, e := b.Lookup(bg, xl.RootGFID, "admin-dir")
	ok(t, e)
	if da.GFID.IsZero() || !da.IsDir() {
		t.Fatalf("adopted dir %+v", da)
	}
	fa, e := b.Lookup(bg, da.GFID, "file")
	ok(t, e)
	if fa.Nlink != 1 || fa.Size != 2 {
		t.Errorf("adopted file %+v", fa)
	}
	again, _ := b.Lookup(bg, da.GFID, "file")
	if again.GFID != fa.GFID {
		t.Error("gfid changed between lookups")
	}
	b.wantLogged("adopted")
	b = b.reopen()
	ga, e := b.Getattr(bg, fa.GFID)
	ok(t, e)
	if ga.Size != 2 {
		t.Errorf("getattr of adopted file %+v", ga)
	}
	b.mkdir(da.GFID, "sub")
}

func TestDirCacheBounded(t *testing.T) {
	b := newBrick(t)
	b.dirs.max = 8
	var dirs []xl.GFID
	for i := range 20 {
		dirs = append(dirs, b.mkdir(xl.RootGFID, "d"+strconv.Itoa(i)))
	}
	for range 2 {
		for _, d := range dirs {
			_, e := b.Getattr(bg, d)
			ok(t, e)
		}
	}
	b.dirs.mu.Lock()
	n := len(b.dirs.m)
	b.dirs.mu.Unlock()
	if n > 8 {
		t.Errorf("dir cache holds %d, max 8", n)
	}
}

// Kernels before 6.13 lack getxattrat(2): entries' gfids are then read
// through /proc.
func TestWithoutGetxattrat(t *testing.T) {
	b := newBrick(t)
	b.xattrAt = false
	d := b.mkdir(xl.RootGFID, "d")
	g := b.file(d, "f", "x")
	ln, e := b.Symlink(bg, d, "ln", xl.NewGFID(), "f")
	ok(t, e)
	for name, w := range map[string]xl.GFID{"f": g, "ln": ln.GFID} {
		a, e := b.Lookup(bg, d, name)
		ok(t, e)
		if a.GFID != w {
			t.Errorf("lookup %s: gfid %v, want %v", name, a.GFID, w)
		}
	}
	fd, e := b.Opendir(bg, d)
	ok(t, e)
	defer b.Releasedir(bg, fd)
	if ents := b.readdirAll(fd, 10); len(ents) != 2 {
		t.Errorf("readdir %+v", ents)
	}
}
