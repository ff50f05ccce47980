package dht2

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// MigrateProgress reports a token's migration.
type MigrateProgress struct {
	Token uint16
	From  int
	To    int
	Dirs  int   // directories copied
	Files int   // files, symlinks and device nodes copied
	Names int   // stubs and extra hard links copied
	Bytes int64 // file data copied
	// Precopied files were staged before the freeze and needed no copy
	// under it.
	Precopied int
	Done      bool // the token is served by its new set
}

// copyChunk is the unit of file data copied.
const copyChunk = 1 << 20

// MigrateToken moves every directory, file and remote name homed at token
// to set to, while clients keep working. The caller then publishes a
// layout with Owner[token] = to; until a newer layout arrives this client
// routes the token to its new set by itself.
//
// Protocol:
//  1. The target's Guard stops refusing the token (it may have given it
//     away before), and any leftover of an interrupted earlier attempt on
//     the target is removed.
//  2. Precopy: the data of the token's files that were left alone for a
//     second is staged on the target, under the anchor, while clients go
//     on using the source.
//  3. Freeze: this client's requests for the token wait, and those in
//     flight finish.
//  4. Fence: the source's Guard refuses the token from now on, so that
//     other clients, whose layouts are stale, cannot change what is being
//     copied; they wait for the new layout and retry at the new home. The
//     fence is up once the requests the Guard let through before it have
//     finished, so none of them lands after the copy has read its object.
//  5. Copy the token's namespace: its directories with their entries
//     (files with attributes and xattrs, hard links, stubs), and the
//     token's inodes in the anchor (the root's entries too for token 0).
//     A staged file whose size and times are unchanged is named as is;
//     others are copied now.
//  6. Route the token to the target, unfreeze, remove the source's copy.
//
// Limits: the token is frozen while its namespace is copied and its
// changed files' data with it, so requests for it wait that long (a
// token is 1/65,536 of the namespace, but one huge file being written
// makes a long freeze). A set without a Guard cannot be fenced: other
// clients may then change the source during the copy and lose that
// change; MigrateToken logs that and goes on. If MigrateToken fails, the
// source is unfenced and the target's partial copy removed; if its
// process dies after the fence, the token stays fenced until a migration
// of it runs again, and what it had copied stays on the target (unseen,
// and left alone by Scrub) until then. Open fds follow their file, the new home serving them
// anonymously; a file unlinked while open is not copied, and its fds see
// ESTALE after the move.
func (d *DHT2) MigrateToken(ctx context.Context, token uint16, to int, progress func(MigrateProgress)) error {
	if to < 0 || to >= len(d.subs) {
		return fmt.Errorf("dht2: migrate token %d: no set %d of %d", token, to, len(d.subs))
	}
	d.migrateMu.Lock()
	defer d.migrateMu.Unlock()
	from, _ := d.route(token)
	if from == to {
		return nil
	}
	m := &migration{
		d:        d,
		ctx:      xl.WithCall(ctx, &xl.Call{Xdata: xl.Xdata{bypassKey: nil}}),
		token:    token,
		src:      d.subs[from],
		dst:      d.subs[to],
		copied:   map[xl.GFID]bool{},
		staged:   map[xl.GFID]stamp{},
		p:        MigrateProgress{Token: token, From: from, To: to},
		progress: progress,
	}
	toks := xl.Xdata{"tokens": encodeTokens([]uint16{token})}
	if e := d.fence(m.ctx, m.dst, IpcUnfence, toks); e != 0 {
		return fmt.Errorf("dht2: migrate token %d: unfence on set %d: %w", token, to, e)
	}
	if e := d.anchor(m.ctx, to, token); e != 0 {
		return fmt.Errorf("dht2: migrate token %d: anchor on set %d: %w", token, to, e)
	}
	if err := m.remove(m.dst); err != nil {
		return fmt.Errorf("dht2: migrate token %d: clearing set %d: %w", token, to, err)
	}
	if err := m.precopy(); err != nil {
		m.ctx = context.WithoutCancel(m.ctx)
		if rerr := m.remove(m.dst); rerr != nil {
			d.log.Error("dht2: migrate: removing a partial copy", "token", token, "set", to, "err", rerr)
		}
		return fmt.Errorf("dht2: migrate token %d: precopy to set %d: %w", token, to, err)
	}
	if d.migrateHook != nil {
		d.migrateHook("precopied")
	}
	d.gates[token].Lock()
	frozen := true
	defer func() {
		if frozen {
			d.gates[token].Unlock()
		}
	}()
	var err error
	if e := d.fence(m.ctx, m.src, IpcFence, toks); e == syscall.ENOTSUP || e == syscall.ENOSYS {
		d.log.Warn("dht2: migrating a token from a set without a guard: clients with older layouts may change it meanwhile",
			"token", token, "from", from)
	} else if e != 0 {
		// It may be up, waiting for requests in flight when it failed.
		err = fmt.Errorf("fence: %w", e)
	}
	if err == nil {
		err = m.copy()
	}
	if err == nil {
		err = m.dropStages()
	}
	if err == nil && m.found > 0 {
		err = m.sync()
	}
	if err != nil {
		wctx := context.WithoutCancel(m.ctx)
		d.fence(wctx, m.src, IpcUnfence, toks)
		m.ctx = wctx
		if rerr := m.remove(m.dst); rerr != nil {
			d.log.Error("dht2: migrate: removing a partial copy", "token", token, "set", to, "err", rerr)
		}
		return fmt.Errorf("dht2: migrate token %d from set %d to %d: %w", token, from, to, err)
	}
	d.override(token, to, d.layout.Load().Version)
	d.gates[token].Unlock()
	frozen = false
	// An empty token leaves nothing to remove: nothing changes under the
	// fence.
	if m.found > 0 {
		if err := m.remove(m.src); err != nil {
			// Fenced, so harmless; a later migration back clears it first.
			d.log.Warn("dht2: migrate: leaving the source's copy", "token", token, "set", from, "err", err)
		}
	}
	m.p.Done = true
	m.report()
	return nil
}

