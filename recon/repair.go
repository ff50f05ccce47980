package recon

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Moved counts what a repair changed on a replica.
type Moved struct {
	Created int   `json:"created"` // objects made (and hard links added)
	Removed int   `json:"removed"` // entries removed
	Data    int   `json:"data"`    // objects whose data was copied, in part or whole
	Meta    int   `json:"meta"`    // objects whose metadata was fixed
	Bytes   int64 `json:"bytes"`   // data copied
}

// Add sums two counts.
func (m Moved) Add(o Moved) Moved {
	return Moved{m.Created + o.Created, m.Removed + o.Removed, m.Data + o.Data, m.Meta + o.Meta, m.Bytes + o.Bytes}
}

// Zero reports whether nothing moved.
func (m Moved) Zero() bool { return m == Moved{} }

// RepairOptions tune Repair.
type RepairOptions struct {
	Logger *slog.Logger // default slog.Default()
	// Only, if not nil, limits the repair to these objects' data and
	// metadata (a scrub's confirmed findings); entries are then left
	// alone.
	Only map[xl.GFID]bool
}

// Repair makes replica's store match ref's: it removes the entries ref
// lacks, makes what is missing (same GFIDs), copies the data chunks whose
// checksum differs, and fixes sizes, modes, owners and xattrs. rt and pt
// are the two stores' scans, taken just before; ctx carries the xl.Call
// the requests are made with. Nothing is copied blindly: an object whose
// chunks all agree moves no data.
func Repair(ctx context.Context, ref, replica xl.Xlator, rt, pt *Tree, opts RepairOptions) (Moved, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &repairer{ctx: ctx, ref: ref, rep: replica, rt: rt, pt: pt, log: log,
		links: map[xl.GFID]int{}, fresh: map[xl.GFID]bool{}}
	for _, g := range pt.Entries {
		r.links[g]++
	}
	if opts.Only == nil {
		if err := r.removeExtra(); err != nil {
			return r.m, err
		}
		if err := r.makeMissing(); err != nil {
			return r.m, err
		}
	}
	gs := make([]xl.GFID, 0, len(rt.Objects))
	for g := range rt.Objects {
		if opts.Only == nil || opts.Only[g] {
			gs = append(gs, g)
		}
	}
	slices.SortFunc(gs, func(a, b xl.GFID) int { return compareGFID(a, b) })
	for _, g := range gs {
		if err := r.fixObject(rt.Objects[g]); err != nil {
			return r.m, err
		}
	}
	return r.m, nil
}

