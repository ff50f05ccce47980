package memfs_test

import (
	"context"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/conformance"
	"github.com/gluon-fs/gluon/xlators/access"
	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/xl"
)

var bg = context.Background()

// TestConformance runs the POSIX suite against memfs behind the
// access-control translator, as the posix store is run.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.FS {
		x, err := access.New(memfs.New(memfs.Options{}), access.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return conformance.XlFS(x)
	}, conformance.LargeXattrs)
}

func ok(t *testing.T, e syscall.Errno) {
	t.Helper()
	if e != 0 {
		t.Fatal(e)
	}
}

func want(t *testing.T, got, want syscall.Errno, what string) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %v, want %v", what, got, want)
	}
}

func create(t *testing.T, fs *memfs.FS, parent xl.GFID, name string) (xl.Fd, xl.GFID) {
	t.Helper()
	g := xl.NewGFID()
	fd, _, e := fs.Create(bg, parent, name, g, syscall.O_RDWR, 0o644)
	ok(t, e)
	return fd, g
}

// An object unlinked while open stays reachable by its GFID until its
// last release, then is gone.
func TestUnlinkedOpenFileLivesUntilRelease(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	fd, g := create(t, fs, xl.RootGFID, "f")
	_, e := fs.Write(bg, fd, []byte("data"), 0)
	ok(t, e)
	ok(t, fs.Unlink(bg, xl.RootGFID, "f"))
	a, e := fs.Getattr(bg, g)
	if e != 0 || a.Nlink != 0 || a.Size != 4 {
		t.Fatalf("getattr of the unlinked open file: %+v, %v", a, e)
	}
	_, e = fs.Link(bg, g, xl.RootGFID, "back")
	want(t, e, syscall.ENOENT, "link of an unlinked file")
	ok(t, fs.Release(bg, fd))
	_, e = fs.Getattr(bg, g)
	want(t, e, syscall.ESTALE, "getattr after the last release")
	want(t, fs.Release(bg, fd), 0, "a second release")
}

// A handle memfs did not give out is served by GFID with the fd's own
// flags, as the posix store serves one from before a restart.
func TestAnonymousFd(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	fd, g := create(t, fs, xl.RootGFID, "f")
	ok(t, fs.Release(bg, fd))
	anon := xl.Fd{GFID: g, H: 1 << 40, Flags: syscall.O_WRONLY}
	_, e := fs.Write(bg, anon, []byte("hi"), 0)
	ok(t, e)
	_, e = fs.Read(bg, anon, make([]byte, 2), 0)
	want(t, e, syscall.EBADF, "read through a write-only anonymous fd")
	anon.Flags = syscall.O_RDONLY
	buf := make([]byte, 8)
	if n, e := fs.Read(bg, anon, buf, 0); e != 0 || string(buf[:n]) != "hi" {
		t.Errorf("anonymous read: %q, %v", buf[:n], e)
	}
	_, e = fs.Read(bg, xl.Fd{GFID: xl.NewGFID(), H: 1 << 40}, buf, 0)
	want(t, e, syscall.ESTALE, "read of an unknown gfid")
}

// Cookies belong to entries, so a listing that pages through a directory
// while entries come and go sees every entry that stayed exactly once.
func TestReaddirCookiesAreStable(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		fd, _ := create(t, fs, xl.RootGFID, n)
		ok(t, fs.Release(bg, fd))
	}
	dfd, e := fs.Opendir(bg, xl.RootGFID)
	ok(t, e)
	defer fs.Releasedir(bg, dfd)
	first, e := fs.Readdir(bg, dfd, 0, 2)
	ok(t, e)
	ok(t, fs.Unlink(bg, xl.RootGFID, "a"))
	ok(t, fs.Unlink(bg, xl.RootGFID, "c"))
	fd, _ := create(t, fs, xl.RootGFID, "f")
	ok(t, fs.Release(bg, fd))
	rest, e := fs.Readdir(bg, dfd, first[len(first)-1].Off, 100)
	ok(t, e)
	var got []string
	for _, d := range append(first, rest...) {
		got = append(got, d.Name)
	}
	if w := []string{"a", "b", "d", "e", "f"}; !slices.Equal(got, w) {
		t.Errorf("listing %q, want %q", got, w)
	}
	_, e = fs.Readdir(bg, dfd, 0, 0)
	want(t, e, syscall.EINVAL, "readdir of 0 entries")
}