func (d *DHT2) fence(ctx context.Context, x xl.Xlator, op xl.IpcOp, toks xl.Xdata) syscall.Errno {
	_, e := x.Ipc(ctx, op, toks)
	if op == IpcUnfence && (e == syscall.ENOTSUP || e == syscall.ENOSYS) {
		return 0 // no guard, nothing fenced
	}
	return e
}

type migration struct {
	d        *DHT2
	ctx      context.Context
	token    uint16
	src, dst xl.Xlator
	copied   map[xl.GFID]bool
	staged   map[xl.GFID]stamp // precopied, not yet named
	found    int               // top-level objects the copy met
	p        MigrateProgress
	progress func(MigrateProgress)
}

func (m *migration) report() {
	if m.progress != nil {
		m.progress(m.p)
	}
}

// roots calls f for each top-level object of the token on x: the root's
// entries for token 0, and the token's names in its anchor bucket.
func (m *migration) roots(x xl.Xlator, f func(parent xl.GFID, de *xl.Dirent) error) error {
	if m.token == 0 {
		err := m.list(x, xl.RootGFID, func(de *xl.Dirent) error {
			if de.Name == AnchorName {
				return nil
			}
			return f(xl.RootGFID, de)
		})
		if err != nil {
			return err
		}
	}
	b := bucket(m.token)
	prefix := fmt.Sprintf("%04x", m.token)
	return m.list(x, b, func(de *xl.Dirent) error {
		if !strings.HasPrefix(de.Name, prefix) {
			return nil // another token of the bucket
		}
		return f(b, de)
	})
}

// list calls f for each entry of dir on x; ENOENT/ESTALE for dir is an
// empty directory.
func (m *migration) list(x xl.Xlator, dir xl.GFID, f func(*xl.Dirent) error) error {
	fd, e := x.Opendir(m.ctx, dir)
	if e == syscall.ENOENT || e == syscall.ESTALE {
		return nil
	}
	if e != 0 {
		return e
	}
	defer x.Releasedir(context.WithoutCancel(m.ctx), fd)
	var all []xl.Dirent
	for off := uint64(0); ; {
		ents, e := x.Readdir(m.ctx, fd, off, 512)
		if e != 0 {
			return e
		}
		if len(ents) == 0 {
			break
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].Off
	}
	for k := range all {
		if err := f(&all[k]); err != nil {
			return err
		}
	}
	return nil
}

func (m *migration) copy() error {
	if m.token == 0 {
		a, e := m.src.Getattr(m.ctx, xl.RootGFID)
		if e != 0 {
			return e
		}
		defer func() { m.setattr(a) }()
		if err := m.xattrs(xl.RootGFID); err != nil {
			return err
		}
	}
	return m.roots(m.src, func(parent xl.GFID, de *xl.Dirent) error {
		m.found++
		return m.copyEntry(parent, de)
	})
}

