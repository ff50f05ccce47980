package posix

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// refuses reports whether the filesystem of dir refuses an n-byte
// xattr value, so that the store must spill it. The tests expect
// spills exactly then.
func refuses(t *testing.T, dir string, n int) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	switch err := unix.Setxattr(f.Name(), "user.probe", make([]byte, n), 0); err {
	case nil:
		t.Logf("the brick filesystem stores %d-byte values itself: nothing spills", n)
		return false
	case unix.ENOSPC, unix.E2BIG:
		return true
	default:
		t.Fatalf("probing xattr support: %v", err)
		return false
	}
}

func (b *brick) spillDir(g xl.GFID) string {
	return filepath.Join(b.dir, ".gluon", "xattrs", bucketPath(g))
}

func (b *brick) hasSpillDir(g xl.GFID) bool {
	_, err := os.Lstat(b.spillDir(g))
	return err == nil
}

// onDisk reports where name of the object at path is: on the object
// itself, and as a spill file with its marker.
func (b *brick) onDisk(path string, g xl.GFID, name string) (native, spilled bool) {
	b.t.Helper()
	_, err := unix.Lgetxattr(path, name, nil)
	native = err == nil
	_, ferr := os.Lstat(filepath.Join(b.spillDir(g), spillKey(name)))
	_, merr := unix.Lgetxattr(path, spillPrefix+spillKey(name), nil)
	if (ferr == nil) != (merr == nil) {
		b.t.Fatalf("%s: spill file %v but marker %v", name, ferr, merr)
	}
	return native, merr == nil
}

func (b *brick) wantXattr(g xl.GFID, name string, w []byte) {
	b.t.Helper()
	got, e := b.Getxattr(bg, g, name)
	ok(b.t, e)
	if !bytes.Equal(got, w) {
		b.t.Fatalf("%s: got %d bytes, want %d", name, len(got), len(w))
	}
}

func (b *brick) wantList(g xl.GFID, w ...string) {
	b.t.Helper()
	names, e := b.Listxattr(bg, g)
	ok(b.t, e)
	slices.Sort(names)
	if !slices.Equal(names, w) {
		b.t.Fatalf("listxattr %q, want %q", names, w)
	}
}

func TestXattrSpill(t *testing.T) {
	b := newBrick(t)
	spills := refuses(t, b.dir, 64<<10)
	g := b.file(xl.RootGFID, "f", "")
	h := b.handlePath(g)
	// placed checks where name is: spilled when large and the filesystem
	// refuses large values, else on the object.
	placed := func(name string, large bool) {
		t.Helper()
		native, spilled := b.onDisk(h, g, name)
		if wantSpilled := large && spills; native == wantSpilled || spilled != wantSpilled {
			t.Fatalf("%s: on the object %v, spilled %v; want spilled %v", name, native, spilled, wantSpilled)
		}
	}
	big, big2 := pattern(64<<10, 1), pattern(60<<10, 2)

	ok(t, b.Setxattr(bg, g, "user.big", big, 0))
	b.wantXattr(g, "user.big", big)
	placed("user.big", true)
	b.wantList(g, "user.big")

	want(t, b.Setxattr(bg, g, "user.big", big2, unix.XATTR_CREATE), syscall.EEXIST)
	want(t, b.Setxattr(bg, g, "user.big", []byte("s"), unix.XATTR_CREATE), syscall.EEXIST)
	want(t, b.Setxattr(bg, g, "user.none", big, unix.XATTR_REPLACE), syscall.ENODATA)
	_, e := b.Getxattr(bg, g, "user.none")
	want(t, e, syscall.ENODATA)
	if b.hasSpillDir(g) {
		if ents, _ := os.ReadDir(b.spillDir(g)); len(ents) != 1 {
			t.Errorf("refused sets left spill files: %v", ents)
		}
	}

	// Large to small to large, with and without flags.
	ok(t, b.Setxattr(bg, g, "user.big", []byte("s"), unix.XATTR_REPLACE))
	b.wantXattr(g, "user.big", []byte("s"))
	placed("user.big", false)
	ok(t, b.Setxattr(bg, g, "user.big", big2, unix.XATTR_REPLACE))
	b.wantXattr(g, "user.big", big2)
	placed("user.big", true)
	ok(t, b.Setxattr(bg, g, "user.big", big, 0))
	b.wantXattr(g, "user.big", big)
	placed("user.big", true)
	ok(t, b.Setxattr(bg, g, "user.new", big2, unix.XATTR_CREATE))
	want(t, b.Setxattr(bg, g, "user.new", big2, unix.XATTR_CREATE), syscall.EEXIST)
	b.wantXattr(g, "user.new", big2)

	// The markers are the store's: hidden and untouchable.
	marker := spillPrefix + spillKey("user.big")
	_, e = b.Getxattr(bg, g, marker)
	want(t, e, syscall.ENODATA)
	want(t, b.Setxattr(bg, g, marker, []byte("user.x"), 0), syscall.EPERM)
	want(t, b.Removexattr(bg, g, marker), syscall.EPERM)
	b.wantList(g, "user.big", "user.new")

	b = b.reopen()
	b.wantXattr(g, "user.big", big)
	b.wantXattr(g, "user.new", big2)
	b.wantList(g, "user.big", "user.new")

	ok(t, b.Removexattr(bg, g, "user.big"))
	_, e = b.Getxattr(bg, g, "user.big")
	want(t, e, syscall.ENODATA)
	if native, spilled := b.onDisk(h, g, "user.big"); native || spilled {
		t.Errorf("removed value left: on the object %v, spilled %v", native, spilled)
	}
	want(t, b.Removexattr(bg, g, "user.big"), syscall.ENODATA)
	b.wantList(g, "user.new")

	// Hard links share the spills, which go with the last name.
	_, e = b.Link(bg, g, xl.RootGFID, "l")
	ok(t, e)
	ok(t, b.Unlink(bg, xl.RootGFID, "f"))
	b.wantXattr(g, "user.new", big2)
	if spills && !b.hasSpillDir(g) {
		t.Fatal("spills dropped with a name that was not the last")
	}
	ok(t, b.Unlink(bg, xl.RootGFID, "l"))
	if b.hasSpillDir(g) {
		t.Error("spills survive the last unlink")
	}
}

