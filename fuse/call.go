package fuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// volume is the state every node of one mount shares.
type volume struct {
	top      xl.Xlator
	client   [16]byte // owns this mount's fds in the translators below
	seq      atomic.Uint64
	groups   groupCache
	log      *slog.Logger
	xattrs   *xattrCache
	prefetch *prefetcher
	listings listings
	early    earlyListings
	// attrTimeout and entryTimeout are the kernel's cache lifetimes.
	attrTimeout, entryTimeout time.Duration
	// changes moves at the start and the end of every op of this mount
	// that changes what a listing shows.
	changes atomic.Uint64
	selinux bool // Options.SELinux
}

// call returns the context for an op, with the caller's xl.Call attached,
// and a func to run when the op ends. The op is cancelled interruptGrace
// after a FUSE_INTERRUPT: a hung request can still be broken off, but the
// signals every Go program receives (SIGURG preemption, SIGCHLD) do not
// turn a lookup that was about to succeed into EINTR, which open(2) and
// most callers would report rather than retry. Watching for the
// interrupt starts interruptWatch into the op: go-fuse's context is not
// one context.AfterFunc can hook without a goroutine, and most ops end
// sooner. An interrupt that came meanwhile is seen then.
func (v *volume) call(ctx context.Context) (context.Context, func()) {
	inner, cancel := context.WithCancel(v.attach(context.WithoutCancel(ctx), ctx))
	var (
		mu    sync.Mutex
		ended bool
		stop  func() bool
		grace *time.Timer
	)
	watch := time.AfterFunc(interruptWatch, func() {
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return
		}
		stop = context.AfterFunc(ctx, func() {
			mu.Lock()
			if !ended {
				grace = time.AfterFunc(interruptGrace, cancel)
			}
			mu.Unlock()
		})
	})
	return inner, func() {
		watch.Stop()
		mu.Lock()
		ended = true
		if stop != nil {
			stop()
		}
		if grace != nil {
			grace.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

const (
	// interruptWatch is how long an op runs before call watches for
	// its interrupt.
	interruptWatch = 10 * time.Millisecond
	// interruptGrace is how long an interrupted op may still finish.
	interruptGrace = time.Second
)

// mutation is call for an op that changes state on the bricks. Such an
// op is never abandoned on FUSE_INTERRUPT: a create that already happened
// but answered EINTR makes its retry fail with EEXIST. It moves
// v.changes as it starts and as it ends, so that a listing read ahead
// while it ran is not served (see earlyListings); as it ends, it drops
// the batches read ahead, which it voided.
func (v *volume) mutation(ctx context.Context) (context.Context, func()) {
	v.changes.Add(1)
	return v.attach(context.WithoutCancel(ctx), ctx), func() {
		v.changes.Add(1)
		v.early.dropAll(v)
	}
}

// holding is mutation for an op that takes or gives back a resource on
// the bricks (open, release) but changes nothing a listing shows.
func (v *volume) holding(ctx context.Context) (context.Context, func()) {
	return v.attach(context.WithoutCancel(ctx), ctx), func() {}
}

// again is a copy of c for a request the mount makes of its own accord
// on c's behalf: a Seq of its own, so that ids never repeat, and no Xdata.
func (v *volume) again(c *xl.Call) *xl.Call {
	call := *c
	call.Xdata = nil
	call.Seq = v.seq.Add(1)
	return &call
}

// attach puts the xl.Call of the FUSE request req on ctx.
func (v *volume) attach(ctx, req context.Context) context.Context {
	c := &xl.Call{Client: v.client, Seq: v.seq.Add(1)}
	if caller, ok := gofuse.FromContext(req); ok {
		c.Uid, c.Gid, c.Pid = caller.Uid, caller.Gid, caller.Pid
		c.Groups = v.groups.get(c.Uid, c.Pid)
	}
	return xl.WithCall(ctx, c)
}

// errno reports a translator's error as is. A translator that abandons an
// interrupted request should answer EINTR; ECANCELED, what a cancelled Go
// context suggests, is reported as EINTR too. Other errors of interrupted
// requests stand: signals interrupt requests often (Go programs receive
// SIGURG for preemption), and a lookup's ENOENT must not turn into EINTR
// just because one arrived.
func errno(ctx context.Context, e syscall.Errno) syscall.Errno {
	if e == syscall.ECANCELED && ctx.Err() != nil {
		return syscall.EINTR
	}
	return e
}

// groupCache holds callers' supplementary groups, which FUSE does not
// send. They are read from /proc/<pid>/status and kept briefly, so a
// process that runs many requests pays for one read; a changed group list
// is seen after groupTTL. Root needs no groups: it passes every check.
type groupCache struct {
	mu sync.Mutex
	m  map[uint32]groupEntry
}

type groupEntry struct {
	uid    uint32
	groups []uint32
	at     time.Time
}

const (
	groupTTL     = time.Second
	groupMaxPids = 4096
)

func (g *groupCache) get(uid, pid uint32) []uint32 {
	if uid == 0 || pid == 0 {
		return nil
	}
	now := time.Now()
	g.mu.Lock()
	e, ok := g.m[pid]
	g.mu.Unlock()
	if ok && e.uid == uid && now.Sub(e.at) < groupTTL {
		return e.groups
	}
	groups := procGroups(pid)
	g.mu.Lock()
	if g.m == nil || len(g.m) >= groupMaxPids {
		g.m = make(map[uint32]groupEntry)
	}
	g.m[pid] = groupEntry{uid: uid, groups: groups, at: now}
	g.mu.Unlock()
	return groups
}

// procGroups reads the "Groups:" line of /proc/<pid>/status. pid is often
// a thread id, which /proc also resolves. Best effort: nil if unreadable.
func procGroups(pid uint32) []uint32 {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil
	}
	const key = "\nGroups:"
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return nil
	}
	line := b[i+len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var groups []uint32
	for _, f := range bytes.Fields(line) {
		g, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil {
			return nil
		}
		groups = append(groups, uint32(g))
	}
	return groups
}

// stableAttr names the go-fuse node of a GFID: the inode number is
// gfid.Ino() and the generation the GFID's other half, so the pair is the
// whole GFID and go-fuse keeps exactly one node per GFID.
func stableAttr(a *xl.Attr) fs.StableAttr {
	return fs.StableAttr{
		Mode: a.Mode & syscall.S_IFMT,
		Ino:  a.GFID.Ino(),
		Gen:  binary.BigEndian.Uint64(a.GFID[:8]),
	}
}

func fillAttr(out *gofuse.Attr, a *xl.Attr) {
	*out = gofuse.Attr{
		Ino:       a.GFID.Ino(),
		Size:      a.Size,
		Blocks:    a.Blocks,
		Atime:     uint64(a.Atime.Sec),
		Mtime:     uint64(a.Mtime.Sec),
		Ctime:     uint64(a.Ctime.Sec),
		Atimensec: a.Atime.Nsec,
		Mtimensec: a.Mtime.Nsec,
		Ctimensec: a.Ctime.Nsec,
		Mode:      a.Mode,
		Nlink:     a.Nlink,
		Owner:     gofuse.Owner{Uid: a.Uid, Gid: a.Gid},
		Rdev:      kernelDev(a.Rdev),
		Blksize:   a.Blksize,
	}
}

// kernelDev encodes a dev_t as FUSE carries it (the kernel's 32-bit
// new_encode_dev form).
func kernelDev(dev uint64) uint32 {
	major, minor := unix.Major(dev), unix.Minor(dev)
	return major<<8 | minor&0xff | (minor&^0xff)<<12
}

// userDev decodes FUSE's 32-bit device number into a dev_t.
func userDev(dev uint32) uint64 {
	return unix.Mkdev(unix.Major(uint64(dev)), unix.Minor(uint64(dev)))
}

func fillStatfs(out *gofuse.StatfsOut, s *xl.Statfs) {
	*out = gofuse.StatfsOut{
		Blocks:  s.Blocks,
		Bfree:   s.Bfree,
		Bavail:  s.Bavail,
		Files:   s.Files,
		Ffree:   s.Ffree,
		Bsize:   s.Bsize,
		NameLen: s.NameLen,
		Frsize:  s.Frsize,
	}
}

// setattrIn translates a FUSE setattr. Times arrive as seconds in a
// uint64 that holds an int64 (pre-1970 times are negative).
func setattrIn(in *gofuse.SetAttrIn) xl.SetattrIn {
	var s xl.SetattrIn
	if m, ok := in.GetMode(); ok {
		s.Valid |= xl.SetMode
		s.Mode = m
	}
	if u, ok := in.GetUID(); ok {
		s.Valid |= xl.SetUid
		s.Uid = u
	}
	if g, ok := in.GetGID(); ok {
		s.Valid |= xl.SetGid
		s.Gid = g
	}
	if sz, ok := in.GetSize(); ok {
		s.Valid |= xl.SetSize
		s.Size = sz
	}
	switch {
	case in.Valid&gofuse.FATTR_ATIME_NOW != 0:
		s.Valid |= xl.SetAtimeNow
	case in.Valid&gofuse.FATTR_ATIME != 0:
		s.Valid |= xl.SetAtime
		s.Atime = xl.Timespec{Sec: int64(in.Atime), Nsec: in.Atimensec}
	}
	switch {
	case in.Valid&gofuse.FATTR_MTIME_NOW != 0:
		s.Valid |= xl.SetMtimeNow
	case in.Valid&gofuse.FATTR_MTIME != 0:
		s.Valid |= xl.SetMtime
		s.Mtime = xl.Timespec{Sec: int64(in.Mtime), Nsec: in.Mtimensec}
	}
	return s
}