// copyEntry copies name in parent, which exists on the target.
func (m *migration) copyEntry(parent xl.GFID, de *xl.Dirent) error {
	a := de.Attr
	g := a.GFID
	ctx, src, dst := m.ctx, m.src, m.dst
	stub := !inAnchorFamily(parent) && TokenOf(g) != TokenOf(parent)
	var e syscall.Errno
	switch {
	case stub:
		if a.IsDir() {
			_, e = dst.Mkdir(ctx, parent, de.Name, g, 0o700)
		} else {
			_, e = dst.Mknod(ctx, parent, de.Name, g, stubMode, 0)
		}
		if e == 0 { // the owner, which the sticky bit asks about
			_, e = dst.Setattr(ctx, g, xl.SetattrIn{Valid: xl.SetUid | xl.SetGid, Uid: a.Uid, Gid: a.Gid})
		}
		m.p.Names++
	case m.copied[g]:
		_, e = dst.Link(ctx, g, parent, de.Name)
		m.p.Names++
	case a.IsDir():
		if _, e = dst.Mkdir(ctx, parent, de.Name, g, a.Mode&0o7777); e != 0 {
			break
		}
		if err := m.xattrs(g); err != nil {
			return err
		}
		err := m.list(src, g, func(c *xl.Dirent) error { return m.copyEntry(g, c) })
		if err != nil {
			return err
		}
		m.p.Dirs++
		return m.setattr(a)
	default:
		if err := m.copyFile(parent, de.Name, a); err != nil {
			return err
		}
		m.copied[g] = true
		m.p.Files++
		if err := m.xattrs(g); err != nil {
			return err
		}
		if err := m.setattr(a); err != nil {
			return err
		}
		m.report()
		return nil
	}
	if e != 0 {
		return fmt.Errorf("copying %s: %w", de.Name, e)
	}
	return nil
}

func (m *migration) copyFile(parent xl.GFID, name string, a xl.Attr) error {
	ctx, src, dst, g := m.ctx, m.src, m.dst, a.GFID
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		target, e := src.Readlink(ctx, g)
		if e == 0 {
			_, e = dst.Symlink(ctx, parent, name, g, target)
		}
		return errnoErr(name, e)
	case syscall.S_IFREG:
	default:
		_, e := dst.Mknod(ctx, parent, name, g, a.Mode, a.Rdev)
		return errnoErr(name, e)
	}
	if st, ok := m.staged[g]; ok {
		delete(m.staged, g)
		stage := stageName(g)
		cur, e := src.Getattr(ctx, g)
		if e == 0 && stampOf(cur) == st {
			// Unchanged since it was staged: name the staged inode.
			if _, e = dst.Link(ctx, g, parent, name); e == 0 {
				m.p.Precopied++
				return errnoErr(name, dst.Unlink(ctx, bucket(m.token), stage))
			}
		}
		if e := dst.Unlink(ctx, bucket(m.token), stage); e != 0 && e != syscall.ENOENT {
			return errnoErr(name, e)
		}
	}
	return m.copyData(parent, name, a)
}

// copyData makes name in parent on the target as a copy of regular file a.
func (m *migration) copyData(parent xl.GFID, name string, a xl.Attr) error {
	ctx, src, dst, g := m.ctx, m.src, m.dst, a.GFID
	wfd, _, e := dst.Create(ctx, parent, name, g, syscall.O_WRONLY, a.Mode&0o7777)
	if e != 0 {
		return errnoErr(name, e)
	}
	defer dst.Release(context.WithoutCancel(ctx), wfd)
	rfd, e := src.Open(ctx, g, syscall.O_RDONLY)
	if e != 0 {
		return errnoErr(name, e)
	}
	defer src.Release(context.WithoutCancel(ctx), rfd)
	buf := make([]byte, copyChunk)
	size := int64(a.Size)
	for off := int64(0); off < size; {
		// Only the data: a sparse file stays sparse.
		start, e := src.Lseek(ctx, rfd, off, unix.SEEK_DATA)
		switch {
		case e == syscall.ENXIO:
			start = size
		case e != 0:
			start = off // no SEEK_DATA: copy everything
		}
		end := size
		if start < size && e == 0 {
			if h, e := src.Lseek(ctx, rfd, start, unix.SEEK_HOLE); e == 0 {
				end = h
			}
		}
		for p := start; p < end; {
			n, e := src.Read(ctx, rfd, buf[:min(int64(len(buf)), end-p)], p)
			if e != 0 {
				return errnoErr(name, e)
			}
			if n == 0 {
				end = p // shrank meanwhile
				break
			}
			if _, e := dst.Write(ctx, wfd, buf[:n], p); e != 0 {
				return errnoErr(name, e)
			}
			p += int64(n)
			m.p.Bytes += int64(n)
		}
		off = end
	}
	if _, e := dst.Truncate(ctx, g, a.Size); e != 0 {
		return errnoErr(name, e)
	}
	return nil
}

// stamp is what changes when a file's data does.
type stamp struct {
	size         uint64
	mtime, ctime xl.Timespec
}

func stampOf(a xl.Attr) stamp { return stamp{a.Size, a.Mtime, a.Ctime} }

// quiet is how long a file must have been left alone to be staged: file
// times come from a coarse clock, and a write during staging must show.
const quietFor = time.Second

// stageName is the anchor name a staged copy of g waits under.
func stageName(g xl.GFID) string { return g.String() + ".stage" }

