package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// childEnv carries a request to a child process started by an AsUser view
// of an OSFS; MaybeRunChild answers it.
const childEnv = "GLUON_CONFORMANCE_CHILD"

// OSFS is the directory dir through real system calls. Its AsUser view
// runs every call in a child process with that user's credentials: the
// test binary re-executed (see MaybeRunChild), since a Go process cannot
// change identity for one goroutine. A file that view opens is opened by
// the child, so permission and ownership are the child's, and then
// reopened by the test process without O_CREAT, O_EXCL or O_TRUNC: Linux
// checks permissions only at open. Creation goes through the kernel, so
// the process umask applies; the cases expect 022.
func OSFS(dir string) FS { return &osFS{dir: dir} }

type osFS struct {
	dir  string
	cred *syscall.Credential // nil: act as this process
}

// request is one call, with absolute paths.
type request struct {
	Op       string
	Path     string
	Path2    string
	Name     string
	Value    []byte
	Mode     uint32
	Flags    int
	Uid, Gid int
	Dev      uint64
	Size     int64
	Atime    unix.Timespec
	Mtime    unix.Timespec
}

type reply struct {
	Errno   syscall.Errno
	Attr    Attr
	Data    []byte
	Names   []string
	Entries []DirEntry
	Statfs  Statfs
}

// MaybeRunChild performs the call that an OSFS AsUser view asked a
// re-executed test binary to make, writes the result to stdout and exits
// with the errno as status. Otherwise it returns at once. Call it first
// in TestMain of every package that runs the suite against an OSFS.
func MaybeRunChild() {
	enc := os.Getenv(childEnv)
	if enc == "" {
		return
	}
	var req request
	if err := json.Unmarshal([]byte(enc), &req); err != nil {
		fmt.Fprintf(os.Stderr, "conformance child: bad request: %v\n", err)
		os.Exit(255)
	}
	rep := perform(&req)
	if err := json.NewEncoder(os.Stdout).Encode(&rep); err != nil {
		os.Exit(255)
	}
	os.Exit(int(rep.Errno))
}

