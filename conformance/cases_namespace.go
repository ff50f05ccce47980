package conformance

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// namespaceCases are about names and metadata.
var namespaceCases = []testCase{
	{"MkdirCreatesEmptyDir", mkdirCreatesEmptyDir},
	{"MkdirExistingEEXIST", mkdirExistingEEXIST},
	{"MknodCreatesSpecialFiles", mknodCreatesSpecialFiles},
	{"SymlinkReadlinkAndFollow", symlinkReadlinkAndFollow},
	{"LinkSharesInodeAndCountsNlink", linkSharesInode},
	{"UnlinkRemovesName", unlinkRemovesName},
	{"RmdirRemovesEmptyDir", rmdirRemovesEmptyDir},
	{"RmdirNonEmptyENOTEMPTY", rmdirNonEmpty},
	{"RenameFileKeepsInodeAndData", renameFileKeepsInode},
	{"RenameDirectoryMovesSubtree", renameDirectoryMovesSubtree},
	{"RenameOverExistingFileReplacesIt", renameOverExistingFile},
	{"RenameDirOverEmptyDirReplacesIt", renameDirOverEmptyDir},
	{"RenameDirOverNonEmptyDirENOTEMPTY", renameDirOverNonEmptyDir},
	{"RenameFileOverDirEISDIR", renameFileOverDir},
	{"RenameDirOverFileENOTDIR", renameDirOverFile},
	{"RenameNoreplaceOverExistingEEXIST", renameNoreplace},
	{"RenameExchangeSwapsEntries", renameExchange},
	{"RenameOntoSameInodeIsNoop", renameOntoSameInode},
	{"ChmodSetsPermissionBits", chmodSetsPermissionBits},
	{"ChownSetsOwnerAndGroup", chownSetsOwner},
	{"ChownClearsSetuidAndSetgid", chownClearsSetid},
	{"UtimesSetsNanoseconds", utimesSetsNanoseconds},
	{"UtimesNowAndOmit", utimesNowAndOmit},
	{"StatfsReportsCapacity", statfsReportsCapacity},
	{"OpenDirForWriteEISDIR", openDirForWrite},
	{"UnlinkDirEISDIR", unlinkDir},
	{"PathThroughFileENOTDIR", pathThroughFile},
	{"RmdirFileENOTDIR", rmdirFile},
	{"NameOver255BytesENAMETOOLONG", nameTooLong},
}

func mkdirCreatesEmptyDir(t *testing.T, fsys FS) {
	before := stat(t, fsys, ".")
	ok(t, fsys.Mkdir("d", 0o750))
	a := stat(t, fsys, "d")
	if a.Type() != unix.S_IFDIR || a.Perm() != 0o750 || a.Nlink != 2 || a.Uid != 0 || a.Gid != 0 {
		t.Errorf("mode %#o nlink %d owner %d:%d; want directory 0750, nlink 2, 0:0", a.Mode, a.Nlink, a.Uid, a.Gid)
	}
	ents, err := fsys.ReadDir("d")
	ok(t, err)
	if len(ents) != 0 {
		t.Errorf("new directory lists %d entries", len(ents))
	}
	if after := stat(t, fsys, "."); after.Nlink != before.Nlink+1 {
		t.Errorf("parent nlink %d after mkdir, want %d (the child's \"..\")", after.Nlink, before.Nlink+1)
	}
}

func mkdirExistingEEXIST(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Symlink("d", "l"))
	wantErr(t, fsys.Mkdir("d", 0o755), syscall.EEXIST, "mkdir over a directory")
	wantErr(t, fsys.Mkdir("f", 0o755), syscall.EEXIST, "mkdir over a file")
	wantErr(t, fsys.Mkdir("l", 0o755), syscall.EEXIST, "mkdir over a symlink")
}