// A directory removed while open reads as removed.
func TestReaddirOfRemovedDir(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	g := xl.NewGFID()
	_, e := fs.Mkdir(bg, xl.RootGFID, "d", g, 0o755)
	ok(t, e)
	dfd, e := fs.Opendir(bg, g)
	ok(t, e)
	ok(t, fs.Rmdir(bg, xl.RootGFID, "d"))
	_, e = fs.Readdir(bg, dfd, 0, 10)
	want(t, e, syscall.ENOENT, "readdir of a removed directory")
	_, e = fs.Mkdir(bg, g, "sub", xl.NewGFID(), 0o755)
	want(t, e, syscall.ENOENT, "mkdir in a removed directory")
	ok(t, fs.Releasedir(bg, dfd))
	_, e = fs.Getattr(bg, g)
	want(t, e, syscall.ESTALE, "getattr after the last releasedir")
}

// New objects belong to the caller, except that a setgid directory gives
// its group, and its S_ISGID to subdirectories.
func TestNewObjectOwner(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	ctx := xl.WithCall(bg, &xl.Call{Uid: 1000, Gid: 1000})
	sg := xl.NewGFID()
	_, e := fs.Mkdir(bg, xl.RootGFID, "sg", sg, 0o777)
	ok(t, e)
	_, e = fs.Setattr(bg, sg, xl.SetattrIn{Valid: xl.SetGid | xl.SetMode, Gid: 100, Mode: syscall.S_ISGID | 0o777})
	ok(t, e)
	for _, c := range []struct {
		parent   xl.GFID
		mkdir    bool
		gid      uint32
		setgidOn bool
	}{
		{xl.RootGFID, false, 1000, false},
		{xl.RootGFID, true, 1000, false},
		{sg, false, 100, false},
		{sg, true, 100, true},
	} {
		var a xl.Attr
		if c.mkdir {
			a, e = fs.Mkdir(ctx, c.parent, "x", xl.NewGFID(), 0o755)
		} else {
			a, e = fs.Mknod(ctx, c.parent, "y", xl.NewGFID(), syscall.S_IFIFO|0o644, 0)
		}
		ok(t, e)
		if a.Uid != 1000 || a.Gid != c.gid || (a.Mode&syscall.S_ISGID != 0) != c.setgidOn {
			t.Errorf("in %v, mkdir %v: owner %d:%d mode %#o; want 1000:%d, setgid %v",
				c.parent, c.mkdir, a.Uid, a.Gid, a.Mode, c.gid, c.setgidOn)
		}
	}
}

// Validation that the posix store does too.
func TestBadInput(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	fd, g := create(t, fs, xl.RootGFID, "f")
	for _, c := range []struct {
		what string
		got  syscall.Errno
		want syscall.Errno
	}{
		{"mkdir with a zero gfid", second(fs.Mkdir(bg, xl.RootGFID, "d", xl.GFID{}, 0o755)), syscall.EINVAL},
		{"mkdir with the root gfid", second(fs.Mkdir(bg, xl.RootGFID, "d", xl.RootGFID, 0o755)), syscall.EINVAL},
		{"mkdir reusing a gfid", second(fs.Mkdir(bg, xl.RootGFID, "d", g, 0o755)), syscall.EEXIST},
		{"mknod of a directory", second(fs.Mknod(bg, xl.RootGFID, "d", xl.NewGFID(), syscall.S_IFDIR|0o755, 0)), syscall.EINVAL},
		{"lookup ..", second(fs.Lookup(bg, xl.RootGFID, "..")), syscall.EINVAL},
		{"lookup a/b", second(fs.Lookup(bg, xl.RootGFID, "a/b")), syscall.EINVAL},
		{"symlink to nothing", second(fs.Symlink(bg, xl.RootGFID, "l", xl.NewGFID(), "")), syscall.ENOENT},
		{"open of the root", second(fs.Open(bg, xl.RootGFID, syscall.O_RDONLY)), syscall.EISDIR},
		{"write at -1", second(fs.Write(bg, fd, []byte("x"), -1)), syscall.EINVAL},
		{"read at -1", second(fs.Read(bg, fd, make([]byte, 1), -1)), syscall.EINVAL},
		{"truncate beyond int64", second(fs.Truncate(bg, g, 1<<63)), syscall.EFBIG},
		{"fallocate of 0 bytes", fs.Fallocate(bg, fd, 0, 0, 0), syscall.EINVAL},
		{"punch hole without keep size", fs.Fallocate(bg, fd, 2, 0, 1), syscall.EOPNOTSUPP},
		{"lseek SEEK_SET", second(fs.Lseek(bg, fd, 0, 0)), syscall.EINVAL},
		{"access mask 8", fs.Access(bg, g, 8), syscall.EINVAL},
		{"setxattr of an empty name", fs.Setxattr(bg, g, "", nil, 0), syscall.ERANGE},
		{"setxattr with flags 4", fs.Setxattr(bg, g, "user.x", nil, 4), syscall.EINVAL},
		{"rename with both flags", fs.Rename(bg, xl.RootGFID, "f", xl.RootGFID, "g", 3), syscall.EINVAL},
		{"ipc", second(fs.Ipc(bg, "memfs.anything", nil)), syscall.ENOTSUP},
	} {
		want(t, c.got, c.want, c.what)
	}
}

