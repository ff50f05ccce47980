package client_test

import (
	"bytes"
	"context"
	"slices"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// The protocol in front of the real brick store: a mount's everyday
// sequence of calls works end to end.
func TestPosixBrick(t *testing.T) {
	store, err := posix.New(t.TempDir(), posix.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := startBrick(t, store, "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})

	ctx := context.Background()
	must := func(what string, e syscall.Errno) {
		t.Helper()
		if e != 0 {
			t.Fatalf("%s: %v", what, e)
		}
	}
	dir, file := xl.NewGFID(), xl.NewGFID()
	_, e := c.Mkdir(ctx, xl.RootGFID, "d", dir, 0o755)
	must("mkdir", e)
	fd, attr, e := c.Create(ctx, dir, "f", file, syscall.O_RDWR, 0o644)
	must("create", e)
	if attr.GFID != file || attr.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Fatalf("create attr %+v", attr)
	}
	data := pattern(1<<20+123, 9)
	n, e := c.Write(ctx, fd, data, 0)
	must("write", e)
	if n != len(data) {
		t.Fatalf("wrote %d of %d", n, len(data))
	}
	must("fsync", c.Fsync(ctx, fd, false))
	dst := make([]byte, len(data)+10)
	n, e = c.Read(ctx, fd, dst, 0)
	must("read", e)
	if !bytes.Equal(dst[:n], data) {
		t.Fatalf("read back %d bytes, not what was written", n)
	}
	must("release", c.Release(ctx, fd))

	attr, e = c.Getattr(ctx, file)
	must("getattr", e)
	if attr.Size != uint64(len(data)) {
		t.Fatalf("size %d, want %d", attr.Size, len(data))
	}
	must("setxattr", c.Setxattr(ctx, file, "user.k", []byte("v"), 0))
	v, e := c.Getxattr(ctx, file, "user.k")
	must("getxattr", e)
	names, e := c.Listxattr(ctx, file)
	must("listxattr", e)
	if string(v) != "v" || !slices.Contains(names, "user.k") {
		t.Fatalf("xattr %q, names %q", v, names)
	}

	dfd, e := c.Opendir(ctx, dir)
	must("opendir", e)
	ents, e := c.Readdir(ctx, dfd, 0, 100)
	must("readdir", e)
	if !slices.ContainsFunc(ents, func(d xl.Dirent) bool { return d.Name == "f" && d.Attr.GFID == file }) {
		t.Fatalf("readdir = %+v", ents)
	}
	must("releasedir", c.Releasedir(ctx, dfd))

	must("rename", c.Rename(ctx, dir, "f", xl.RootGFID, "g", 0))
	if _, e := c.Lookup(ctx, dir, "f"); e != syscall.ENOENT {
		t.Fatalf("lookup of the old name = %v, want ENOENT", e)
	}
	attr, e = c.Lookup(ctx, xl.RootGFID, "g")
	must("lookup", e)
	if attr.GFID != file {
		t.Fatalf("renamed file has gfid %v, want %v", attr.GFID, file)
	}
	must("unlink", c.Unlink(ctx, xl.RootGFID, "g"))
	must("rmdir", c.Rmdir(ctx, xl.RootGFID, "d"))
	st, e := c.Statfs(ctx, xl.RootGFID)
	must("statfs", e)
	if st.Blocks == 0 || st.Bsize == 0 {
		t.Fatalf("statfs %+v", st)
	}
}