func mknodCreatesSpecialFiles(t *testing.T, fsys FS) {
	for _, c := range []struct {
		name string
		mode uint32
		dev  uint64
	}{
		{"fifo", unix.S_IFIFO | 0o644, 0},
		{"socket", unix.S_IFSOCK | 0o644, 0},
		{"chardev", unix.S_IFCHR | 0o644, unix.Mkdev(1, 3)},
		{"blockdev", unix.S_IFBLK | 0o600, unix.Mkdev(7, 200)},
		{"regular", unix.S_IFREG | 0o644, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ok(t, fsys.Mknod(c.name, c.mode, c.dev))
			a := stat(t, fsys, c.name)
			if a.Mode != c.mode || a.Rdev != c.dev {
				t.Errorf("mode %#o rdev %#x; want %#o, %#x", a.Mode, a.Rdev, c.mode, c.dev)
			}
			wantErr(t, fsys.Mknod(c.name, c.mode, c.dev), syscall.EEXIST, "mknod over itself")
		})
	}
}

func symlinkReadlinkAndFollow(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	ok(t, fsys.Symlink("target", "d/l"))
	if got, err := fsys.Readlink("d/l"); err != nil || got != "target" {
		t.Errorf("readlink: %q, %v", got, err)
	}
	a := stat(t, fsys, "d/l")
	if a.Type() != unix.S_IFLNK || a.Size != int64(len("target")) {
		t.Errorf("lstat: mode %#o size %d; want a symlink of size 6", a.Mode, a.Size)
	}
	_, err := fsys.Stat("d/l")
	wantErr(t, err, syscall.ENOENT, "stat through a dangling symlink")

	writeFile(t, fsys, "d/target", []byte("through the link"))
	st, err := fsys.Stat("d/l")
	ok(t, err)
	if st.Type() != unix.S_IFREG || st.Ino != stat(t, fsys, "d/target").Ino {
		t.Errorf("stat through the link: mode %#o ino %d; want the target", st.Mode, st.Ino)
	}
	wantContent(t, fsys, "d/l", []byte("through the link"))

	long := strings.Repeat("x/", 1000) + "y" // a target is a string, not a path that must exist
	ok(t, fsys.Symlink(long, "long"))
	if got, err := fsys.Readlink("long"); err != nil || got != long {
		t.Errorf("readlink of a 2001-byte target: %d bytes, %v", len(got), err)
	}
	_, err = fsys.Readlink("d/target")
	wantErr(t, err, syscall.EINVAL, "readlink of a regular file")
	wantErr(t, fsys.Symlink("x", "d/l"), syscall.EEXIST, "symlink over an existing name")
}

func linkSharesInode(t *testing.T, fsys FS) {
	writeFile(t, fsys, "a", []byte("shared"))
	ok(t, fsys.Mkdir("d", 0o755))
	ok(t, fsys.Link("a", "b"))
	ok(t, fsys.Link("a", "d/c"))
	a, b, c := stat(t, fsys, "a"), stat(t, fsys, "b"), stat(t, fsys, "d/c")
	if a.Ino != b.Ino || a.Ino != c.Ino {
		t.Errorf("inodes %d, %d, %d; want one inode", a.Ino, b.Ino, c.Ino)
	}
	for _, x := range []Attr{a, b, c} {
		if x.Nlink != 3 {
			t.Errorf("nlink %d with three names, want 3", x.Nlink)
		}
	}
	f, err := fsys.OpenFile("b", unix.O_WRONLY, 0)
	ok(t, err)
	_, err = f.WriteAt([]byte("SH"), 0)
	ok(t, err)
	ok(t, f.Close())
	wantContent(t, fsys, "d/c", []byte("SHared"))

	ok(t, fsys.Unlink("a"))
	if x := stat(t, fsys, "b"); x.Nlink != 2 {
		t.Errorf("nlink %d after unlinking one of three names, want 2", x.Nlink)
	}
	wantContent(t, fsys, "b", []byte("SHared"))
	wantErr(t, fsys.Link("b", "d/c"), syscall.EEXIST, "link over an existing name")
	wantErr(t, fsys.Link("d", "d2"), syscall.EPERM, "link a directory")
}