func (f *osFS) AsUser(uid, gid uint32) FS {
	return &osFS{dir: f.dir, cred: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
}

func (f *osFS) abs(p string) string { return filepath.Join(f.dir, filepath.FromSlash(p)) }

// do performs req as this process or, for an AsUser view, in a child.
func (f *osFS) do(req *request) (reply, error) {
	if f.cred == nil {
		return perform(req), nil
	}
	enc, err := json.Marshal(req)
	if err != nil {
		return reply{}, err
	}
	// /proc/self/exe, unlike os.Args[0], stays reachable after the child
	// drops root: the test binary usually lives in a 0700 directory.
	// If TestMain forgot MaybeRunChild, -test.run=^$ keeps the child from
	// running the tests (and spawning children) again.
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Dir = "/"
	// The race detector's runtime sleeps a second before exiting unless
	// told otherwise, which would make each call take that long.
	cmd.Env = append(os.Environ(), childEnv+"="+string(enc), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: f.cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep reply
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return reply{}, fmt.Errorf("conformance child for %s %s (did TestMain call MaybeRunChild?): %v: %s", req.Op, req.Path, runErr, strings.TrimSpace(stderr.String()))
	}
	if code := cmd.ProcessState.ExitCode(); code != int(rep.Errno) {
		return reply{}, fmt.Errorf("conformance child for %s %s: exit status %d, reply errno %d", req.Op, req.Path, code, rep.Errno)
	}
	return rep, nil
}

// call runs req and turns the errno into a *fs.PathError naming path.
func (f *osFS) call(req *request, path string) (reply, error) {
	rep, err := f.do(req)
	if err != nil {
		return rep, err
	}
	if rep.Errno != 0 {
		return rep, &fs.PathError{Op: req.Op, Path: path, Err: rep.Errno}
	}
	return rep, nil
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}

// perform makes one call as the current process.
func perform(r *request) reply {
	var rep reply
	var err error
	switch r.Op {
	case "mkdir":
		err = unix.Mkdir(r.Path, r.Mode)
	case "mknod":
		err = unix.Mknod(r.Path, r.Mode, int(r.Dev))
	case "open":
		// Only an AsUser view asks; the caller reopens the file.
		var fd int
		fd, err = unix.Open(r.Path, r.Flags|unix.O_CLOEXEC, r.Mode)
		if err == nil {
			err = unix.Close(fd)
		}
	case "stat", "lstat":
		var st unix.Stat_t
		if r.Op == "stat" {
			err = unix.Stat(r.Path, &st)
		} else {
			err = unix.Lstat(r.Path, &st)
		}
		rep.Attr = attrOf(&st)
	case "chmod":
		err = unix.Chmod(r.Path, r.Mode)
	case "chown":
		err = unix.Lchown(r.Path, r.Uid, r.Gid)
	case "utimes":
		err = unix.UtimesNanoAt(unix.AT_FDCWD, r.Path, []unix.Timespec{r.Atime, r.Mtime}, unix.AT_SYMLINK_NOFOLLOW)
	case "truncate":
		err = unix.Truncate(r.Path, r.Size)
	case "symlink":
		err = unix.Symlink(r.Name, r.Path)
	case "readlink":
		var s string
		s, err = os.Readlink(r.Path)
		rep.Data = []byte(s)
	case "link":
		err = unix.Link(r.Path, r.Path2)
	case "unlink":
		err = unix.Unlink(r.Path)
	case "rmdir":
		err = unix.Rmdir(r.Path)
	case "rename":
		err = unix.Renameat2(unix.AT_FDCWD, r.Path, unix.AT_FDCWD, r.Path2, uint(r.Flags))
	case "readdir":
		rep.Entries, err = readDir(r.Path)
	case "statfs":
		var st unix.Statfs_t
		err = unix.Statfs(r.Path, &st)
		rep.Statfs = Statfs{
			Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
			Files: st.Files, Ffree: st.Ffree,
			Bsize: st.Bsize, NameLen: st.Namelen,
		}
	case "getxattr":
		rep.Data, err = getxattr(r.Path, r.Name)
	case "setxattr":
		err = unix.Lsetxattr(r.Path, r.Name, r.Value, r.Flags)
	case "listxattr":
		rep.Names, err = listxattr(r.Path)
	case "removexattr":
		err = unix.Lremovexattr(r.Path, r.Name)
	case "access":
		err = unix.Access(r.Path, r.Mode)
	default:
		err = syscall.ENOSYS
	}
	rep.Errno = errnoOf(err)
	return rep
}

func attrOf(st *unix.Stat_t) Attr {
	return Attr{
		Ino: st.Ino, Mode: st.Mode, Nlink: uint32(st.Nlink),
		Uid: st.Uid, Gid: st.Gid, Rdev: st.Rdev,
		Size: st.Size, Blocks: st.Blocks,
		Atime: st.Atim, Mtime: st.Mtim, Ctime: st.Ctim,
	}
}

func readDir(dir string) ([]DirEntry, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	ents := make([]DirEntry, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, n), &st); err != nil {
			return nil, err
		}
		ents = append(ents, DirEntry{Name: n, Attr: attrOf(&st)})
	}
	return ents, nil
}

func getxattr(path, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Lgetxattr(path, name, buf)
		if err == unix.ERANGE {
			continue // grew in between
		}
		return buf[:n], err
	}
}

