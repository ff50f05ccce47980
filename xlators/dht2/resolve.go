package dht2

import (
	"context"
	"encoding/binary"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Batched resolution of remote names. A listing's stubs each name an
// inode in its home's anchor; asked one lookup at a time, a directory of
// N subdirectories on other sets costs N more round trips. Instead the
// listing sends each set holding some of them one IpcResolve with all of
// its keys, the sets in parallel, and the set's Guard looks them up
// locally: one round trip per set, whatever N.

// IpcResolve asks a Guard for the attributes of anchor entries. Xdata
// "keys" holds one resolveKey record per entry; the answer's "attrs"
// holds one resolveRecord record per key, in order: an errno (big-endian
// uint32) and, when it is 0, the attributes.
const IpcResolve xl.IpcOp = "dht2.resolve"

// maxResolve bounds the keys of one IpcResolve.
const maxResolve = 4096

// resolveKeyLen is a key record: inode, parent, hash of the name.
const resolveKeyLen = 16 + 16 + 8

// attrLen is an encoded xl.Attr.
const attrLen = 16 + 4*4 + 8*3 + 4 + 3*12

// resolveRecordLen is an answer record: errno and attributes.
const resolveRecordLen = 4 + attrLen

// resolveRetry is how long a client sends a set that could not answer
// IpcResolve (a brick without a Guard) single lookups instead.
const resolveRetry = time.Minute

type resolveKey struct {
	g, parent xl.GFID
	hash      uint64
}

func (k resolveKey) name() string { return hashedKey(k.g, k.parent, k.hash) }

func encodeKeys(ks []resolveKey) []byte {
	b := make([]byte, 0, len(ks)*resolveKeyLen)
	for _, k := range ks {
		b = append(b, k.g[:]...)
		b = append(b, k.parent[:]...)
		b = binary.BigEndian.AppendUint64(b, k.hash)
	}
	return b
}

func decodeKeys(b []byte) ([]resolveKey, bool) {
	if len(b)%resolveKeyLen != 0 || len(b)/resolveKeyLen > maxResolve {
		return nil, false
	}
	ks := make([]resolveKey, len(b)/resolveKeyLen)
	for i := range ks {
		r := b[i*resolveKeyLen:]
		copy(ks[i].g[:], r[:16])
		copy(ks[i].parent[:], r[16:32])
		ks[i].hash = binary.BigEndian.Uint64(r[32:40])
	}
	return ks, true
}

func appendAttr(b []byte, a *xl.Attr) []byte {
	b = append(b, a.GFID[:]...)
	for _, v := range [...]uint32{a.Mode, a.Nlink, a.Uid, a.Gid} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	for _, v := range [...]uint64{a.Rdev, a.Size, a.Blocks} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint32(b, a.Blksize)
	for _, t := range [...]xl.Timespec{a.Atime, a.Mtime, a.Ctime} {
		b = binary.BigEndian.AppendUint64(b, uint64(t.Sec))
		b = binary.BigEndian.AppendUint32(b, t.Nsec)
	}
	return b
}

func readAttr(b []byte) (a xl.Attr) {
	copy(a.GFID[:], b)
	b = b[16:]
	for _, p := range [...]*uint32{&a.Mode, &a.Nlink, &a.Uid, &a.Gid} {
		*p, b = binary.BigEndian.Uint32(b), b[4:]
	}
	for _, p := range [...]*uint64{&a.Rdev, &a.Size, &a.Blocks} {
		*p, b = binary.BigEndian.Uint64(b), b[8:]
	}
	a.Blksize, b = binary.BigEndian.Uint32(b), b[4:]
	for _, t := range [...]*xl.Timespec{&a.Atime, &a.Mtime, &a.Ctime} {
		t.Sec, t.Nsec, b = int64(binary.BigEndian.Uint64(b)), binary.BigEndian.Uint32(b[8:]), b[12:]
	}
	return a
}

// resolve answers IpcResolve with lookups in the anchor below the guard.
// An entry of a fenced token is answered ErrnoMoved, for the client to
// follow alone. An error that is not about one entry (a follower's
// EREMOTE, a lost quorum) answers the whole request, so that the
// replica client retries it where it can be served.
func (g *Guard) resolve(ctx context.Context, in xl.Xdata) *xl.Result {
	ks, ok := decodeKeys(in["keys"])
	if !ok {
		return &xl.Result{Errno: syscall.EINVAL}
	}
	_, bypass := xl.CallFrom(ctx).Xdata[bypassKey]
	out := make([]byte, 0, len(ks)*resolveRecordLen)
	for _, k := range ks {
		t := TokenOf(k.g)
		var a xl.Attr
		e := ErrnoMoved
		if bypass || !g.fenced[t].Load() {
			a, e = g.next.Lookup(ctx, bucket(t), k.name())
		}
		switch e {
		case 0, syscall.ENOENT, syscall.ESTALE, ErrnoMoved:
		default:
			return &xl.Result{Errno: e}
		}
		out = binary.BigEndian.AppendUint32(out, uint32(e))
		out = appendAttr(out, &a)
	}
	return &xl.Result{Xdata: xl.Xdata{"attrs": out}}
}

// resolveRemote fills in the attributes of the stubs out[k], k in remote,
// of directory dir: one IpcResolve per set, the sets in parallel. An
// entry the batch could not settle (a moved token, a set that cannot
// answer) is resolved alone, as Lookup does.
func (d *DHT2) resolveRemote(ctx context.Context, dir xl.GFID, out []xl.Dirent, remote []int) []syscall.Errno {
	errs := make([]syscall.Errno, len(out))
	bySet := map[int][]int{}
	for _, k := range remote {
		s, _ := d.route(TokenOf(stubTarget(out[k].Attr.GFID, dir, out[k].Name)))
		bySet[s] = append(bySet[s], k)
	}
	var (
		alone []int // resolved one at a time
		mu    sync.Mutex
		left  []int // what the batches left, under mu
		g     errgroup.Group
	)
	for s, ks := range bySet {
		if len(ks) == 1 || time.Now().UnixNano() < d.noResolve[s].Load() {
			alone = append(alone, ks...)
			continue
		}
		for len(ks) > 0 {
			n := min(len(ks), maxResolve)
			chunk := ks[:n]
			ks = ks[n:]
			g.Go(func() error {
				l := d.resolveOn(ctx, s, dir, out, chunk, errs)
				mu.Lock()
				left = append(left, l...)
				mu.Unlock()
				return nil
			})
		}
	}
	g.Wait()
	alone = append(alone, left...)
	g.SetLimit(16)
	for _, k := range alone {
		g.Go(func() error {
			out[k].Attr, errs[k] = d.remoteAttr(ctx, dir, out[k].Name, stubTarget(out[k].Attr.GFID, dir, out[k].Name))
			return nil
		})
	}
	g.Wait()
	return errs
}

// resolveOn resolves entries ks of out through set s, returning those
// it could not settle.
func (d *DHT2) resolveOn(ctx context.Context, s int, dir xl.GFID, out []xl.Dirent, ks []int, errs []syscall.Errno) []int {
	keys := make([]resolveKey, len(ks))
	for i, k := range ks {
		keys[i] = resolveKey{g: stubTarget(out[k].Attr.GFID, dir, out[k].Name), parent: dir, hash: nameHash(out[k].Name)}
	}
	res, e := d.subs[s].Ipc(ctx, IpcResolve, xl.Xdata{"keys": encodeKeys(keys)})
	b := res["attrs"]
	if e == 0 && len(b) != len(ks)*resolveRecordLen {
		e = syscall.EIO
	}
	if e != 0 {
		d.log.Debug("dht2: set cannot resolve names in batches", "set", s, "errno", e)
		if e == syscall.ENOTSUP || e == syscall.ENOSYS {
			d.noResolve[s].Store(time.Now().Add(resolveRetry).UnixNano())
		}
		return ks
	}
	var left []int
	for i, k := range ks {
		r := b[i*resolveRecordLen:]
		switch e := syscall.Errno(binary.BigEndian.Uint32(r)); e {
		case 0:
			a := readAttr(r[4:])
			if a.GFID != keys[i].g {
				errs[k] = syscall.ENOENT
				continue
			}
			out[k].Attr = a
		case syscall.ENOENT:
			errs[k] = e
		default: // moved or unknown here: follow it alone
			left = append(left, k)
		}
	}
	return left
}