// precopy stages, before the freeze, the data of the token's regular
// files that nobody changed for a while: the copy under the freeze then
// links a staged inode whose file is still unchanged instead of copying
// its data again.
func (m *migration) precopy() error {
	if e := m.d.anchor(m.ctx, m.p.To, m.token); e != 0 {
		return e
	}
	return m.roots(m.src, m.stageEntry)
}

func (m *migration) stageEntry(parent xl.GFID, de *xl.Dirent) error {
	a := de.Attr
	g := a.GFID
	switch {
	case !inAnchorFamily(parent) && TokenOf(g) != TokenOf(parent): // a stub
		return nil
	case a.IsDir():
		return m.list(m.src, g, func(c *xl.Dirent) error { return m.stageEntry(g, c) })
	case a.Mode&syscall.S_IFMT != syscall.S_IFREG || a.Size == 0:
		return nil
	}
	if _, ok := m.staged[g]; ok {
		return nil // another name of it
	}
	if q := m.d.stageQuiet; time.Since(a.Mtime.Time()) < q || time.Since(a.Ctime.Time()) < q {
		return nil
	}
	stage := stageName(g)
	err := m.copyData(bucket(m.token), stage, a)
	if err == nil {
		if cur, e := m.src.Getattr(m.ctx, g); e == 0 && stampOf(cur) == stampOf(a) {
			m.staged[g] = stampOf(a)
			return nil
		}
	}
	if e := m.dst.Unlink(m.ctx, bucket(m.token), stage); e != 0 && e != syscall.ENOENT {
		return errnoErr(stage, e)
	}
	return err
}

// dropStages removes staged copies whose files went away meanwhile.
func (m *migration) dropStages() error {
	for g := range m.staged {
		if e := m.dst.Unlink(m.ctx, bucket(m.token), stageName(g)); e != 0 && e != syscall.ENOENT {
			return errnoErr(stageName(g), e)
		}
		delete(m.staged, g)
	}
	return nil
}

func (m *migration) xattrs(g xl.GFID) error {
	names, e := m.src.Listxattr(m.ctx, g)
	if e == syscall.ENOTSUP {
		return nil
	}
	if e != 0 {
		return e
	}
	for _, n := range names {
		if n == fenceXattr {
			continue // the source's own
		}
		v, e := m.src.Getxattr(m.ctx, g, n)
		if e == syscall.ENODATA {
			continue
		}
		if e == 0 {
			e = m.dst.Setxattr(m.ctx, g, n, v, 0)
		}
		if e != 0 {
			return fmt.Errorf("xattr %s of %v: %w", n, g, e)
		}
	}
	return nil
}

// setattr gives the copy the original's owner, mode and times.
func (m *migration) setattr(a xl.Attr) error {
	in := xl.SetattrIn{
		Valid: xl.SetUid | xl.SetGid | xl.SetAtime | xl.SetMtime,
		Uid:   a.Uid, Gid: a.Gid, Atime: a.Atime, Mtime: a.Mtime,
	}
	if a.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		in.Valid |= xl.SetMode
		in.Mode = a.Mode & 0o7777
	}
	if _, e := m.dst.Setattr(m.ctx, a.GFID, in); e != 0 {
		return fmt.Errorf("attributes of %v: %w", a.GFID, e)
	}
	return nil
}

// sync makes the copy durable on the target set before the layout
// names it and the source's copy goes. Clients may have fsynced the
// source's data, and a client whose writes were answered durable skips
// its next fsync (jbr-client), so nothing else would sync the copy. An
// fsync on a replica set covers every entry proposed before it; the
// anchor, a directory, serves as its object.
func (m *migration) sync() error {
	if e := m.dst.Fsync(m.ctx, xl.Fd{GFID: AnchorGFID, Flags: syscall.O_RDONLY}, false); e != 0 {
		return fmt.Errorf("syncing the copy: %w", e)
	}
	return nil
}

// remove deletes the token's objects from x.
func (m *migration) remove(x xl.Xlator) error {
	return m.roots(x, func(parent xl.GFID, de *xl.Dirent) error { return m.removeEntry(x, parent, de) })
}

func (m *migration) removeEntry(x xl.Xlator, parent xl.GFID, de *xl.Dirent) error {
	g := de.Attr.GFID
	stub := !inAnchorFamily(parent) && TokenOf(g) != TokenOf(parent)
	var e syscall.Errno
	if de.Attr.IsDir() {
		if !stub {
			if err := m.list(x, g, func(c *xl.Dirent) error { return m.removeEntry(x, g, c) }); err != nil {
				return err
			}
		}
		e = x.Rmdir(m.ctx, parent, de.Name)
	} else {
		e = x.Unlink(m.ctx, parent, de.Name)
	}
	if e != 0 && e != syscall.ENOENT {
		return errnoErr(de.Name, e)
	}
	return nil
}

func errnoErr(name string, e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", name, e)
}
