package dht2

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Two-step entry ops. A name in directory P whose inode carries another
// token than P's is remote: P's home holds a stub (an empty regular file,
// or an empty directory for a directory, see stubGFID) and the inode's
// home holds the inode under its bucket of the anchor directory, named
// key(inode, P, name). A remote name is visible only while both halves
// exist, so every op makes the half that is not yet visible first and
// switches visibility with one op on one set:
//
//	mkdir   anchor dir, then stub                     crash: orphan inode
//	link    stub, then anchor link                    crash: dangling stub
//	unlink  probe P, anchor name, then stub           crash: dangling stub
//	rmdir   probe P, anchor dir, then stub            crash: dangling stub
//	rename  new stub, anchor rename, then old stub    crash: dangling stub
//
// Lookup and Readdir hide a stub whose anchor name is missing; Scrub
// removes both kinds of leftovers.

// AnchorName is the directory in each set's root that holds inodes whose
// names live on other sets. DHT2 hides it.
const AnchorName = ".dht2"

// AnchorGFID is the anchor directory's GFID on every set. Inodes sit one
// level below, in their token's bucket.
var AnchorGFID = xl.GFID{0: 0xff, 1: 0xff, 2: 0xd4, 3: 0x72, 15: 0x0d}

// stubMode is a stub's mode: an empty regular file nobody may open.
const stubMode = syscall.S_IFREG

// A stub's own GFID is its inode's with everything but the token masked
// by a hash of the stub's parent and name: unique per name, so several
// names of one inode (and the inode itself) can live on one set, and
// reversible by whoever knows where the stub is. The token stays the
// inode's, which is how a stub is told from a local name: its token is
// not its parent's.
func stubGFID(g, parent xl.GFID, name string) xl.GFID {
	m := stubMask(parent, name)
	for i := 2; i < len(g); i++ {
		g[i] ^= m[i]
	}
	return g
}

// stubTarget is the inode a stub at (parent, name) names.
func stubTarget(s, parent xl.GFID, name string) xl.GFID { return stubGFID(s, parent, name) }

func stubMask(parent xl.GFID, name string) (m [16]byte) {
	h := xxhash.New()
	h.Write(parent[:])
	h.WriteString(name)
	binary.BigEndian.PutUint64(m[0:], h.Sum64())
	h.Write([]byte{0})
	binary.BigEndian.PutUint64(m[8:], h.Sum64())
	return m
}

// anchorKey names inode g's anchor entry for its name in parent.
func anchorKey(g, parent xl.GFID, name string) string {
	return hashedKey(g, parent, nameHash(name))
}

// nameHash is the part of an anchor key that stands for the name.
func nameHash(name string) uint64 { return xxhash.Sum64String(name) }

// hashedKey is anchorKey with the name's hash given.
func hashedKey(g, parent xl.GFID, hash uint64) string {
	b := make([]byte, 0, 36+1+36+1+16)
	b = append(b, g.String()...)
	b = append(b, '.')
	b = append(b, parent.String()...)
	b = append(b, '.')
	return string(strconv.AppendUint(b, hash, 16))
}

// parseKey splits an anchor entry's name.
func parseKey(k string) (g, parent xl.GFID, hash uint64, ok bool) {
	if len(k) < 36+1+36+2 || k[36] != '.' || k[73] != '.' {
		return g, parent, 0, false
	}
	var err error
	if g, err = xl.ParseGFID(k[:36]); err != nil {
		return g, parent, 0, false
	}
	if parent, err = xl.ParseGFID(k[37:73]); err != nil {
		return g, parent, 0, false
	}
	h, err := strconv.ParseUint(k[74:], 16, 64)
	return g, parent, h, err == nil
}

// bucket is token t's directory in the anchor, AnchorName/<t>>8 as %02x>:
// a token's remote inodes are listed, migrated and scrubbed with those of
// 255 other tokens rather than with all of the set's. (A bucket per token
// would cost 65,536 directories per set, or a first mkdir in each.)
func bucket(t uint16) xl.GFID {
	g := AnchorGFID
	g[4], g[15] = byte(t>>8), 0x0e
	return g
}

// buckets is how many buckets the anchor holds.
const buckets = 256

// inAnchorFamily reports whether g is the anchor or one of its buckets.
func inAnchorFamily(g xl.GFID) bool {
	return g == AnchorGFID || g == bucket(uint16(g[4])<<8)
}