func unlinkRemovesName(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("x"))
	writeFile(t, fsys, "g", []byte("y"))
	ok(t, fsys.Unlink("f"))
	_, err := fsys.Lstat("f")
	wantErr(t, err, syscall.ENOENT, "lstat after unlink")
	ents, err := fsys.ReadDir(".")
	ok(t, err)
	if len(ents) != 1 || ents[0].Name != "g" {
		t.Errorf("directory lists %v after unlink, want only g", names(ents))
	}
	wantErr(t, fsys.Unlink("f"), syscall.ENOENT, "unlink twice")
}

func rmdirRemovesEmptyDir(t *testing.T, fsys FS) {
	before := stat(t, fsys, ".")
	ok(t, fsys.Mkdir("d", 0o755))
	ok(t, fsys.Rmdir("d"))
	_, err := fsys.Lstat("d")
	wantErr(t, err, syscall.ENOENT, "lstat after rmdir")
	if after := stat(t, fsys, "."); after.Nlink != before.Nlink {
		t.Errorf("parent nlink %d after mkdir+rmdir, was %d", after.Nlink, before.Nlink)
	}
}

func rmdirNonEmpty(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	writeFile(t, fsys, "d/f", nil)
	wantErr(t, fsys.Rmdir("d"), syscall.ENOTEMPTY, "rmdir a directory holding a file")
	ok(t, fsys.Unlink("d/f"))
	ok(t, fsys.Mkdir("d/sub", 0o755))
	wantErr(t, fsys.Rmdir("d"), syscall.ENOTEMPTY, "rmdir a directory holding a directory")
	stat(t, fsys, "d/sub")
}

func renameFileKeepsInode(t *testing.T, fsys FS) {
	writeFile(t, fsys, "a", []byte("moving"))
	ok(t, fsys.Mkdir("d", 0o755))
	ino := stat(t, fsys, "a").Ino
	ok(t, fsys.Rename("a", "b", 0))
	ok(t, fsys.Rename("b", "d/c", 0))
	for _, p := range []string{"a", "b"} {
		_, err := fsys.Lstat(p)
		wantErr(t, err, syscall.ENOENT, "old name "+p+" after rename")
	}
	if a := stat(t, fsys, "d/c"); a.Ino != ino || a.Nlink != 1 {
		t.Errorf("renamed file: ino %d nlink %d; want ino %d, nlink 1", a.Ino, a.Nlink, ino)
	}
	wantContent(t, fsys, "d/c", []byte("moving"))
}

func renameDirectoryMovesSubtree(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("from", 0o755))
	ok(t, fsys.Mkdir("to", 0o755))
	ok(t, fsys.Mkdir("from/d", 0o755))
	ok(t, fsys.Mkdir("from/d/sub", 0o755))
	writeFile(t, fsys, "from/d/sub/f", []byte("deep"))
	fromN, toN := stat(t, fsys, "from").Nlink, stat(t, fsys, "to").Nlink
	ok(t, fsys.Rename("from/d", "to/moved", 0))
	wantContent(t, fsys, "to/moved/sub/f", []byte("deep"))
	_, err := fsys.Lstat("from/d")
	wantErr(t, err, syscall.ENOENT, "old name after moving a directory")
	if n := stat(t, fsys, "from").Nlink; n != fromN-1 {
		t.Errorf("old parent nlink %d, want %d", n, fromN-1)
	}
	if n := stat(t, fsys, "to").Nlink; n != toN+1 {
		t.Errorf("new parent nlink %d, want %d", n, toN+1)
	}
	wantErr(t, fsys.Rename("to", "to/moved/inside", 0), syscall.EINVAL, "move a directory into itself")
}

func renameOverExistingFile(t *testing.T, fsys FS) {
	writeFile(t, fsys, "a", []byte("winner"))
	writeFile(t, fsys, "b", []byte("loser"))
	ino := stat(t, fsys, "a").Ino
	ok(t, fsys.Rename("a", "b", 0))
	if got := stat(t, fsys, "b").Ino; got != ino {
		t.Errorf("b has inode %d, want the source's %d", got, ino)
	}
	wantContent(t, fsys, "b", []byte("winner"))
	_, err := fsys.Lstat("a")
	wantErr(t, err, syscall.ENOENT, "source after rename")
	ents, err := fsys.ReadDir(".")
	ok(t, err)
	if len(ents) != 1 {
		t.Errorf("directory lists %v, want only b", names(ents))
	}
}

