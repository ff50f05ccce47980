package recon

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/errgroup"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// ChunkSize is the unit in which file data is checksummed and copied: a
// repair copies only the chunks whose xxhash differs.
const ChunkSize = 1 << 20

// readdirMax is how many entries one Readdir asks for.
const readdirMax = 512

// Object is one object of a store, as replicas are compared: its type
// and metadata, its data as a checksum per ChunkSize, its xattrs as a
// checksum per name. Times are not compared: replicas apply the same
// entries at different moments.
type Object struct {
	GFID xl.GFID `json:"gfid"`
	// Path is one path to the object, for people.
	Path   string            `json:"path"`
	Mode   uint32            `json:"mode"`
	Uid    uint32            `json:"uid"`
	Gid    uint32            `json:"gid"`
	Size   uint64            `json:"size"`
	Rdev   uint64            `json:"rdev,omitempty"`
	Link   string            `json:"link,omitempty"`
	Xattrs map[string]uint64 `json:"xattrs,omitempty"`
	Chunks []uint64          `json:"-"`
}

func (o *Object) isDir() bool { return o.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (o *Object) isReg() bool { return o.Mode&syscall.S_IFMT == syscall.S_IFREG }

// EntryKey names a directory entry: its parent's GFID and its name.
type EntryKey struct {
	Parent xl.GFID
	Name   string
}

// Tree is a store's namespace and objects, by GFID.
type Tree struct {
	Objects map[xl.GFID]*Object
	Entries map[EntryKey]xl.GFID
	// Bytes is how much data was read to checksum it.
	Bytes int64
}

// object returns the object g, nil if t is nil or lacks it.
func (t *Tree) object(g xl.GFID) *Object {
	if t == nil {
		return nil
	}
	return t.Objects[g]
}

// children lists the entries of directory g, sorted by name.
func (t *Tree) children(g xl.GFID) []EntryKey {
	var out []EntryKey
	for k := range t.Entries {
		if k.Parent == g {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b EntryKey) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ScanOptions tune Scan.
type ScanOptions struct {
	// BytesPerSec, if not zero, bounds how fast data is read: a
	// background scrub must not starve the brick.
	BytesPerSec int64
	// Progress, if set, is called after each object with the objects
	// and bytes scanned so far.
	Progress func(objects int, bytes int64)
}

// parallel is how many objects Scan and Repair work on at once: over
// the network, round trips, not bandwidth, bound small files.
const parallel = 16

// Scan walks a store's namespace from the root, breadth first, and
// checksums every object, the objects of a directory several at a time.
// ctx carries the xl.Call the requests are made with.
func Scan(ctx context.Context, x xl.Xlator, opts ScanOptions) (*Tree, error) {
	t := &Tree{Objects: map[xl.GFID]*Object{}, Entries: map[EntryKey]xl.GFID{}}
	pace := newPacer(opts.BytesPerSec)
	var bytes atomic.Int64
	root, e := x.Getattr(ctx, xl.RootGFID)
	if e != 0 {
		return nil, fmt.Errorf("getattr of the root: %w", e)
	}
	root.GFID = xl.RootGFID
	o, err := scanObject(ctx, x, root, "/", pace, &bytes)
	if err != nil {
		return nil, fmt.Errorf("/: %w", err)
	}
	t.Objects[xl.RootGFID] = o
	queue := []xl.GFID{xl.RootGFID}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		ents, err := readdir(ctx, x, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Objects[dir].Path, err)
		}
		var todo []xl.Dirent
		seen := map[xl.GFID]bool{}
		for _, d := range ents {
			g := d.Attr.GFID
			t.Entries[EntryKey{dir, d.Name}] = g
			if _, ok := t.Objects[g]; ok || seen[g] {
				continue // a hard link
			}
			seen[g] = true
			todo = append(todo, d)
		}
		objs := make([]*Object, len(todo))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(parallel)
		for i, d := range todo {
			g.Go(func() error {
				p := path.Join(t.Objects[dir].Path, d.Name)
				o, err := scanObject(gctx, x, d.Attr, p, pace, &bytes)
				if err != nil {
					return fmt.Errorf("%s (%v): %w", p, d.Attr.GFID, err)
				}
				objs[i] = o
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		for _, o := range objs {
			t.Objects[o.GFID] = o
			if o.isDir() {
				queue = append(queue, o.GFID)
			}
		}
		t.Bytes = bytes.Load()
		if opts.Progress != nil {
			opts.Progress(len(t.Objects), t.Bytes)
		}
	}
	return t, nil
}

// readdir lists a whole directory.
func readdir(ctx context.Context, x xl.Xlator, dir xl.GFID) ([]xl.Dirent, error) {
	fd, e := x.Opendir(ctx, dir)
	if e != 0 {
		return nil, fmt.Errorf("opendir: %w", e)
	}
	defer x.Releasedir(ctx, fd)
	var out []xl.Dirent
	var off uint64
	for {
		ds, e := x.Readdir(ctx, fd, off, readdirMax)
		if e != 0 {
			return nil, fmt.Errorf("readdir: %w", e)
		}
		if len(ds) == 0 {
			return out, nil
		}
		out = append(out, ds...)
		off = ds[len(ds)-1].Off
	}
}

// scanObject describes and checksums one object.
func scanObject(ctx context.Context, x xl.Xlator, a xl.Attr, p string, pace *pacer, bytes *atomic.Int64) (*Object, error) {
	o := &Object{GFID: a.GFID, Path: p, Mode: a.Mode, Uid: a.Uid, Gid: a.Gid, Rdev: a.Rdev}
	switch {
	case o.isReg():
		o.Size = a.Size
	case o.Mode&syscall.S_IFMT == syscall.S_IFLNK:
		l, e := x.Readlink(ctx, a.GFID)
		if e != 0 {
			return nil, fmt.Errorf("readlink: %w", e)
		}
		o.Link = l
	}
	names, e := x.Listxattr(ctx, a.GFID)
	if e != 0 && e != syscall.ENOTSUP {
		return nil, fmt.Errorf("listxattr: %w", e)
	}
	for _, n := range names {
		v, e := x.Getxattr(ctx, a.GFID, n)
		if e == syscall.ENODATA {
			continue // removed meanwhile
		}
		if e != 0 {
			return nil, fmt.Errorf("getxattr %s: %w", n, e)
		}
		if o.Xattrs == nil {
			o.Xattrs = map[string]uint64{}
		}
		o.Xattrs[n] = xxhash.Sum64(v)
	}
	if !o.isReg() || o.Size == 0 {
		return o, nil
	}
	fd, e := x.Open(ctx, a.GFID, syscall.O_RDONLY)
	if e != 0 {
		return nil, fmt.Errorf("open: %w", e)
	}
	defer x.Release(ctx, fd)
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	// The size is what was read: a file written during the scan is
	// compared as read, and a recheck settles it.
	o.Size = 0
	for off := int64(0); ; off += ChunkSize {
		n, e := x.Read(ctx, fd, buf, off)
		if e != 0 {
			return nil, fmt.Errorf("read at %d: %w", off, e)
		}
		if n == 0 {
			break
		}
		o.Chunks = append(o.Chunks, xxhash.Sum64(buf[:n]))
		o.Size += uint64(n)
		bytes.Add(int64(n))
		if err := pace.wait(ctx, n); err != nil {
			return nil, err
		}
		if n < ChunkSize {
			break
		}
	}
	return o, nil
}

// chunkPool recycles chunk buffers: a scan of small files would
// otherwise spend its time clearing new ones.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// pacer bounds a read rate, over all the goroutines that read.
type pacer struct {
	rate  int64
	start time.Time
	mu    sync.Mutex
	done  int64
}

func newPacer(rate int64) *pacer { return &pacer{rate: rate, start: time.Now()} }

func (p *pacer) wait(ctx context.Context, n int) error {
	if p.rate <= 0 {
		return ctx.Err()
	}
	p.mu.Lock()
	p.done += int64(n)
	due := p.start.Add(time.Duration(float64(p.done) / float64(p.rate) * float64(time.Second)))
	p.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Diff kinds.
const (
	DiffMissing = "missing" // the entry is on the reference, not the replica
	DiffExtra   = "extra"   // the entry is on the replica, not the reference
	DiffType    = "type"    // same name, another object or type
	DiffData    = "data"
	DiffMeta    = "meta"
)

// Diff is one difference between a reference store and a replica.
type Diff struct {
	Kind string  `json:"kind"`
	GFID xl.GFID `json:"gfid"`
	Path string  `json:"path"`
	What string  `json:"what,omitempty"`
}

func (d Diff) String() string {
	s := fmt.Sprintf("%s %s (%v)", d.Kind, d.Path, d.GFID)
	if d.What != "" {
		s += ": " + d.What
	}
	return s
}

// Compare lists how replica differs from ref: entries, then objects, in
// a stable order.
func Compare(ref, replica *Tree) []Diff {
	var out []Diff
	keys := slices.Collect(maps.Keys(ref.Entries))
	for k := range replica.Entries {
		if _, ok := ref.Entries[k]; !ok {
			keys = append(keys, k)
		}
	}
	where := func(k EntryKey) string {
		if o := ref.Objects[k.Parent]; o != nil {
			return path.Join(o.Path, k.Name)
		}
		if o := replica.Objects[k.Parent]; o != nil {
			return path.Join(o.Path, k.Name)
		}
		return k.Parent.String() + "/" + k.Name
	}
	var entryDiffs []Diff
	for _, k := range keys {
		rg, rok := ref.Entries[k]
		pg, pok := replica.Entries[k]
		switch {
		case !pok:
			entryDiffs = append(entryDiffs, Diff{Kind: DiffMissing, GFID: rg, Path: where(k)})
		case !rok:
			entryDiffs = append(entryDiffs, Diff{Kind: DiffExtra, GFID: pg, Path: where(k)})
		case rg != pg:
			entryDiffs = append(entryDiffs, Diff{Kind: DiffType, GFID: rg, Path: where(k), What: fmt.Sprintf("replica holds %v", pg)})
		}
	}
	slices.SortFunc(entryDiffs, func(a, b Diff) int { return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(a.Kind, b.Kind)) })
	out = append(out, entryDiffs...)

	var objDiffs []Diff
	for g, ro := range ref.Objects {
		po, ok := replica.Objects[g]
		if !ok {
			continue // reported as a missing entry
		}
		if ro.Mode&syscall.S_IFMT != po.Mode&syscall.S_IFMT {
			objDiffs = append(objDiffs, Diff{Kind: DiffType, GFID: g, Path: ro.Path, What: fmt.Sprintf("mode %#o, replica %#o", ro.Mode, po.Mode)})
			continue
		}
		if what := dataDiff(ro, po); what != "" {
			objDiffs = append(objDiffs, Diff{Kind: DiffData, GFID: g, Path: ro.Path, What: what})
		}
		if what := metaDiff(ro, po); what != "" {
			objDiffs = append(objDiffs, Diff{Kind: DiffMeta, GFID: g, Path: ro.Path, What: what})
		}
	}
	slices.SortFunc(objDiffs, func(a, b Diff) int { return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(a.Kind, b.Kind)) })
	return append(out, objDiffs...)
}

// Same reports whether two scans of an object agree on everything
// compared.
func Same(a, b *Object) bool {
	return a != nil && b != nil && a.GFID == b.GFID && a.Mode == b.Mode && dataDiff(a, b) == "" && metaDiff(a, b) == ""
}

// dataDiff describes how two objects' data differ, "" if not.
func dataDiff(ref, rep *Object) string {
	var parts []string
	if ref.Size != rep.Size {
		parts = append(parts, fmt.Sprintf("size %d, replica %d", ref.Size, rep.Size))
	}
	if n := len(differingChunks(ref, rep)); n > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d chunks differ", n, len(ref.Chunks)))
	}
	if ref.Link != rep.Link {
		parts = append(parts, fmt.Sprintf("link %q, replica %q", ref.Link, rep.Link))
	}
	return strings.Join(parts, "; ")
}

// differingChunks lists the chunks of ref that rep does not hold alike.
func differingChunks(ref, rep *Object) []int {
	var out []int
	for i, h := range ref.Chunks {
		if i >= len(rep.Chunks) || rep.Chunks[i] != h {
			out = append(out, i)
		}
	}
	return out
}

// metaDiff describes how two objects' metadata differ, "" if not.
func metaDiff(ref, rep *Object) string {
	var parts []string
	if ref.Mode != rep.Mode {
		parts = append(parts, fmt.Sprintf("mode %#o, replica %#o", ref.Mode, rep.Mode))
	}
	if ref.Uid != rep.Uid || ref.Gid != rep.Gid {
		parts = append(parts, fmt.Sprintf("owner %d:%d, replica %d:%d", ref.Uid, ref.Gid, rep.Uid, rep.Gid))
	}
	if ref.Rdev != rep.Rdev {
		parts = append(parts, fmt.Sprintf("rdev %d, replica %d", ref.Rdev, rep.Rdev))
	}
	for _, n := range slices.Sorted(maps.Keys(ref.Xattrs)) {
		if h, ok := rep.Xattrs[n]; !ok {
			parts = append(parts, "xattr "+n+" missing")
		} else if h != ref.Xattrs[n] {
			parts = append(parts, "xattr "+n+" differs")
		}
	}
	for _, n := range slices.Sorted(maps.Keys(rep.Xattrs)) {
		if _, ok := ref.Xattrs[n]; !ok {
			parts = append(parts, "xattr "+n+" extra")
		}
	}
	return strings.Join(parts, "; ")
}