// anchor makes sure set i has the anchor and token t's bucket.
func (d *DHT2) anchor(ctx context.Context, i int, t uint16) syscall.Errno {
	if d.anchored[i][t>>8].Load() {
		return 0
	}
	root := asRoot(ctx)
	x := d.subs[i]
	if !d.anchorMade[i].Load() {
		if e := ensureDir(root, x, xl.RootGFID, AnchorName, AnchorGFID); e != 0 {
			d.log.Error("dht2: anchor", "set", i, "errno", e)
			return e
		}
		d.anchorMade[i].Store(true)
	}
	if e := ensureDir(root, x, AnchorGFID, fmt.Sprintf("%02x", t>>8), bucket(t)); e != 0 {
		d.log.Error("dht2: anchor bucket", "set", i, "token", t, "errno", e)
		return e
	}
	d.anchored[i][t>>8].Store(true)
	return 0
}

// anchorMode lets every caller make, look up and remove inodes in the
// anchor: the sets check the caller's permissions against the anchor, and
// DHT2 asks the name's own directory first (see probe).
const anchorMode = 0o777

// ensureDir makes sure name in parent is the directory g. It asks by GFID
// first: a lookup by name of a directory another client is making could
// find it before it is labelled, and the store would adopt it under a
// GFID of its own.
func ensureDir(ctx context.Context, x xl.Xlator, parent xl.GFID, name string, g xl.GFID) syscall.Errno {
	a, e := x.Getattr(ctx, g)
	if e != 0 {
		a, e = x.Mkdir(ctx, parent, name, g, anchorMode)
	}
	for n := 0; e == syscall.EEXIST && n < 50; n++ {
		// Being made by another client, or made: wait for its label.
		time.Sleep(time.Millisecond)
		a, e = x.Getattr(ctx, g)
		if e == syscall.ESTALE {
			e = syscall.EEXIST
		}
	}
	if e == syscall.EEXIST {
		a, e = x.Lookup(ctx, parent, name)
	}
	if e != 0 {
		return e
	}
	if a.GFID != g || !a.IsDir() {
		return syscall.EIO
	}
	return 0
}

// inAnchor runs f on the home of g's token, with g's bucket there.
func (d *DHT2) inAnchor(ctx context.Context, g xl.GFID, f func(x xl.Xlator, b xl.GFID) syscall.Errno) syscall.Errno {
	t := TokenOf(g)
	return d.on(ctx, t, func(i int, x xl.Xlator) syscall.Errno {
		if e := d.anchor(ctx, i, t); e != 0 {
			return e
		}
		return f(x, bucket(t))
	})
}

// remoteAttr resolves the stub (parent, name) -> g through g's anchor
// entry; ENOENT means the name dangles. It only reads: a missing bucket
// (ESTALE) means a dangling name as well, so it is not made first.
func (d *DHT2) remoteAttr(ctx context.Context, parent xl.GFID, name string, g xl.GFID) (a xl.Attr, e syscall.Errno) {
	k, b := anchorKey(g, parent, name), bucket(TokenOf(g))
	e = d.at(ctx, g, func(x xl.Xlator) (e syscall.Errno) { a, e = x.Lookup(ctx, b, k); return })
	if e == 0 && a.GFID != g {
		e = syscall.ENOENT
	}
	return
}

// entry is what a name in a directory refers to.
type entry struct {
	attr   xl.Attr // the stub's attributes if remote
	remote bool
}

func (d *DHT2) entry(ctx context.Context, parent xl.GFID, name string) (en entry, e syscall.Errno) {
	if parent == xl.RootGFID && name == AnchorName {
		return en, syscall.ENOENT
	}
	e = d.at(ctx, parent, func(x xl.Xlator) (e syscall.Errno) { en.attr, e = x.Lookup(ctx, parent, name); return })
	if en.remote = e == 0 && TokenOf(en.attr.GFID) != TokenOf(parent); en.remote {
		en.attr.GFID = stubTarget(en.attr.GFID, parent, name)
	}
	return
}

// stub makes (parent, name) -> g on the parent's home. A directory's stub
// is an empty directory, so that the parent's link count counts it.
func (d *DHT2) stub(ctx context.Context, parent xl.GFID, name string, g xl.GFID, dir bool) syscall.Errno {
	sg := stubGFID(g, parent, name)
	return d.at(ctx, parent, func(x xl.Xlator) (e syscall.Errno) {
		if dir {
			_, e = x.Mkdir(ctx, parent, name, sg, 0o700)
		} else {
			_, e = x.Mknod(ctx, parent, name, sg, stubMode, 0)
		}
		return
	})
}