func renameDirOverEmptyDir(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("a", 0o755))
	writeFile(t, fsys, "a/f", []byte("inside"))
	ok(t, fsys.Mkdir("b", 0o755))
	ok(t, fsys.Rename("a", "b", 0))
	wantContent(t, fsys, "b/f", []byte("inside"))
	_, err := fsys.Lstat("a")
	wantErr(t, err, syscall.ENOENT, "source after rename")
}

func renameDirOverNonEmptyDir(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("a", 0o755))
	ok(t, fsys.Mkdir("b", 0o755))
	writeFile(t, fsys, "b/f", []byte("kept"))
	wantErr(t, fsys.Rename("a", "b", 0), syscall.ENOTEMPTY, "rename over a non-empty directory")
	wantContent(t, fsys, "b/f", []byte("kept"))
	stat(t, fsys, "a")
}

func renameFileOverDir(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Mkdir("d", 0o755))
	wantErr(t, fsys.Rename("f", "d", 0), syscall.EISDIR, "rename a file over a directory")
	if a := stat(t, fsys, "d"); a.Type() != unix.S_IFDIR {
		t.Errorf("d is now %#o", a.Mode)
	}
}

func renameDirOverFile(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("kept"))
	ok(t, fsys.Mkdir("d", 0o755))
	wantErr(t, fsys.Rename("d", "f", 0), syscall.ENOTDIR, "rename a directory over a file")
	wantContent(t, fsys, "f", []byte("kept"))
}

func renameNoreplace(t *testing.T, fsys FS) {
	writeFile(t, fsys, "a", []byte("a"))
	writeFile(t, fsys, "b", []byte("b"))
	wantErr(t, fsys.Rename("a", "b", unix.RENAME_NOREPLACE), syscall.EEXIST, "RENAME_NOREPLACE over a file")
	wantContent(t, fsys, "a", []byte("a"))
	wantContent(t, fsys, "b", []byte("b"))
	ok(t, fsys.Rename("a", "c", unix.RENAME_NOREPLACE))
	wantContent(t, fsys, "c", []byte("a"))
}

func renameExchange(t *testing.T, fsys FS) {
	writeFile(t, fsys, "a", []byte("file"))
	ok(t, fsys.Mkdir("b", 0o755))
	writeFile(t, fsys, "b/inner", nil)
	ia, ib := stat(t, fsys, "a").Ino, stat(t, fsys, "b").Ino
	ok(t, fsys.Rename("a", "b", unix.RENAME_EXCHANGE))
	a, b := stat(t, fsys, "a"), stat(t, fsys, "b")
	if a.Type() != unix.S_IFDIR || a.Ino != ib || b.Type() != unix.S_IFREG || b.Ino != ia {
		t.Errorf("after exchange a is %#o ino %d, b is %#o ino %d; want a the directory %d, b the file %d",
			a.Mode, a.Ino, b.Mode, b.Ino, ib, ia)
	}
	wantContent(t, fsys, "b", []byte("file"))
	stat(t, fsys, "a/inner")
	wantErr(t, fsys.Rename("b", "missing", unix.RENAME_EXCHANGE), syscall.ENOENT, "RENAME_EXCHANGE with a missing target")
	wantErr(t, fsys.Rename("a", "b", unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE), syscall.EINVAL, "RENAME_EXCHANGE|RENAME_NOREPLACE")
}

func renameOntoSameInode(t *testing.T, fsys FS) {
	writeFile(t, fsys, "a", []byte("same"))
	ok(t, fsys.Link("a", "b"))
	ok(t, fsys.Rename("a", "a", 0))
	// POSIX: renaming one hard link onto another of the same file does
	// nothing and succeeds; both names stay.
	ok(t, fsys.Rename("a", "b", 0))
	for _, p := range []string{"a", "b"} {
		if x := stat(t, fsys, p); x.Nlink != 2 {
			t.Errorf("%s: nlink %d, want 2", p, x.Nlink)
		}
	}
	wantContent(t, fsys, "a", []byte("same"))
}

