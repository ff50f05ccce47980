package conformance

import (
	"bytes"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fileCases are about regular files and their data.
var fileCases = []testCase{
	{"CreateSetsTypeModeAndOwner", createSetsTypeModeAndOwner},
	{"WriteReadRoundTrip", writeReadRoundTrip},
	{"SparseFileBeyond4GiB", sparseFileBeyond4GiB},
	{"AppendWritesAtEnd", appendWritesAtEnd},
	{"ExclusiveCreateOfExistingEEXIST", exclusiveCreateOfExisting},
	{"OpenTruncEmpties", openTruncEmpties},
	{"TruncateGrowsWithZerosAndShrinks", truncateGrowsAndShrinks},
	{"FallocateAllocatesAndPunchHoleZeroes", fallocateAndPunchHole},
	{"SeekDataAndHole", seekDataAndHole},
	{"FsyncSucceeds", fsyncSucceeds},
	{"UnlinkWhileOpenKeepsData", unlinkWhileOpenKeepsData},
	{"MissingPathENOENT", missingPathENOENT},
}

func createSetsTypeModeAndOwner(t *testing.T, fsys FS) {
	f, err := fsys.OpenFile("f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o640)
	ok(t, err)
	ok(t, f.Close())
	a := stat(t, fsys, "f")
	if a.Type() != unix.S_IFREG || a.Perm() != 0o640 {
		t.Errorf("mode %#o, want regular file 0640", a.Mode)
	}
	if a.Nlink != 1 || a.Size != 0 || a.Uid != 0 || a.Gid != 0 {
		t.Errorf("nlink %d size %d owner %d:%d, want 1, 0, 0:0", a.Nlink, a.Size, a.Uid, a.Gid)
	}
	if a.Ino == 0 {
		t.Error("inode number 0")
	}
}

func writeReadRoundTrip(t *testing.T, fsys FS) {
	data := pattern(256<<10, 0)
	f, err := fsys.OpenFile("f", unix.O_RDWR|unix.O_CREAT, 0o644)
	ok(t, err)
	defer f.Close()
	if n, err := f.WriteAt(data, 0); err != nil || n != len(data) {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	// Overwrite a range that straddles page boundaries.
	over := bytes.Repeat([]byte("x"), 5000)
	_, err = f.WriteAt(over, 3000)
	ok(t, err)
	copy(data[3000:], over)
	ok(t, f.Close())
	wantContent(t, fsys, "f", data)

	r, err := fsys.OpenFile("f", unix.O_RDONLY, 0)
	ok(t, err)
	defer r.Close()
	buf := make([]byte, 100)
	if n, err := r.ReadAt(buf, int64(len(data))-10); err != nil || n != 10 {
		t.Errorf("read across end of file: %d, %v; want 10 bytes", n, err)
	}
	if n, err := r.ReadAt(buf, int64(len(data))+100); err != nil || n != 0 {
		t.Errorf("read past end of file: %d, %v; want 0 bytes", n, err)
	}
	_, err = r.WriteAt([]byte("x"), 0)
	wantErr(t, err, syscall.EBADF, "write through a read-only fd")
}

func sparseFileBeyond4GiB(t *testing.T, fsys FS) {
	const far = 5 << 30
	const edge = 4 << 30
	f, err := fsys.OpenFile("f", unix.O_RDWR|unix.O_CREAT, 0o644)
	ok(t, err)
	defer f.Close()
	tail := pattern(4096, 7)
	_, err = f.WriteAt(tail, far)
	ok(t, err)
	_, err = f.WriteAt([]byte("abcd"), edge-2) // across the 32-bit boundary
	ok(t, err)
	ok(t, f.Close())

	a := stat(t, fsys, "f")
	if a.Size != far+4096 {
		t.Fatalf("size %d, want %d", a.Size, far+4096)
	}
	if a.Blocks*512 > 1<<20 {
		t.Errorf("a 5 GiB sparse file uses %d bytes; holes should not be allocated", a.Blocks*512)
	}
	r, err := fsys.OpenFile("f", unix.O_RDONLY, 0)
	ok(t, err)
	defer r.Close()
	for _, c := range []struct {
		off  int64
		want []byte
	}{
		{edge - 2, []byte("abcd")},
		{far, tail},
		{1 << 30, make([]byte, 4096)},
		{edge + 4096, make([]byte, 4096)},
		{far - 10, append(make([]byte, 10), tail[:10]...)},
	} {
		got := make([]byte, len(c.want))
		if n, err := r.ReadAt(got, c.off); err != nil || n != len(got) || !bytes.Equal(got, c.want) {
			t.Errorf("at %d: read %d bytes %s, %v; want %s", c.off, n, abbrev(got[:n]), err, abbrev(c.want))
		}
	}
}

func appendWritesAtEnd(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("hello"))
	app, err := fsys.OpenFile("f", unix.O_WRONLY|unix.O_APPEND, 0)
	ok(t, err)
	defer app.Close()
	_, err = app.Write([]byte(" world"))
	ok(t, err)
	// Another writer extends the file; the next append must land after it.
	other, err := fsys.OpenFile("f", unix.O_WRONLY, 0)
	ok(t, err)
	defer other.Close()
	_, err = other.WriteAt([]byte("!"), 11)
	ok(t, err)
	ok(t, other.Close())
	_, err = app.Write([]byte("?"))
	ok(t, err)
	ok(t, app.Close())
	wantContent(t, fsys, "f", []byte("hello world!?"))
}

func exclusiveCreateOfExisting(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("keep"))
	ok(t, fsys.Mkdir("d", 0o755))
	ok(t, fsys.Symlink("nowhere", "dangling"))
	for _, p := range []string{"f", "d", "dangling"} {
		f, err := fsys.OpenFile(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err == nil {
			f.Close()
		}
		wantErr(t, err, syscall.EEXIST, "O_CREAT|O_EXCL on existing "+p)
	}
	wantContent(t, fsys, "f", []byte("keep"))
	if _, err := fsys.Lstat("nowhere"); err == nil {
		t.Error("O_EXCL followed the dangling symlink and created its target")
	}
}

func openTruncEmpties(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", pattern(10000, 1))
	f, err := fsys.OpenFile("f", unix.O_WRONLY|unix.O_TRUNC, 0)
	ok(t, err)
	defer f.Close()
	if a := stat(t, fsys, "f"); a.Size != 0 {
		t.Errorf("size %d after open with O_TRUNC, want 0", a.Size)
	}
	_, err = f.WriteAt([]byte("new"), 0)
	ok(t, err)
	ok(t, f.Close())
	wantContent(t, fsys, "f", []byte("new"))
}

func truncateGrowsAndShrinks(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("hello"))
	ok(t, fsys.Truncate("f", 10000))
	want := append([]byte("hello"), make([]byte, 10000-5)...)
	wantContent(t, fsys, "f", want)
	ok(t, fsys.Truncate("f", 3))
	wantContent(t, fsys, "f", []byte("hel"))
	// Growing again must not resurrect the bytes cut off.
	ok(t, fsys.Truncate("f", 5))
	wantContent(t, fsys, "f", []byte("hel\x00\x00"))

	f, err := fsys.OpenFile("f", unix.O_RDWR, 0)
	ok(t, err)
	defer f.Close()
	ok(t, f.Truncate(1))
	a, err := f.Stat()
	ok(t, err)
	if a.Size != 1 {
		t.Errorf("size %d after ftruncate to 1", a.Size)
	}
	wantErr(t, fsys.Truncate("f", -1), syscall.EINVAL, "truncate to -1")
	ok(t, fsys.Mkdir("d", 0o755))
	wantErr(t, fsys.Truncate("d", 0), syscall.EISDIR, "truncate a directory")
}

func fallocateAndPunchHole(t *testing.T, fsys FS) {
	const mib = 1 << 20
	f, err := fsys.OpenFile("f", unix.O_RDWR|unix.O_CREAT, 0o644)
	ok(t, err)
	defer f.Close()
	ok(t, f.Fallocate(0, 0, mib))
	a, err := f.Stat()
	ok(t, err)
	if a.Size != mib || a.Blocks*512 < mib {
		t.Errorf("after fallocate of 1 MiB: size %d, %d bytes allocated", a.Size, a.Blocks*512)
	}
	ok(t, f.Fallocate(unix.FALLOC_FL_KEEP_SIZE, mib, mib))
	if a, err = f.Stat(); err != nil || a.Size != mib || a.Blocks*512 < 2*mib {
		t.Errorf("after fallocate KEEP_SIZE past the end: size %d, %d bytes allocated, %v; want size 1 MiB, 2 MiB allocated", a.Size, a.Blocks*512, err)
	}
	data := pattern(64<<10, 3)
	_, err = f.WriteAt(data, 0)
	ok(t, err)
	ok(t, f.Fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192))
	clear(data[4096 : 4096+8192])
	got := make([]byte, len(data))
	_, err = f.ReadAt(got, 0)
	ok(t, err)
	if !bytes.Equal(got, data) {
		t.Error("punched range does not read back as zeros, or its neighbours changed")
	}
	if a, err = f.Stat(); err != nil || a.Size != mib {
		t.Errorf("size %d after punching a hole, %v; want 1 MiB", a.Size, err)
	}
}