// Spills go with their object however it goes.
func TestXattrSpillRemovedWithObject(t *testing.T) {
	b := newBrick(t)
	spills := refuses(t, b.dir, 64<<10)
	big := pattern(64<<10, 3)
	spilled := func(g xl.GFID) {
		t.Helper()
		ok(t, b.Setxattr(bg, g, "user.big", big, 0))
		if spills && !b.hasSpillDir(g) {
			t.Fatalf("%v: no spills", g)
		}
	}
	gone := func(what string, g xl.GFID) {
		t.Helper()
		if b.hasSpillDir(g) {
			t.Errorf("%s: spills survive", what)
		}
	}

	d := b.mkdir(xl.RootGFID, "d")
	spilled(d)
	b.wantXattr(d, "user.big", big)
	ok(t, b.Rmdir(bg, xl.RootGFID, "d"))
	gone("rmdir", d)

	fd, _ := b.create(xl.RootGFID, "open")
	spilled(fd.GFID)
	ok(t, b.Unlink(bg, xl.RootGFID, "open"))
	b.wantXattr(fd.GFID, "user.big", big) // still open
	ok(t, b.Release(bg, fd))
	gone("release after unlink", fd.GFID)

	victim := b.file(xl.RootGFID, "victim", "")
	spilled(victim)
	b.file(xl.RootGFID, "other", "")
	ok(t, b.Rename(bg, xl.RootGFID, "other", xl.RootGFID, "victim", 0))
	gone("rename over", victim)

	vd := b.mkdir(xl.RootGFID, "vd")
	spilled(vd)
	b.mkdir(xl.RootGFID, "od")
	ok(t, b.Rename(bg, xl.RootGFID, "od", xl.RootGFID, "vd", 0))
	gone("rename over a directory", vd)

	fd, _ = b.create(xl.RootGFID, "closed")
	spilled(fd.GFID)
	ok(t, b.Unlink(bg, xl.RootGFID, "closed"))
	lost := b.file(xl.RootGFID, "lost", "")
	spilled(lost)
	keep := b.file(xl.RootGFID, "keep", "")
	spilled(keep)
	spilled(xl.RootGFID)
	os.Remove(filepath.Join(b.dir, "lost")) // behind the store's back
	b = b.reopen()
	gone("close while open and unlinked", fd.GFID)
	gone("gc of an orphaned handle", lost)
	b.wantXattr(keep, "user.big", big)
	b.wantXattr(xl.RootGFID, "user.big", big)
	if spills {
		b.wantLogged("removed spilled xattrs of vanished objects")
	}
}