func chmodSetsPermissionBits(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Mkdir("d", 0o755))
	for _, c := range []struct {
		path string
		mode uint32
	}{
		{"f", 0o600}, {"f", 0o000}, {"f", 0o777}, {"f", 0o4755}, {"f", 0o2750}, {"d", 0o1777}, {"d", 0o2755}, {"d", 0o700},
	} {
		ok(t, fsys.Chmod(c.path, c.mode))
		if a := stat(t, fsys, c.path); a.Perm() != c.mode {
			t.Errorf("chmod %s %#o: mode is %#o", c.path, c.mode, a.Perm())
		}
	}
	if a := stat(t, fsys, "d"); a.Type() != unix.S_IFDIR {
		t.Errorf("chmod changed the file type: %#o", a.Mode)
	}
}

func chownSetsOwner(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Chown("f", 1234, 5678))
	if a := stat(t, fsys, "f"); a.Uid != 1234 || a.Gid != 5678 {
		t.Errorf("owner %d:%d, want 1234:5678", a.Uid, a.Gid)
	}
	ok(t, fsys.Chown("f", -1, 42))
	if a := stat(t, fsys, "f"); a.Uid != 1234 || a.Gid != 42 {
		t.Errorf("owner %d:%d after chown -1:42, want 1234:42", a.Uid, a.Gid)
	}
	ok(t, fsys.Symlink("f", "l"))
	ok(t, fsys.Chown("l", 7, 7))
	if a := stat(t, fsys, "l"); a.Uid != 7 || a.Gid != 7 {
		t.Errorf("link owner %d:%d, want 7:7", a.Uid, a.Gid)
	}
	if a := stat(t, fsys, "f"); a.Uid != 1234 {
		t.Errorf("chown of a symlink changed its target to uid %d", a.Uid)
	}
}

// Linux clears set-id bits on chown of a regular file, even for root.
func chownClearsSetid(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Chmod("f", 0o6755))
	ok(t, fsys.Chown("f", 1000, 1000))
	if a := stat(t, fsys, "f"); a.Perm() != 0o755 {
		t.Errorf("mode %#o after chown, want 0755", a.Perm())
	}
}

func utimesSetsNanoseconds(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	at := unix.Timespec{Sec: 1_000_000_000, Nsec: 123_456_789}
	mt := unix.Timespec{Sec: 1_500_000_000, Nsec: 987_654_321}
	ok(t, fsys.Utimes("f", at, mt))
	a := stat(t, fsys, "f")
	if a.Atime != at || a.Mtime != mt {
		t.Errorf("atime %v mtime %v, want %v %v", a.Atime, a.Mtime, at, mt)
	}
	ok(t, fsys.Mkdir("d", 0o755))
	ok(t, fsys.Utimes("d", mt, at))
	if a := stat(t, fsys, "d"); a.Atime != mt || a.Mtime != at {
		t.Errorf("directory atime %v mtime %v, want %v %v", a.Atime, a.Mtime, mt, at)
	}
	wantErr(t, fsys.Utimes("f", unix.Timespec{Nsec: 1e9}, mt), syscall.EINVAL, "utimes with 1e9 ns")
}

func utimesNowAndOmit(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	old := unix.Timespec{Sec: 1_000_000_000, Nsec: 5}
	ok(t, fsys.Utimes("f", old, old))

	// The store's clock may be coarse, and on another host: allow slack.
	lo := time.Now().Add(-2 * time.Second)
	ok(t, fsys.Utimes("f", unix.Timespec{Nsec: unix.UTIME_OMIT}, unix.Timespec{Nsec: unix.UTIME_NOW}))
	hi := time.Now().Add(2 * time.Second)
	a := stat(t, fsys, "f")
	if a.Atime != old {
		t.Errorf("UTIME_OMIT changed atime to %v", a.Atime)
	}
	if m := time.Unix(a.Mtime.Unix()); m.Before(lo) || m.After(hi) {
		t.Errorf("UTIME_NOW set mtime to %v, want about %v", m, time.Now())
	}
	mtime := a.Mtime

	ok(t, fsys.Utimes("f", unix.Timespec{Nsec: unix.UTIME_NOW}, unix.Timespec{Nsec: unix.UTIME_OMIT}))
	a = stat(t, fsys, "f")
	if a.Mtime != mtime {
		t.Errorf("UTIME_OMIT changed mtime from %v to %v", mtime, a.Mtime)
	}
	if at := time.Unix(a.Atime.Unix()); at.Before(lo) || at.After(time.Now().Add(2*time.Second)) {
		t.Errorf("UTIME_NOW set atime to %v, want about %v", at, time.Now())
	}
}