func listxattr(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = unix.Llistxattr(path, buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func (f *osFS) Mkdir(p string, mode uint32) error {
	_, err := f.call(&request{Op: "mkdir", Path: f.abs(p), Mode: mode}, p)
	return err
}

func (f *osFS) Mknod(p string, mode uint32, dev uint64) error {
	_, err := f.call(&request{Op: "mknod", Path: f.abs(p), Mode: mode, Dev: dev}, p)
	return err
}

func (f *osFS) OpenFile(p string, flags int, mode uint32) (File, error) {
	if f.cred != nil {
		if _, err := f.call(&request{Op: "open", Path: f.abs(p), Flags: flags, Mode: mode}, p); err != nil {
			return nil, err
		}
		flags &^= unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC
	}
	fd, err := unix.Open(f.abs(p), flags|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return &osFile{fd: fd, path: p}, nil
}

func (f *osFS) Stat(p string) (Attr, error) {
	rep, err := f.call(&request{Op: "stat", Path: f.abs(p)}, p)
	return rep.Attr, err
}

func (f *osFS) Lstat(p string) (Attr, error) {
	rep, err := f.call(&request{Op: "lstat", Path: f.abs(p)}, p)
	return rep.Attr, err
}

func (f *osFS) Chmod(p string, mode uint32) error {
	_, err := f.call(&request{Op: "chmod", Path: f.abs(p), Mode: mode}, p)
	return err
}

func (f *osFS) Chown(p string, uid, gid int) error {
	_, err := f.call(&request{Op: "chown", Path: f.abs(p), Uid: uid, Gid: gid}, p)
	return err
}

func (f *osFS) Utimes(p string, atime, mtime unix.Timespec) error {
	_, err := f.call(&request{Op: "utimes", Path: f.abs(p), Atime: atime, Mtime: mtime}, p)
	return err
}

func (f *osFS) Truncate(p string, size int64) error {
	_, err := f.call(&request{Op: "truncate", Path: f.abs(p), Size: size}, p)
	return err
}

func (f *osFS) Symlink(target, p string) error {
	_, err := f.call(&request{Op: "symlink", Path: f.abs(p), Name: target}, p)
	return err
}

func (f *osFS) Readlink(p string) (string, error) {
	rep, err := f.call(&request{Op: "readlink", Path: f.abs(p)}, p)
	return string(rep.Data), err
}

func (f *osFS) Link(oldpath, newpath string) error {
	_, err := f.call(&request{Op: "link", Path: f.abs(oldpath), Path2: f.abs(newpath)}, oldpath+" -> "+newpath)
	return err
}

func (f *osFS) Unlink(p string) error {
	_, err := f.call(&request{Op: "unlink", Path: f.abs(p)}, p)
	return err
}

func (f *osFS) Rmdir(p string) error {
	_, err := f.call(&request{Op: "rmdir", Path: f.abs(p)}, p)
	return err
}

func (f *osFS) Rename(oldpath, newpath string, flags uint) error {
	_, err := f.call(&request{Op: "rename", Path: f.abs(oldpath), Path2: f.abs(newpath), Flags: int(flags)}, oldpath+" -> "+newpath)
	return err
}

func (f *osFS) ReadDir(p string) ([]DirEntry, error) {
	rep, err := f.call(&request{Op: "readdir", Path: f.abs(p)}, p)
	return rep.Entries, err
}

func (f *osFS) Statfs(p string) (Statfs, error) {
	rep, err := f.call(&request{Op: "statfs", Path: f.abs(p)}, p)
	return rep.Statfs, err
}

func (f *osFS) Getxattr(p, name string) ([]byte, error) {
	rep, err := f.call(&request{Op: "getxattr", Path: f.abs(p), Name: name}, p)
	return rep.Data, err
}

func (f *osFS) Setxattr(p, name string, value []byte, flags int) error {
	_, err := f.call(&request{Op: "setxattr", Path: f.abs(p), Name: name, Value: value, Flags: flags}, p)
	return err
}

func (f *osFS) Listxattr(p string) ([]string, error) {
	rep, err := f.call(&request{Op: "listxattr", Path: f.abs(p)}, p)
	return rep.Names, err
}

func (f *osFS) Removexattr(p, name string) error {
	_, err := f.call(&request{Op: "removexattr", Path: f.abs(p), Name: name}, p)
	return err
}

func (f *osFS) Access(p string, mode uint32) error {
	_, err := f.call(&request{Op: "access", Path: f.abs(p), Mode: mode}, p)
	return err
}

// osFile is an open file descriptor of this process.
type osFile struct {
	fd   int
	path string
}

func (f *osFile) err(op string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: f.path, Err: err}
}

func (f *osFile) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(f.fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, f.err("pread", err)
		}
		if n == 0 {
			break
		}
		done += n
	}
	return done, nil
}

func (f *osFile) WriteAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(f.fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, f.err("pwrite", err)
		}
		done += n
	}
	return done, nil
}

func (f *osFile) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(f.fd, p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, f.err("write", err)
		}
		done += n
	}
	return done, nil
}

func (f *osFile) Seek(off int64, whence int) (int64, error) {
	n, err := unix.Seek(f.fd, off, whence)
	return n, f.err("lseek", err)
}

func (f *osFile) Truncate(size int64) error { return f.err("ftruncate", unix.Ftruncate(f.fd, size)) }

func (f *osFile) Fallocate(mode uint32, off, length int64) error {
	return f.err("fallocate", unix.Fallocate(f.fd, mode, off, length))
}

func (f *osFile) Stat() (Attr, error) {
	var st unix.Stat_t
	err := unix.Fstat(f.fd, &st)
	return attrOf(&st), f.err("fstat", err)
}

func (f *osFile) Sync() error { return f.err("fsync", unix.Fsync(f.fd)) }

func (f *osFile) Close() error {
	if f.fd < 0 {
		return f.err("close", unix.EBADF)
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return f.err("close", err)
}