// Several values that each fit may together overflow ext4's block: the
// ones refused spill as well.
func TestXattrSpillFullBlock(t *testing.T) {
	b := newBrick(t)
	g := b.file(xl.RootGFID, "f", "")
	var names []string
	for i := range 8 {
		name := "user.v" + string(rune('0'+i))
		ok(t, b.Setxattr(bg, g, name, pattern(3000, byte(i)), 0))
		names = append(names, name)
	}
	for i, name := range names {
		b.wantXattr(g, name, pattern(3000, byte(i)))
	}
	b.wantList(g, names...)
	if refuses(t, b.dir, 8*3000) && !b.hasSpillDir(g) {
		t.Error("nothing spilled")
	}
	// A symlink takes trusted.* values, spilled or not.
	ln, e := b.Symlink(bg, xl.RootGFID, "ln", xl.NewGFID(), "f")
	ok(t, e)
	big := pattern(64<<10, 9)
	ok(t, b.Setxattr(bg, ln.GFID, "trusted.big", big, 0))
	b.wantXattr(ln.GFID, "trusted.big", big)
	want(t, b.Setxattr(bg, ln.GFID, "user.big", big, 0), syscall.EPERM)
	b.wantList(ln.GFID, "trusted.big")
}

// After a crash a name can be both on the object and spilled; the
// object's value wins and removal clears both. A spill file lost
// behind the store's back is an I/O error, not silence.
func TestXattrSpillCrashStates(t *testing.T) {
	b := newBrick(t)
	if !refuses(t, b.dir, 64<<10) {
		return // these states arise only where values spill
	}
	g := b.file(xl.RootGFID, "f", "")
	ok(t, b.Setxattr(bg, g, "user.big", pattern(64<<10, 1), 0))
	if err := unix.Lsetxattr(b.handlePath(g), "user.big", []byte("native"), 0); err != nil {
		t.Fatal(err)
	}
	b.wantXattr(g, "user.big", []byte("native"))
	b.wantList(g, "user.big")
	ok(t, b.Removexattr(bg, g, "user.big"))
	_, e := b.Getxattr(bg, g, "user.big")
	want(t, e, syscall.ENODATA)

	ok(t, b.Setxattr(bg, g, "user.lost", pattern(64<<10, 2), 0))
	if err := os.Remove(filepath.Join(b.spillDir(g), spillKey("user.lost"))); err != nil {
		t.Fatal(err)
	}
	_, e = b.Getxattr(bg, g, "user.lost")
	want(t, e, syscall.EIO)
	b.wantLogged("spilled xattr value is missing")
	ok(t, b.Removexattr(bg, g, "user.lost"))
	b.wantList(g)
}

