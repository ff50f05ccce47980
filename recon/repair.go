package recon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sync/errgroup"

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
	// Keep lists objects whose data and metadata are left as they are on
	// the replica (the reference's copy is suspect).
	Keep map[xl.GFID]bool
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
		links: map[xl.GFID]int{}, made: map[xl.GFID]*Object{}}
	for _, g := range pt.Entries {
		r.links[g]++
	}
	if err := r.removeExtra(); err != nil {
		return r.moved(), err
	}
	if err := r.makeMissing(); err != nil {
		return r.moved(), err
	}
	gs := make([]xl.GFID, 0, len(rt.Objects))
	for g := range rt.Objects {
		if !opts.Keep[g] {
			gs = append(gs, g)
		}
	}
	slices.SortFunc(gs, compareGFID)
	eg, _ := errgroup.WithContext(ctx)
	eg.SetLimit(parallel)
	for _, g := range gs {
		eg.Go(func() error { return r.fixObject(rt.Objects[g]) })
	}
	err := eg.Wait()
	return r.moved(), err
}

func compareGFID(a, b xl.GFID) int { return bytes.Compare(a[:], b[:]) }

type repairer struct {
	ctx      context.Context
	ref, rep xl.Xlator
	rt, pt   *Tree
	log      *slog.Logger

	mu sync.Mutex
	m  Moved
	// links counts the replica's entries for each object still there.
	links map[xl.GFID]int
	// made are the objects this repair made, as made: all of their data
	// and what differs of their metadata is then copied.
	made map[xl.GFID]*Object
}

func (r *repairer) moved() Moved {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m
}

func (r *repairer) count(f func(m *Moved)) {
	r.mu.Lock()
	f(&r.m)
	r.mu.Unlock()
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
	r.m.Removed++ // removal runs alone, before anything in parallel
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

// makeMissing makes, parents first, every entry of ref the replica
// lacks, the entries of a directory several at a time. Hard links to one
// object are made one after the other: the first makes it.
func (r *repairer) makeMissing() error {
	queue := []xl.GFID{xl.RootGFID}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		byObject := map[xl.GFID][]EntryKey{}
		var order []xl.GFID
		for _, k := range r.rt.children(dir) {
			g := r.rt.Entries[k]
			o := r.rt.Objects[g]
			if o.isDir() {
				queue = append(queue, g)
			}
			if pg, ok := r.pt.Entries[k]; ok && pg == g && sameType(o, r.pt.Objects[g]) {
				continue
			}
			if byObject[g] == nil {
				order = append(order, g)
			}
			byObject[g] = append(byObject[g], k)
		}
		eg, _ := errgroup.WithContext(r.ctx)
		eg.SetLimit(parallel)
		for _, g := range order {
			eg.Go(func() error {
				for _, k := range byObject[g] {
					if err := r.make(k, r.rt.Objects[g]); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := eg.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// make creates entry k for object o on the replica: a hard link when
// the object is already there under another name.
func (r *repairer) make(k EntryKey, o *Object) error {
	ctx, g := r.ctx, o.GFID
	r.mu.Lock()
	linked := r.links[g] > 0
	r.mu.Unlock()
	var (
		a     xl.Attr
		e     syscall.Errno
		fresh bool
	)
	perm := o.Mode &^ syscall.S_IFMT
	switch o.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		a, e = r.rep.Mkdir(ctx, k.Parent, k.Name, g, perm)
		fresh = true
	case syscall.S_IFREG:
		if linked {
			_, e = r.rep.Link(ctx, g, k.Parent, k.Name)
			break
		}
		var fd xl.Fd
		fd, a, e = r.rep.Create(ctx, k.Parent, k.Name, g, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, perm)
		if e == 0 {
			r.rep.Release(ctx, fd)
			fresh = true
		} else if e == syscall.EEXIST {
			// The store still holds the object by GFID, its last name
			// removed behind its back: link it back and compare it whole.
			_, e = r.rep.Link(ctx, g, k.Parent, k.Name)
			a = xl.Attr{Mode: syscall.S_IFREG, Uid: ^uint32(0), Gid: ^uint32(0), Size: ^uint64(0)}
			fresh = true
		}
	case syscall.S_IFLNK:
		a, e = r.rep.Symlink(ctx, k.Parent, k.Name, g, o.Link)
		fresh = true
	default:
		a, e = r.rep.Mknod(ctx, k.Parent, k.Name, g, o.Mode, o.Rdev)
		fresh = true
	}
	if e != 0 {
		return fmt.Errorf("making %s (%v): %w", r.where(k), g, e)
	}
	r.mu.Lock()
	if fresh {
		// As made: no data, no xattrs, the attributes it was given.
		r.made[g] = &Object{GFID: g, Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Size: a.Size, Rdev: a.Rdev, Link: o.Link}
	}
	r.links[g]++
	r.m.Created++
	r.mu.Unlock()
	r.log.Debug("recon: made an entry the replica lacked", "path", r.where(k), "gfid", g)
	return nil
}

// fixObject copies what differs of o's data and metadata to the replica.
func (r *repairer) fixObject(o *Object) error {
	r.mu.Lock()
	reachable := r.links[o.GFID] > 0 || o.GFID == xl.RootGFID
	have, made := r.made[o.GFID]
	r.mu.Unlock()
	if !reachable {
		return nil // not on the replica (its entry failed to be made)
	}
	if !made {
		have = r.pt.Objects[o.GFID]
		if have == nil || !sameType(o, have) {
			return fmt.Errorf("%s (%v): not on the replica after its entries were made", o.Path, o.GFID)
		}
	}
	if o.isReg() {
		if err := r.fixData(o, have, made); err != nil {
			return fmt.Errorf("%s (%v): %w", o.Path, o.GFID, err)
		}
	}
	if err := r.fixMeta(o, have, made); err != nil {
		return fmt.Errorf("%s (%v): %w", o.Path, o.GFID, err)
	}
	return nil
}

func (r *repairer) fixData(o, have *Object, made bool) error {
	chunks := differingChunks(o, have)
	if len(chunks) == 0 && o.Size == have.Size {
		return nil
	}
	ctx := r.ctx
	var copied int64
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
		bp := chunkPool.Get().(*[]byte)
		defer chunkPool.Put(bp)
		buf := *bp
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
			copied += int64(n)
		}
	}
	// The copied chunks may leave the size right: a new file written
	// whole, or chunks rewritten in place.
	end := have.Size
	if len(chunks) > 0 {
		end = max(end, min(o.Size, uint64(chunks[len(chunks)-1]+1)*ChunkSize))
	}
	if end != o.Size {
		if _, e := r.rep.Truncate(ctx, o.GFID, o.Size); e != 0 {
			return fmt.Errorf("truncate to %d: %w", o.Size, e)
		}
	}
	r.count(func(m *Moved) { m.Data++; m.Bytes += copied })
	if !made {
		r.log.Warn("recon: repaired data", "path", o.Path, "gfid", o.GFID, "chunks", len(chunks), "size", o.Size)
	}
	return nil
}

func (r *repairer) fixMeta(o, have *Object, made bool) error {
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
		r.count(func(m *Moved) { m.Meta++ })
		if !made {
			r.log.Warn("recon: repaired metadata", "path", o.Path, "gfid", o.GFID, "what", metaDiff(o, have))
		}
	}
	return nil
}
