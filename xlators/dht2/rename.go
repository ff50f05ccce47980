package dht2

import (
	"context"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Rename within one token, of a name whose inode is local, is the home's
// own rename. Otherwise the name becomes (or stays, or stops being) a
// remote name: the new stub is made first, one rename on the inode's home
// switches which name is visible, and the old stub is removed last. An
// existing target is removed first, so such a replace is not atomic, and
// RENAME_EXCHANGE across tokens is refused with EXDEV.
func (d *DHT2) Rename(ctx context.Context, oldParent xl.GFID, oldName string, newParent xl.GFID, newName string, flags uint32) syscall.Errno {
	if flags&^(xl.RenameNoreplace|xl.RenameExchange) != 0 || flags == xl.RenameNoreplace|xl.RenameExchange {
		return syscall.EINVAL
	}
	if e := reserved(newParent, newName); e != 0 {
		return e
	}
	src, e := d.entry(ctx, oldParent, oldName)
	if e != 0 {
		return e
	}
	if src.remote {
		if src.attr, e = d.remoteAttr(ctx, oldParent, oldName, src.attr.GFID); e != 0 {
			if e == syscall.ESTALE {
				e = syscall.ENOENT
			}
			return e
		}
	}
	dst, e := d.entry(ctx, newParent, newName)
	exists := e == 0
	switch {
	case e == syscall.ENOENT:
	case e != 0:
		return e
	case dst.remote:
		a, e := d.remoteAttr(ctx, newParent, newName, dst.attr.GFID)
		switch e {
		case 0:
			dst.attr = a
		case syscall.ENOENT, syscall.ESTALE: // a dangling stub holds the name
			if e := d.unlinkAt(ctx, newParent, newName); e != 0 && e != syscall.ENOENT {
				return e
			}
			exists = false
		default:
			return e
		}
	}
	x := src.attr.GFID
	tp, tq, hx := TokenOf(oldParent), TokenOf(newParent), TokenOf(x)
	plain := tp == tq && !src.remote && !(exists && dst.remote)
	if flags&xl.RenameExchange != 0 {
		if !exists {
			return syscall.ENOENT
		}
		if !plain {
			return syscall.EXDEV
		}
	}
	if exists && dst.attr.GFID == x {
		return 0 // both names already name the same inode
	}
	if exists && flags&xl.RenameNoreplace != 0 {
		return syscall.EEXIST
	}
	if plain {
		return d.at(ctx, oldParent, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, oldParent, oldName, newParent, newName, flags)
		})
	}
	if src.attr.IsDir() && x == newParent {
		return syscall.EINVAL
	}
	if exists {
		switch {
		case src.attr.IsDir() && !dst.attr.IsDir():
			return syscall.ENOTDIR
		case !src.attr.IsDir() && dst.attr.IsDir():
			return syscall.EISDIR
		}
		if e := d.remove(ctx, newParent, newName, dst.attr.IsDir()); e != 0 && e != syscall.ENOENT {
			return e
		}
	}
	newKey := anchorKey(x, newParent, newName)
	oldKey := anchorKey(x, oldParent, oldName)
	switch {
	case !src.remote && hx == tq: // the target was a stub, now gone
		return d.at(ctx, oldParent, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, oldParent, oldName, newParent, newName, 0)
		})
	case !src.remote: // local -> remote
		if e := d.stub(ctx, newParent, newName, x); e != 0 {
			return e
		}
		if d.crashed("rename") {
			return syscall.EIO
		}
		e := d.inAnchor(ctx, x, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, oldParent, oldName, AnchorGFID, newKey, 0)
		})
		if e != 0 {
			d.unlinkAt(context.WithoutCancel(ctx), newParent, newName)
		}
		return e
	case hx == tq: // remote -> local
		e := d.inAnchor(ctx, x, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, AnchorGFID, oldKey, newParent, newName, 0)
		})
		if e != 0 || d.crashed("rename") {
			return e
		}
	default: // remote -> remote
		if e := d.stub(ctx, newParent, newName, x); e != 0 {
			return e
		}
		if d.crashed("rename") {
			return syscall.EIO
		}
		e := d.inAnchor(ctx, x, func(xx xl.Xlator) syscall.Errno {
			return xx.Rename(ctx, AnchorGFID, oldKey, AnchorGFID, newKey, 0)
		})
		if e != 0 {
			d.unlinkAt(context.WithoutCancel(ctx), newParent, newName)
			return e
		}
		if d.crashed("rename") {
			return 0
		}
	}
	if e := d.unlinkAt(ctx, oldParent, oldName); e != 0 && e != syscall.ENOENT {
		d.log.Warn("dht2: stub left dangling", "parent", oldParent, "name", oldName, "errno", e)
	}
	return 0
}