func seekDataAndHole(t *testing.T, fsys FS) {
	const mib = 1 << 20
	f, err := fsys.OpenFile("f", unix.O_RDWR|unix.O_CREAT, 0o644)
	ok(t, err)
	defer f.Close()
	_, err = f.WriteAt(pattern(4096, 0), 0)
	ok(t, err)
	_, err = f.WriteAt(pattern(4096, 1), mib)
	ok(t, err)
	size := int64(mib + 4096)

	seek := func(off int64, whence int) (int64, error) {
		t.Helper()
		return f.Seek(off, whence)
	}
	if n, err := seek(0, unix.SEEK_DATA); err != nil || n != 0 {
		t.Errorf("SEEK_DATA from 0: %d, %v; want 0", n, err)
	}
	hole, err := seek(0, unix.SEEK_HOLE)
	if err != nil || hole < 4096 || hole >= mib {
		t.Errorf("SEEK_HOLE from 0: %d, %v; want a hole in [4096, 1 MiB)", hole, err)
	}
	if n, err := seek(8192, unix.SEEK_DATA); err != nil || n != mib {
		t.Errorf("SEEK_DATA from 8192: %d, %v; want %d", n, err, mib)
	}
	if n, err := seek(mib, unix.SEEK_HOLE); err != nil || n != size {
		t.Errorf("SEEK_HOLE from the last data: %d, %v; want end of file %d", n, err, size)
	}
	_, err = seek(size, unix.SEEK_DATA)
	wantErr(t, err, syscall.ENXIO, "SEEK_DATA at end of file")
	_, err = seek(size+1, unix.SEEK_HOLE)
	wantErr(t, err, syscall.ENXIO, "SEEK_HOLE past end of file")
}