// unstub removes a stub.
func (d *DHT2) unstub(ctx context.Context, parent xl.GFID, name string, dir bool) syscall.Errno {
	return d.at(ctx, parent, func(x xl.Xlator) syscall.Errno {
		if dir {
			return x.Rmdir(ctx, parent, name)
		}
		return x.Unlink(ctx, parent, name)
	})
}

// Mkdir places the directory by the policy. Unless it draws its parent's
// token, it is made in its home's anchor and then named by a stub.
func (d *DHT2) Mkdir(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, mode uint32) (a xl.Attr, e syscall.Errno) {
	if e = reserved(parent, name); e != 0 {
		return
	}
	t := d.policy.DirToken(d.layout.Load(), parent, name, gfid)
	g := withToken(gfid, t)
	if t == TokenOf(parent) {
		mk := func(x xl.Xlator) (e syscall.Errno) { a, e = x.Mkdir(ctx, parent, name, g, mode); return }
		if e = d.at(ctx, parent, mk); e == syscall.EEXIST && d.dangling(ctx, parent, name) {
			e = d.at(ctx, parent, mk)
		}
		if e == 0 {
			d.setParent(ctx, g, parent)
		}
		return
	}
	k := anchorKey(g, parent, name)
	if e = d.inAnchor(ctx, g, func(x xl.Xlator, b xl.GFID) (e syscall.Errno) { a, e = x.Mkdir(ctx, b, k, g, mode); return }); e != 0 {
		return
	}
	d.setParent(ctx, g, parent)
	if d.crashed("mkdir") {
		return xl.Attr{}, syscall.EIO
	}
	if e = d.stub(ctx, parent, name, g, true); e == syscall.EEXIST && d.dangling(ctx, parent, name) {
		e = d.stub(ctx, parent, name, g, true)
	}
	if e != 0 {
		d.undo(ctx, g, func(x xl.Xlator, b xl.GFID) syscall.Errno { return x.Rmdir(ctx, b, k) })
		return xl.Attr{}, e
	}
	return a, 0
}

// Link names ino in newParent. Across tokens: a stub first, then the
// anchor link that makes it visible.
func (d *DHT2) Link(ctx context.Context, ino xl.GFID, newParent xl.GFID, newName string) (a xl.Attr, e syscall.Errno) {
	if e = reserved(newParent, newName); e != 0 {
		return
	}
	if TokenOf(ino) == TokenOf(newParent) {
		ln := func(x xl.Xlator) (e syscall.Errno) { a, e = x.Link(ctx, ino, newParent, newName); return }
		if e = d.at(ctx, ino, ln); e == syscall.EEXIST && d.dangling(ctx, newParent, newName) {
			e = d.at(ctx, ino, ln)
		}
		return
	}
	// Directories cannot be linked; ask before leaving a stub.
	if a, e = d.Getattr(ctx, ino); e != 0 {
		return
	}
	if a.IsDir() {
		return xl.Attr{}, syscall.EPERM
	}
	if e = d.stub(ctx, newParent, newName, ino, false); e == syscall.EEXIST && d.dangling(ctx, newParent, newName) {
		e = d.stub(ctx, newParent, newName, ino, false)
	}
	if e != 0 {
		return
	}
	if d.crashed("link") {
		return xl.Attr{}, syscall.EIO
	}
	k := anchorKey(ino, newParent, newName)
	if e = d.inAnchor(ctx, ino, func(x xl.Xlator, b xl.GFID) (e syscall.Errno) { a, e = x.Link(ctx, ino, b, k); return }); e != 0 {
		d.unstub(context.WithoutCancel(ctx), newParent, newName, false)
		return xl.Attr{}, e
	}
	return a, 0
}

func (d *DHT2) Unlink(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	return d.remove(ctx, parent, name, false)
}

func (d *DHT2) Rmdir(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	return d.remove(ctx, parent, name, true)
}