func second[T any](_ T, e syscall.Errno) syscall.Errno { return e }

// Allocation beyond the 1 GiB capacity is refused, whole, with ENOSPC; a
// sparse file counts only its pages, and Statfs sees them.
func TestCapacity(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	fd, g := create(t, fs, xl.RootGFID, "f")
	before, e := fs.Statfs(bg, xl.RootGFID)
	ok(t, e)
	_, e = fs.Write(bg, fd, []byte("far"), 1<<40)
	ok(t, e)
	want(t, fs.Fallocate(bg, fd, 0, 0, 2<<30), syscall.ENOSPC, "fallocate of 2 GiB")
	after, e := fs.Statfs(bg, xl.RootGFID)
	ok(t, e)
	if before.Bfree-after.Bfree != 1 || after.Blocks != before.Blocks {
		t.Errorf("free blocks %d -> %d of %d; want one page used", before.Bfree, after.Bfree, after.Blocks)
	}
	ok(t, fs.Release(bg, fd))
	ok(t, fs.Unlink(bg, xl.RootGFID, "f"))
	if st, _ := fs.Statfs(bg, xl.RootGFID); st.Bfree != before.Bfree {
		t.Errorf("free blocks %d after removing the file, want %d", st.Bfree, before.Bfree)
	}
	_, e = fs.Getattr(bg, g)
	want(t, e, syscall.ESTALE, "getattr of the removed file")
}

// A fixed clock makes two stores given the same calls answer the same.
func TestFixedClockIsDeterministic(t *testing.T) {
	at := time.Unix(1e9, 5)
	opts := memfs.Options{Now: func() time.Time { return at }}
	run := func() []xl.Attr {
		fs := memfs.New(opts)
		g := xl.GFID{15: 2}
		_, e := fs.Mkdir(bg, xl.RootGFID, "d", g, 0o755)
		ok(t, e)
		fd, _, e := fs.Create(bg, g, "f", xl.GFID{15: 3}, syscall.O_RDWR, 0o644)
		ok(t, e)
		_, e = fs.Write(bg, fd, []byte("x"), 0)
		ok(t, e)
		var out []xl.Attr
		for _, g := range []xl.GFID{xl.RootGFID, g, fd.GFID} {
			a, e := fs.Getattr(bg, g)
			ok(t, e)
			out = append(out, a)
		}
		return out
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two runs differ:\n%+v\n%+v", a, b)
	}
	if a[2].Mtime != xl.TimespecOf(at) {
		t.Errorf("mtime %+v, want the clock's %+v", a[2].Mtime, xl.TimespecOf(at))
	}
}

// Many callers at once keep the store consistent (run with -race).
func TestConcurrentWriters(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	fd, g := create(t, fs, xl.RootGFID, "f")
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			buf := make([]byte, 100)
			for j := range 50 {
				fs.Write(bg, fd, []byte{byte(i)}, int64(i*50+j))
				fs.Read(bg, fd, buf, 0)
				fs.Readdir(bg, xl.Fd{GFID: xl.RootGFID}, 0, 10)
			}
		}()
	}
	for range 8 {
		<-done
	}
	a, e := fs.Getattr(bg, g)
	if e != 0 || a.Size != 400 {
		t.Errorf("size %d, %v; want 400", a.Size, e)
	}
}