func fsyncSucceeds(t *testing.T, fsys FS) {
	f, err := fsys.OpenFile("f", unix.O_RDWR|unix.O_CREAT, 0o644)
	ok(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("durable"), 0)
	ok(t, err)
	ok(t, f.Sync())
	ok(t, f.Close())
	r, err := fsys.OpenFile("f", unix.O_RDONLY, 0)
	ok(t, err)
	defer r.Close()
	ok(t, r.Sync())
}

func unlinkWhileOpenKeepsData(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("still here"))
	f, err := fsys.OpenFile("f", unix.O_RDWR, 0)
	ok(t, err)
	defer f.Close()
	ok(t, fsys.Unlink("f"))
	_, err = fsys.Lstat("f")
	wantErr(t, err, syscall.ENOENT, "lstat after unlink")

	buf := make([]byte, 10)
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "still here" {
		t.Errorf("read after unlink: %q, %v", buf[:n], err)
	}
	_, err = f.WriteAt([]byte(", and more"), 10)
	ok(t, err)
	buf = make([]byte, 30)
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "still here, and more" {
		t.Errorf("read back after writing to the unlinked file: %q, %v", buf[:n], err)
	}
	if a, err := f.Stat(); err != nil || a.Size != 20 {
		t.Errorf("fstat of the unlinked file: size %d, %v; want 20", a.Size, err)
	}
	// The name is free for a new, unrelated file.
	writeFile(t, fsys, "f", []byte("new"))
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "still here, and more" {
		t.Errorf("the new file changed the unlinked one: %q, %v", buf[:n], err)
	}
	ok(t, f.Close())
	wantContent(t, fsys, "f", []byte("new"))
}

func missingPathENOENT(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	open := func(p string, flags int) error {
		f, err := fsys.OpenFile(p, flags, 0o644)
		if err == nil {
			f.Close()
		}
		return err
	}
	for what, err := range map[string]error{
		"stat":               func() error { _, err := fsys.Stat("d/missing"); return err }(),
		"lstat":              func() error { _, err := fsys.Lstat("d/missing"); return err }(),
		"open":               open("d/missing", unix.O_RDONLY),
		"create in missing":  open("missing/f", unix.O_WRONLY|unix.O_CREAT),
		"mkdir in missing":   fsys.Mkdir("missing/d", 0o755),
		"unlink":             fsys.Unlink("d/missing"),
		"rmdir":              fsys.Rmdir("d/missing"),
		"rename from":        fsys.Rename("d/missing", "d/x", 0),
		"link from":          fsys.Link("d/missing", "d/x"),
		"readlink":           func() error { _, err := fsys.Readlink("d/missing"); return err }(),
		"chmod":              fsys.Chmod("d/missing", 0o644),
		"chown":              fsys.Chown("d/missing", 1, 1),
		"truncate":           fsys.Truncate("d/missing", 0),
		"readdir":            func() error { _, err := fsys.ReadDir("d/missing"); return err }(),
		"getxattr":           func() error { _, err := fsys.Getxattr("d/missing", "user.x"); return err }(),
		"setxattr":           fsys.Setxattr("d/missing", "user.x", []byte("v"), 0),
		"access":             fsys.Access("d/missing", unix.F_OK),
		"symlink in missing": fsys.Symlink("t", "missing/l"),
	} {
		wantErr(t, err, syscall.ENOENT, what)
	}
}
