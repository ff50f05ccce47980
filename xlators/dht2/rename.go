package dht2

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Rename within one token, of names whose inodes are local, is the home's
// own rename. Otherwise the name becomes (or stays, or stops being) a
// remote name: the new stub is made first, one rename on the inode's home
// switches which name is visible, and the old stub is removed last. An
// existing target is removed first, so such a replace is not atomic; nor
// is RENAME_EXCHANGE across tokens, done as three renames through a
// temporary name.
func (d *DHT2) Rename(ctx context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	if flags&^(xl.RenameNoreplace|xl.RenameExchange) != 0 || flags == xl.RenameNoreplace|xl.RenameExchange {
		return syscall.EINVAL
	}
	if e := reserved(newParent, newName); e != 0 {
		return e
	}
	src, e := d.resolve(ctx, oldParent, oldName)
	if e != 0 {
		return e
	}
	dst, e := d.resolve(ctx, newParent, newName)
	exists := e == 0
	if e != 0 && e != syscall.ENOENT {
		return e
	}
	x := src.attr.GFID
	plain := TokenOf(oldParent) == TokenOf(newParent) && !src.remote && !(exists && dst.remote)
	if flags&xl.RenameExchange != 0 {
		switch {
		case !exists:
			return syscall.ENOENT
		case plain:
		case oldParent == newParent && oldName == newName:
			return 0
		default:
			return d.exchange(ctx, oldParent, oldName, newParent, newName)
		}
	}
	if exists && dst.attr.GFID == x {
		return 0 // both names already name the same inode
	}
	if exists && flags&xl.RenameNoreplace != 0 {
		return syscall.EEXIST
	}
	dir := src.attr.IsDir()
	if dir && oldParent != newParent {
		in, e := d.under(ctx, x, newParent)
		if e != 0 {
			return e
		}
		if in {
			return syscall.EINVAL
		}
	}
	if plain {
		e := d.at(ctx, oldParent, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, oldParent, oldName, newParent, newName, flags)
		})
		if e == 0 && oldParent != newParent {
			if dir {
				d.setParent(ctx, x, newParent)
			}
			if exists && dst.attr.IsDir() && flags&xl.RenameExchange != 0 {
				d.setParent(ctx, dst.attr.GFID, oldParent)
			}
		}
		return e
	}
	if exists {
		switch {
		case dir && !dst.attr.IsDir():
			return syscall.ENOTDIR
		case !dir && dst.attr.IsDir():
			return syscall.EISDIR
		}
		if e := d.remove(ctx, newParent, newName, dst.attr.IsDir()); e != 0 && e != syscall.ENOENT {
			return e
		}
	}
	if src.remote {
		// The move switches visibility in the anchor: ask the old
		// directory first (a local name's own rename asks it).
		if e := d.probe(ctx, oldParent, oldName); e != 0 {
			return e
		}
	}
	if dir && oldParent != newParent {
		// Before the move: a crash after it must not leave the old
		// parent recorded, which could let a later rename make a loop.
		d.setParent(ctx, x, newParent)
	}
	e = d.move(ctx, src, oldParent, oldName, newParent, newName)
	if e != 0 && dir && oldParent != newParent {
		d.setParent(context.WithoutCancel(ctx), x, oldParent)
	}
	return e
}

// resolve is entry with a remote name's own attributes. A dangling stub
// is removed and reported as ENOENT.
func (d *DHT2) resolve(ctx context.Context, parent xl.GFID, name string) (entry, syscall.Errno) {
	en, e := d.entry(ctx, parent, name)
	if e != 0 || !en.remote {
		return en, e
	}
	a, e := d.remoteAttr(ctx, parent, name, en.attr.GFID)
	switch e {
	case 0:
		dirStub := en.attr.IsDir()
		en.attr = a
		if dirStub != a.IsDir() {
			d.log.Error("dht2: stub and inode differ in type", "parent", parent, "name", name, "gfid", a.GFID)
			return en, syscall.EIO
		}
		return en, 0
	case syscall.ENOENT, syscall.ESTALE:
		if e := d.unstub(asRoot(ctx), parent, name, en.attr.IsDir()); e != 0 && e != syscall.ENOENT {
			return en, e
		}
		return en, syscall.ENOENT
	}
	return en, e
}

// move renames src, known, to a free name.
func (d *DHT2) move(ctx context.Context, src entry, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string) syscall.Errno {
	x := src.attr.GFID
	dir := src.attr.IsDir()
	hx, tq := TokenOf(x), TokenOf(newParent)
	newKey := anchorKey(x, newParent, newName)
	oldKey := anchorKey(x, oldParent, oldName)
	switch {
	case !src.remote && hx == tq: // local to local: the target was a stub, now gone
		return d.at(ctx, oldParent, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, oldParent, oldName, newParent, newName, 0)
		})
	case !src.remote: // local -> remote
		if e := d.stub(ctx, newParent, newName, x, dir); e != 0 {
			return e
		}
		if d.crashed("rename") {
			return syscall.EIO
		}
		e := d.inAnchor(ctx, x, func(xx xl.Xlator, b xl.GFID) syscall.Errno {
			return xx.Rename(ctx, oldParent, oldName, b, newKey, 0)
		})
		if e != 0 {
			d.unstub(context.WithoutCancel(ctx), newParent, newName, dir)
		}
		return e
	case hx == tq: // remote -> local
		e := d.inAnchor(ctx, x, func(xx xl.Xlator, b xl.GFID) syscall.Errno {
			return xx.Rename(ctx, b, oldKey, newParent, newName, 0)
		})
		if e != 0 || d.crashed("rename") {
			return e
		}
	default: // remote -> remote
		if e := d.stub(ctx, newParent, newName, x, dir); e != 0 {
			return e
		}
		if d.crashed("rename") {
			return syscall.EIO
		}
		e := d.inAnchor(ctx, x, func(xx xl.Xlator, b xl.GFID) syscall.Errno {
			return xx.Rename(ctx, b, oldKey, b, newKey, 0)
		})
		if e != 0 {
			d.unstub(context.WithoutCancel(ctx), newParent, newName, dir)
			return e
		}
		if d.crashed("rename") {
			return 0
		}
	}
	if e := d.unstub(ctx, oldParent, oldName, dir); e != 0 && e != syscall.ENOENT {
		d.log.Warn("dht2: stub left dangling", "parent", oldParent, "name", oldName, "errno", e)
	}
	return 0
}

// exchange swaps two names through a temporary third.
func (d *DHT2) exchange(ctx context.Context, p1 xl.GFID, n1 string, p2 xl.GFID, n2 string) syscall.Errno {
	tmp := fmt.Sprintf(".dht2-exchange-%016x", rand.Uint64())
	if e := d.Rename(ctx, p1, n1, p1, tmp, xl.RenameNoreplace); e != 0 {
		return e
	}
	if e := d.Rename(ctx, p2, n2, p1, n1, xl.RenameNoreplace); e != 0 {
		d.Rename(context.WithoutCancel(ctx), p1, tmp, p1, n1, xl.RenameNoreplace)
		return e
	}
	return d.Rename(ctx, p1, tmp, p2, n2, xl.RenameNoreplace)
}
