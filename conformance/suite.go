package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The unprivileged identity of the permission cases: nobody:nogroup.
const (
	userUid = 65534
	userGid = 65534
)

type testCase struct {
	name string
	fn   func(t *testing.T, fsys FS)
}

// cases lists every case in the order Run runs them.
var cases = concat(fileCases, namespaceCases, dirCases, xattrCases, permCases)

func concat(lists ...[]testCase) []testCase {
	var all []testCase
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// Option states a promise of the filesystem under test beyond what every
// Linux filesystem keeps.
type Option func(*options)

type options struct{ largeXattrs bool }

// LargeXattrs requires 64 KiB xattr values to round-trip. gluon promises
// it on any brick filesystem; ext4 itself refuses them without ea_inode.
func LargeXattrs(o *options) { o.largeXattrs = true }

// Run runs every case as a subtest named by the behaviour it checks. It
// calls newFS once, makes its root mode 0755, and gives each case a fresh
// subdirectory named after it, so the FS must start empty.
func Run(t *testing.T, newFS func(t *testing.T) FS, opts ...Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fsys := newFS(t)
	if err := fsys.Chmod(".", 0o755); err != nil {
		t.Fatalf("making the root searchable: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := fsys.Mkdir(c.name, 0o755); err != nil {
				t.Fatalf("case directory: %v", err)
			}
			c.fn(t, subFS{fs: fsys, dir: c.name, opts: o})
		})
	}
}

// subFS is the part of an FS under dir.
type subFS struct {
	fs   FS
	dir  string
	opts options
}

func promised(fsys FS) options {
	if s, ok := fsys.(subFS); ok {
		return s.opts
	}
	return options{}
}

func (s subFS) p(name string) string { return path.Join(s.dir, name) }

func (s subFS) Mkdir(p string, mode uint32) error { return s.fs.Mkdir(s.p(p), mode) }
func (s subFS) Mknod(p string, mode uint32, dev uint64) error {
	return s.fs.Mknod(s.p(p), mode, dev)
}
func (s subFS) OpenFile(p string, flags int, mode uint32) (File, error) {
	return s.fs.OpenFile(s.p(p), flags, mode)
}
func (s subFS) Stat(p string) (Attr, error)          { return s.fs.Stat(s.p(p)) }
func (s subFS) Lstat(p string) (Attr, error)         { return s.fs.Lstat(s.p(p)) }
func (s subFS) Chmod(p string, mode uint32) error    { return s.fs.Chmod(s.p(p), mode) }
func (s subFS) Chown(p string, uid, gid int) error   { return s.fs.Chown(s.p(p), uid, gid) }
func (s subFS) Truncate(p string, size int64) error  { return s.fs.Truncate(s.p(p), size) }
func (s subFS) Symlink(target, p string) error       { return s.fs.Symlink(target, s.p(p)) }
func (s subFS) Readlink(p string) (string, error)    { return s.fs.Readlink(s.p(p)) }
func (s subFS) Link(oldpath, newpath string) error   { return s.fs.Link(s.p(oldpath), s.p(newpath)) }
func (s subFS) Unlink(p string) error                { return s.fs.Unlink(s.p(p)) }
func (s subFS) Rmdir(p string) error                 { return s.fs.Rmdir(s.p(p)) }
func (s subFS) ReadDir(p string) ([]DirEntry, error) { return s.fs.ReadDir(s.p(p)) }
func (s subFS) Statfs(p string) (Statfs, error)      { return s.fs.Statfs(s.p(p)) }
func (s subFS) Listxattr(p string) ([]string, error) { return s.fs.Listxattr(s.p(p)) }
func (s subFS) Access(p string, mode uint32) error   { return s.fs.Access(s.p(p), mode) }
func (s subFS) AsUser(uid, gid uint32) FS            { return subFS{fs: s.fs.AsUser(uid, gid), dir: s.dir} }
func (s subFS) Utimes(p string, atime, mtime unix.Timespec) error {
	return s.fs.Utimes(s.p(p), atime, mtime)
}
func (s subFS) Rename(oldpath, newpath string, flags uint) error {
	return s.fs.Rename(s.p(oldpath), s.p(newpath), flags)
}
func (s subFS) Getxattr(p, name string) ([]byte, error) { return s.fs.Getxattr(s.p(p), name) }
func (s subFS) Setxattr(p, name string, value []byte, flags int) error {
	return s.fs.Setxattr(s.p(p), name, value, flags)
}
func (s subFS) Removexattr(p, name string) error { return s.fs.Removexattr(s.p(p), name) }

// Helpers shared by the cases.

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr fails unless err is want; what names the call.
func wantErr(t *testing.T, err error, want syscall.Errno, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

func writeFile(t *testing.T, fsys FS, p string, data []byte) {
	t.Helper()
	f, err := fsys.OpenFile(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
	ok(t, err)
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		t.Fatal(err)
	}
	ok(t, f.Close())
}

func readFile(t *testing.T, fsys FS, p string) []byte {
	t.Helper()
	f, err := fsys.OpenFile(p, unix.O_RDONLY, 0)
	ok(t, err)
	defer f.Close()
	a, err := f.Stat()
	ok(t, err)
	buf := make([]byte, a.Size+1) // one more, to see the end
	n, err := f.ReadAt(buf, 0)
	ok(t, err)
	return buf[:n]
}

func wantContent(t *testing.T, fsys FS, p string, want []byte) {
	t.Helper()
	if got := readFile(t, fsys, p); !bytes.Equal(got, want) {
		t.Errorf("%s holds %s, want %s", p, abbrev(got), abbrev(want))
	}
}

// abbrev prints short data whole and long data by length and ends.
func abbrev(b []byte) string {
	if len(b) <= 32 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q…%q (%d bytes)", b[:12], b[len(b)-12:], len(b))
}

func stat(t *testing.T, fsys FS, p string) Attr {
	t.Helper()
	a, err := fsys.Lstat(p)
	ok(t, err)
	return a
}

// pattern is n bytes that differ at every offset modulo 251 (a prime, so
// misplaced blocks of power-of-two size show).
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%251) + seed
	}
	return b
}