// remove drops a name: a local one on the parent's home; a remote one at
// its anchor (which checks type and emptiness), then its stub.
func (d *DHT2) remove(ctx context.Context, parent xl.GFID, name string, dir bool) syscall.Errno {
	if !dir && reserved(parent, name) == 0 {
		// Most names are local: try it as one, which the parent's Guard
		// refuses for a stub. (An rmdir must not remove a stub, which
		// would skip the emptiness check, should a set not know the
		// flag; unlink of a stub there leaves an orphan anchor name.)
		e := d.at(ctx, parent, func(x xl.Xlator) syscall.Errno { return x.Unlink(localOnly(ctx), parent, name) })
		if e != errnoRemote {
			return e
		}
	}
	en, e := d.entry(ctx, parent, name)
	if e != 0 {
		return e
	}
	if !en.remote {
		return d.at(ctx, parent, func(x xl.Xlator) syscall.Errno {
			if dir {
				return x.Rmdir(ctx, parent, name)
			}
			return x.Unlink(ctx, parent, name)
		})
	}
	if e := d.probe(ctx, parent, name); e != 0 {
		return e
	}
	g := en.attr.GFID
	k := anchorKey(g, parent, name)
	e = d.inAnchor(ctx, g, func(x xl.Xlator, b xl.GFID) syscall.Errno {
		if dir {
			return x.Rmdir(ctx, b, k)
		}
		return x.Unlink(ctx, b, k)
	})
	switch e {
	case 0:
	case syscall.ENOENT, syscall.ESTALE: // the name dangled: it was never visible
		d.unstub(asRoot(ctx), parent, name, en.attr.IsDir())
		return syscall.ENOENT
	default:
		return e
	}
	if d.crashed("remove") {
		return 0 // the name is gone; the stub dangles
	}
	if e := d.unstub(ctx, parent, name, en.attr.IsDir()); e != 0 && e != syscall.ENOENT {
		d.log.Warn("dht2: stub left dangling", "parent", parent, "name", name, "errno", e)
	}
	return 0
}

// probe asks name's directory whether the caller may remove or replace
// name there, with every rule the sets apply (write and search
// permission, the sticky bit): renaming a name onto itself changes
// nothing. The anchor, where a remote name's visibility switches, is
// writable by all, so the name's own directory must be asked first.
func (d *DHT2) probe(ctx context.Context, parent xl.GFID, name string) syscall.Errno {
	return d.at(ctx, parent, func(x xl.Xlator) syscall.Errno { return x.Rename(ctx, parent, name, parent, name, 0) })
}

// asRoot is ctx for DHT2's own housekeeping.
func asRoot(ctx context.Context) context.Context { return xl.WithCall(ctx, &xl.Call{}) }

// undo reverts a first step after the second failed; what it cannot undo
// is left to the scrubber.
func (d *DHT2) undo(ctx context.Context, g xl.GFID, f func(x xl.Xlator, b xl.GFID) syscall.Errno) {
	if e := d.inAnchor(context.WithoutCancel(ctx), g, f); e != 0 {
		d.log.Warn("dht2: left an orphan for the scrubber", "gfid", g, "errno", e)
	}
}

// crashed is the tests' crash point between two steps: when the hook says
// so, the op stops there as if the client died.
func (d *DHT2) crashed(step string) bool {
	return d.crashHook != nil && d.crashHook(step)
}

// parentXattr holds a directory's parent GFID, so that a rename can tell
// whether it would move a directory under itself: the sets' own trees do
// not show a directory's ancestry across sets.
const parentXattr = xattrPrefix + "parent"

// xattrPrefix is DHT2's namespace of xattrs, hidden from clients.
const xattrPrefix = "trusted.dht2."

// setParent records dir's parent. A directory without one (a crash right
// after its mkdir) only weakens the rename check, so failures are logged.
func (d *DHT2) setParent(ctx context.Context, dir, parent xl.GFID) {
	root := asRoot(ctx)
	e := d.at(ctx, dir, func(x xl.Xlator) syscall.Errno { return x.Setxattr(root, dir, parentXattr, parent[:], 0) })
	if e != 0 {
		d.log.Warn("dht2: recording a directory's parent", "gfid", dir, "errno", e)
	}
}

// under reports whether dir is q or one of q's ancestors.
func (d *DHT2) under(ctx context.Context, dir, q xl.GFID) (bool, syscall.Errno) {
	root := asRoot(ctx)
	for range maxDepth {
		if q == dir {
			return true, 0
		}
		if q == xl.RootGFID {
			return false, 0
		}
		var v []byte
		e := d.at(ctx, q, func(x xl.Xlator) (e syscall.Errno) { v, e = x.Getxattr(root, q, parentXattr); return })
		switch {
		case e == syscall.ENODATA:
			return false, 0
		case e != 0:
			return false, e
		case len(v) != len(q):
			return false, syscall.EIO
		}
		q = xl.GFID(v)
	}
	return false, syscall.ELOOP
}

// maxDepth bounds an ancestry walk.
const maxDepth = 4096