// Readers racing with values moving between the object and a spill
// file see the old or the new value, never none.
func TestXattrSpillConcurrent(t *testing.T) {
	b := newBrick(t)
	g := b.file(xl.RootGFID, "f", "")
	small, big := []byte("small"), pattern(64<<10, 5)
	ok(t, b.Setxattr(bg, g, "user.x", small, 0))
	const rounds = 100
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	fail := func(msg string) {
		select {
		case errs <- msg:
		default:
		}
	}
	wg.Go(func() {
		for i := range rounds {
			v := small
			if i%2 == 0 {
				v = big
			}
			if e := b.Setxattr(bg, g, "user.x", v, unix.XATTR_REPLACE); e != 0 {
				fail(fmt.Sprintf("setxattr: %v", e))
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for range rounds {
				v, e := b.Getxattr(bg, g, "user.x")
				if e != 0 || !bytes.Equal(v, small) && !bytes.Equal(v, big) {
					fail(fmt.Sprintf("getxattr: %d bytes, %v", len(v), e))
				}
				names, e := b.Listxattr(bg, g)
				if e != 0 || !slices.Equal(names, []string{"user.x"}) {
					fail(fmt.Sprintf("listxattr: %q, %v", names, e))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

// Readdir tells which entries have no client xattr, so that clients can
// answer getxattr of them without asking; the store's own xattrs do not
// count, a spilled value does.
func TestReaddirNoXattrs(t *testing.T) {
	for _, at := range []bool{true, false} {
		t.Run(map[bool]string{true: "getxattrat", false: "proc"}[at], func(t *testing.T) {
			b := newBrick(t)
			b.xattrAt = b.xattrAt && at
			d := b.mkdir(xl.RootGFID, "d")
			plain := b.file(d, "plain", "x")
			user := b.file(d, "user", "")
			ok(t, b.Setxattr(bg, user, "user.k", []byte("v"), 0))
			trusted := b.file(d, "trusted", "")
			ok(t, b.Setxattr(bg, trusted, "trusted.other", []byte("v"), 0))
			sub := b.mkdir(d, "sub")
			_, e := b.Symlink(bg, d, "ln", xl.NewGFID(), "plain")
			ok(t, e)
			// A directory made in one with a default ACL inherits it from
			// the kernel, without a Setxattr.
			acl := b.mkdir(d, "acl")
			ok(t, b.Setxattr(bg, acl, "system.posix_acl_default", minimalACL(), 0))
			b.mkdir(acl, "inherits")
			// A file made in one with a minimal default ACL gets only the
			// mode from it; in one with a named user's entry, an access
			// ACL, whether Create or Mknod made it.
			b.file(acl, "file", "")
			named := b.mkdir(d, "named")
			ok(t, b.Setxattr(bg, named, "system.posix_acl_default", namedUserACL(), 0))
			b.file(named, "created", "")
			_, e = b.Mknod(bg, named, "mknod", xl.NewGFID(), syscall.S_IFREG|0o644, 0)
			ok(t, e)
			_, e = b.Mknod(bg, named, "fifo", xl.NewGFID(), syscall.S_IFIFO|0o644, 0)
			ok(t, e)
			// A minimal access ACL sets the mode and stores nothing.
			minimal := b.file(d, "minimal", "")
			ok(t, b.Setxattr(bg, minimal, "system.posix_acl_access", minimalACL(), 0))
			// A failed Setxattr leaves the flags as they were, as on
			// replicas that never tried it.
			failed := b.file(d, "failed", "")
			want(t, b.Setxattr(bg, failed, "user.none", []byte("v"), unix.XATTR_REPLACE), syscall.ENODATA)
			// A crash after the flag is set and before the value is
			// written leaves it set in vain, which is safe.
			crashed := b.file(d, "crashed", "")
			o, e := b.obj(crashed)
			ok(t, e)
			if _, e := b.flagXattrs(&o); e != 0 {
				t.Fatal(e)
			}
			o.put()

			check := func(dir xl.GFID, step string, w map[string]bool) {
				t.Helper()
				got := b.noXattrs(dir)
				for name, nox := range w {
					if got[name] != nox {
						t.Errorf("%s: %s NoXattrs %v, want %v", step, name, got[name], nox)
					}
				}
			}
			check(d, "start", map[string]bool{"plain": true, "ln": true, "sub": true, "user": false, "trusted": false, "acl": false, "named": false, "minimal": true, "failed": true, "crashed": false})
			check(acl, "start", map[string]bool{"inherits": false, "file": true})
			check(named, "start", map[string]bool{"created": false, "mknod": false, "fifo": false})

			ok(t, b.Setxattr(bg, plain, "user.new", []byte("v"), 0))
			ok(t, b.Setxattr(bg, sub, "user.new", []byte("v"), 0))
			ok(t, b.Removexattr(bg, user, "user.k"))
			check(d, "after set and remove", map[string]bool{"plain": false, "sub": false, "user": true})
			ok(t, b.Removexattr(bg, trusted, "trusted.other"))
			ok(t, b.Removexattr(bg, acl, "system.posix_acl_default"))
			// Removing what is not there clears a flag set in vain.
			want(t, b.Removexattr(bg, crashed, "user.none"), syscall.ENODATA)
			check(d, "after removing the last", map[string]bool{"trusted": true, "acl": true, "crashed": true})
		})
	}
}

// Objects labelled before the gfid xattr carried flags have their
// xattrs listed, so a brick from before stays right: a spill marker
// counts, the store's own xattrs do not, and a Setxattr leaves them so.
func TestReaddirNoXattrsUnflagged(t *testing.T) {
	for _, at := range []bool{true, false} {
		t.Run(map[bool]string{true: "getxattrat", false: "proc"}[at], func(t *testing.T) {
			b := newBrick(t)
			b.xattrAt = b.xattrAt && at
			d := b.mkdir(xl.RootGFID, "d")
			names := []string{"plain", "user", "behind", "spilled", "later", "sub"}
			gs := make(map[string]xl.GFID)
			for _, name := range names[:5] {
				gs[name] = b.file(d, name, "")
			}
			gs["sub"] = b.mkdir(d, "sub")
			ok(t, b.Setxattr(bg, gs["user"], "user.k", []byte("v"), 0))
			for _, name := range names {
				b.unflag(filepath.Join(b.dir, "d", name))
			}
			// Set behind the store's back, or spilled by a brick from
			// before: only a listing finds them.
			if err := unix.Lsetxattr(b.handlePath(gs["behind"]), "user.k", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			if err := unix.Lsetxattr(b.handlePath(gs["spilled"]), spillPrefix+spillKey("user.big"), []byte("user.big"), 0); err != nil {
				t.Fatal(err)
			}
			ok(t, b.Setxattr(bg, gs["later"], "user.k", []byte("v"), 0))
			got := b.noXattrs(d)
			for name, nox := range map[string]bool{"plain": true, "sub": true, "user": false, "behind": false, "spilled": false, "later": false} {
				if got[name] != nox {
					t.Errorf("%s NoXattrs %v, want %v", name, got[name], nox)
				}
			}
			ok(t, b.Removexattr(bg, gs["later"], "user.k"))
			if !b.noXattrs(d)["later"] {
				t.Error("later NoXattrs false after its only xattr went")
			}
			// Everything else about them works as before.
			for _, name := range names {
				a, e := b.Lookup(bg, d, name)
				ok(t, e)
				if a.GFID != gs[name] {
					t.Errorf("%s: gfid %v, want %v", name, a.GFID, gs[name])
				}
				var v gfidValue
				n, err := unix.Lgetxattr(filepath.Join(b.dir, "d", name), gfidXattr, v[:])
				if _, f, err := v.parse(n, err); err != nil || f != unknownFlags {
					t.Errorf("%s: gfid flags %#x, %v; want none still", name, f, err)
				}
			}
			fd, e := b.Open(bg, gs["user"], uint32(os.O_RDWR))
			ok(t, e)
			ok(t, b.Release(bg, fd))
		})
	}
}

// noXattrs lists dir and returns each entry's NoXattrs.
func (b *brick) noXattrs(dir xl.GFID) map[string]bool {
	b.t.Helper()
	fd, e := b.Opendir(bg, dir)
	ok(b.t, e)
	defer b.Releasedir(bg, fd)
	got := make(map[string]bool)
	for _, de := range b.readdirAll(fd, 3) {
		got[de.Name] = de.NoXattrs
	}
	return got
}

// unflag rewrites the gfid xattr of path as a brick from before the
// flags labelled it: the gfid alone.
func (b *brick) unflag(path string) {
	b.t.Helper()
	var v gfidValue
	n, err := unix.Lgetxattr(path, gfidXattr, v[:])
	g, _, err := v.parse(n, err)
	if err == nil {
		err = unix.Lsetxattr(path, gfidXattr, g[:], unix.XATTR_REPLACE)
	}
	if err != nil {
		b.t.Fatal(err)
	}
}

// aclEntry is an entry of an ACL's xattr form: its tag, permissions and
// the id of a named user or group.
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// undefinedID is the id of the entries that name no one.
const undefinedID = 0xffffffff

// minimalACL is the xattr form of the ACL u::rwx,g::r-x,o::r-x.
func minimalACL() []byte {
	return aclXattr([]aclEntry{{0x01, 7, undefinedID}, {0x04, 5, undefinedID}, {0x20, 5, undefinedID}})
}

// namedUserACL is the xattr form of u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x.
func namedUserACL() []byte {
	return aclXattr([]aclEntry{{0x01, 7, undefinedID}, {0x02, 7, 1000}, {0x04, 5, undefinedID}, {0x10, 7, undefinedID}, {0x20, 5, undefinedID}})
}

func aclXattr(ents []aclEntry) []byte {
	v := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range ents {
		v = binary.LittleEndian.AppendUint16(v, e.tag)
		v = binary.LittleEndian.AppendUint16(v, e.perm)
		v = binary.LittleEndian.AppendUint32(v, e.id)
	}
	return v
}