func statfsReportsCapacity(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	for _, p := range []string{".", "f"} {
		st, err := fsys.Statfs(p)
		ok(t, err)
		if st.Blocks == 0 || st.Bsize <= 0 || st.Bfree > st.Blocks || st.Bavail > st.Blocks {
			t.Errorf("statfs %s: blocks %d free %d avail %d bsize %d", p, st.Blocks, st.Bfree, st.Bavail, st.Bsize)
		}
		if st.NameLen < 255 {
			t.Errorf("statfs %s: name length %d, want at least 255", p, st.NameLen)
		}
	}
}

func openDirForWrite(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	for _, flags := range []int{unix.O_WRONLY, unix.O_RDWR, unix.O_WRONLY | unix.O_CREAT} {
		f, err := fsys.OpenFile("d", flags, 0o644)
		if err == nil {
			f.Close()
		}
		wantErr(t, err, syscall.EISDIR, fmt.Sprintf("open a directory with flags %#o", flags))
	}
}

func unlinkDir(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	wantErr(t, fsys.Unlink("d"), syscall.EISDIR, "unlink a directory")
	stat(t, fsys, "d")
}

func pathThroughFile(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	_, err := fsys.Stat("f/x")
	wantErr(t, err, syscall.ENOTDIR, "stat f/x")
	f, err := fsys.OpenFile("f/x", unix.O_WRONLY|unix.O_CREAT, 0o644)
	if err == nil {
		f.Close()
	}
	wantErr(t, err, syscall.ENOTDIR, "create f/x")
	wantErr(t, fsys.Mkdir("f/x", 0o755), syscall.ENOTDIR, "mkdir f/x")
	_, err = fsys.ReadDir("f")
	wantErr(t, err, syscall.ENOTDIR, "readdir of a file")
}

func rmdirFile(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	wantErr(t, fsys.Rmdir("f"), syscall.ENOTDIR, "rmdir a file")
	stat(t, fsys, "f")
}

func nameTooLong(t *testing.T, fsys FS) {
	longest := strings.Repeat("n", 255)
	over := strings.Repeat("o", 256)
	writeFile(t, fsys, longest, []byte("255 bytes is fine"))
	wantContent(t, fsys, longest, []byte("255 bytes is fine"))
	ok(t, fsys.Mkdir(strings.Repeat("d", 255), 0o755))

	f, err := fsys.OpenFile(over, unix.O_WRONLY|unix.O_CREAT, 0o644)
	if err == nil {
		f.Close()
	}
	wantErr(t, err, syscall.ENAMETOOLONG, "create a 256-byte name")
	wantErr(t, fsys.Mkdir(over, 0o755), syscall.ENAMETOOLONG, "mkdir a 256-byte name")
	wantErr(t, fsys.Symlink("t", over), syscall.ENAMETOOLONG, "symlink a 256-byte name")
	wantErr(t, fsys.Link(longest, over), syscall.ENAMETOOLONG, "link to a 256-byte name")
	wantErr(t, fsys.Rename(longest, over, 0), syscall.ENAMETOOLONG, "rename to a 256-byte name")
	_, err = fsys.Lstat(over)
	wantErr(t, err, syscall.ENAMETOOLONG, "lstat a 256-byte name")
}

func names(ents []DirEntry) []string {
	var n []string
	for _, e := range ents {
		n = append(n, e.Name)
	}
	return n
}