func compareGFID(a, b xl.GFID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

type repairer struct {
	ctx      context.Context
	ref, rep xl.Xlator
	rt, pt   *Tree
	log      *slog.Logger
	m        Moved
	// links counts the replica's entries for each object still there.
	links map[xl.GFID]int
	// fresh are the objects made by this repair: all of their data and
	// metadata are copied.
	fresh map[xl.GFID]bool
}

// removeExtra removes, from the top down, every entry of the replica
// that ref does not hold with the same GFID.
func (r *repairer) removeExtra() error {
	var walk func(dir xl.GFID) error
	walk = func(dir xl.GFID) error {
		for _, k := range r.pt.children(dir) {
			g := r.pt.Entries[k]
			if rg, ok := r.rt.Entries[k]; ok && rg == g && sameType(r.rt.Objects[g], r.pt.Objects[g]) {
				if o := r.pt.Objects[g]; o != nil && o.isDir() {
					if err := walk(g); err != nil {
						return err
					}
				}
				continue
			}
			if err := r.remove(k, g); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(xl.RootGFID)
}

func sameType(a, b *Object) bool {
	return a != nil && b != nil && a.Mode&syscall.S_IFMT == b.Mode&syscall.S_IFMT
}

// remove removes entry k (object g) from the replica, a directory with
// everything under it.
func (r *repairer) remove(k EntryKey, g xl.GFID) error {
	o := r.pt.Objects[g]
	if o != nil && o.isDir() {
		for _, c := range r.pt.children(g) {
			if err := r.remove(c, r.pt.Entries[c]); err != nil {
				return err
			}
		}
		if e := r.rep.Rmdir(r.ctx, k.Parent, k.Name); e != 0 && e != syscall.ENOENT {
			return fmt.Errorf("rmdir %s: %w", r.where(k), e)
		}
	} else if e := r.rep.Unlink(r.ctx, k.Parent, k.Name); e != 0 && e != syscall.ENOENT {
		return fmt.Errorf("unlink %s: %w", r.where(k), e)
	}
	r.log.Info("recon: removed an entry the reference lacks", "path", r.where(k), "gfid", g)
	r.links[g]--
	r.m.Removed++
	return nil
}

func (r *repairer) where(k EntryKey) string {
	if o := r.rt.Objects[k.Parent]; o != nil {
		return path.Join(o.Path, k.Name)
	}
	if o := r.pt.Objects[k.Parent]; o != nil {
		return path.Join(o.Path, k.Name)
	}
	return k.Parent.String() + "/" + k.Name
}

// makeMissing makes, parents first, every entry of ref the replica lacks.
func (r *repairer) makeMissing() error {
	queue := []xl.GFID{xl.RootGFID}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		for _, k := range r.rt.children(dir) {
			g := r.rt.Entries[k]
			o := r.rt.Objects[g]
			if o.isDir() {
				queue = append(queue, g)
			}
			if pg, ok := r.pt.Entries[k]; ok && pg == g && sameType(o, r.pt.Objects[g]) {
				continue
			}
			if err := r.make(k, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// make creates entry k for object o on the replica: a hard link when
// the object is already there under another name.
func (r *repairer) make(k EntryKey, o *Object) error {
	ctx, g := r.ctx, o.GFID
	var e syscall.Errno
	perm := o.Mode &^ syscall.S_IFMT
	switch o.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		_, e = r.rep.Mkdir(ctx, k.Parent, k.Name, g, perm)
	case syscall.S_IFREG:
		if r.links[g] > 0 {
			_, e = r.rep.Link(ctx, g, k.Parent, k.Name)
			break
		}
		var fd xl.Fd
		fd, _, e = r.rep.Create(ctx, k.Parent, k.Name, g, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, perm)
		if e == 0 {
			r.rep.Release(ctx, fd)
		} else if e == syscall.EEXIST {
			// The store still holds the object by GFID, its last name
			// removed behind its back: link it back, then copy it whole.
			_, e = r.rep.Link(ctx, g, k.Parent, k.Name)
		}
	case syscall.S_IFLNK:
		_, e = r.rep.Symlink(ctx, k.Parent, k.Name, g, o.Link)
	default:
		_, e = r.rep.Mknod(ctx, k.Parent, k.Name, g, o.Mode, o.Rdev)
	}
	if e != 0 {
		return fmt.Errorf("making %s (%v): %w", r.where(k), g, e)
	}
	if r.links[g] == 0 {
		r.fresh[g] = true
	}
	r.links[g]++
	r.m.Created++
	r.log.Info("recon: made an entry the replica lacked", "path", r.where(k), "gfid", g)
	return nil
}

// fixObject copies what differs of o's data and metadata to the replica.
func (r *repairer) fixObject(o *Object) error {
	if r.links[o.GFID] == 0 && o.GFID != xl.RootGFID {
		return nil // not reachable on the replica (its entry failed to be made)
	}
	have := r.pt.Objects[o.GFID]
	if r.fresh[o.GFID] || have == nil || !sameType(o, have) {
		have = &Object{GFID: o.GFID, Mode: o.Mode & syscall.S_IFMT, Uid: ^uint32(0), Gid: ^uint32(0)}
		if o.Mode&syscall.S_IFMT == syscall.S_IFLNK || o.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			have.Mode = o.Mode // made with their mode
		}
	}
	if o.isReg() {
		if err := r.fixData(o, have); err != nil {
			return fmt.Errorf("%s (%v): %w", o.Path, o.GFID, err)
		}
	}
	if err := r.fixMeta(o, have); err != nil {
		return fmt.Errorf("%s (%v): %w", o.Path, o.GFID, err)
	}
	return nil
}

func (r *repairer) fixData(o, have *Object) error {
	chunks := differingChunks(o, have)
	if len(chunks) == 0 && o.Size == have.Size {
		return nil
	}
	ctx := r.ctx
	if len(chunks) > 0 {
		src, e := r.ref.Open(ctx, o.GFID, syscall.O_RDONLY)
		if e != 0 {
			return fmt.Errorf("open on the reference: %w", e)
		}
		defer r.ref.Release(ctx, src)
		dst, e := r.rep.Open(ctx, o.GFID, syscall.O_WRONLY)
		if e != 0 {
			return fmt.Errorf("open on the replica: %w", e)
		}
		defer r.rep.Release(ctx, dst)
		buf := make([]byte, ChunkSize)
		for _, c := range chunks {
			off := int64(c) * ChunkSize
			n, e := r.ref.Read(ctx, src, buf, off)
			if e != 0 {
				return fmt.Errorf("read at %d: %w", off, e)
			}
			for done := 0; done < n; {
				w, e := r.rep.Write(ctx, dst, buf[done:n], off+int64(done))
				if e != 0 {
					return fmt.Errorf("write at %d: %w", off+int64(done), e)
				}
				if w == 0 {
					return fmt.Errorf("write at %d: %w", off+int64(done), syscall.EIO)
				}
				done += w
			}
			r.m.Bytes += int64(n)
		}
	}
	if _, e := r.rep.Truncate(ctx, o.GFID, o.Size); e != 0 {
		return fmt.Errorf("truncate to %d: %w", o.Size, e)
	}
	r.m.Data++
	if !r.fresh[o.GFID] {
		r.log.Warn("recon: repaired data", "path", o.Path, "gfid", o.GFID, "chunks", len(chunks), "size", o.Size)
	}
	return nil
}

func (r *repairer) fixMeta(o, have *Object) error {
	ctx := r.ctx
	fixed := false
	var in xl.SetattrIn
	if o.Mode&^syscall.S_IFMT != have.Mode&^syscall.S_IFMT && o.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		in.Valid |= xl.SetMode
		in.Mode = o.Mode &^ syscall.S_IFMT
	}
	if o.Uid != have.Uid {
		in.Valid |= xl.SetUid
		in.Uid = o.Uid
	}
	if o.Gid != have.Gid {
		in.Valid |= xl.SetGid
		in.Gid = o.Gid
	}
	if in.Valid != 0 {
		if _, e := r.rep.Setattr(ctx, o.GFID, in); e != 0 {
			return fmt.Errorf("setattr: %w", e)
		}
		fixed = true
	}
	for name, h := range o.Xattrs {
		if hh, ok := have.Xattrs[name]; ok && hh == h {
			continue
		}
		v, e := r.ref.Getxattr(ctx, o.GFID, name)
		if e == syscall.ENODATA {
			continue // removed meanwhile on the reference
		}
		if e != 0 {
			return fmt.Errorf("getxattr %s on the reference: %w", name, e)
		}
		if e := r.rep.Setxattr(ctx, o.GFID, name, v, 0); e != 0 {
			return fmt.Errorf("setxattr %s: %w", name, e)
		}
		fixed = true
	}
	for name := range have.Xattrs {
		if _, ok := o.Xattrs[name]; ok {
			continue
		}
		if e := r.rep.Removexattr(ctx, o.GFID, name); e != 0 && e != syscall.ENODATA {
			return fmt.Errorf("removexattr %s: %w", name, e)
		}
		fixed = true
	}
	if fixed {
		r.m.Meta++
		if !r.fresh[o.GFID] {
			r.log.Warn("recon: repaired metadata", "path", o.Path, "gfid", o.GFID, "what", metaDiff(o, have))
		}
	}
	return nil
}
