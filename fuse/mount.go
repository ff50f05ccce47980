// Package fuse mounts a gluon translator graph with FUSE. It is the client
// side of the volume (GlusterFS's mount/fuse): every kernel request becomes a
// call on the top translator, carrying the caller's identity in an xl.Call.
// New objects get their GFID here, as GlusterFS clients choose "gfid-req".
package fuse

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Options configure a mount.
type Options struct {
	// Kernel cache lifetimes. Zero selects the default (1s for attributes
	// and entries, none for negative entries); a negative value disables
	// that cache. A directory's first batch read ahead of its opendir
	// (find, ls -R) is served for the lesser of the attribute and entry
	// lifetimes, counted from its read, and the kernel caches what it
	// shows only for what is left of each: another client's change shows
	// in a listing, a lookup or a stat as late as in a cached lookup,
	// never later. This mount's own changes show at once. A negative
	// AttrTimeout or EntryTimeout turns that read-ahead off.
	//
	// opendir(2) answers without waiting for the bricks' Opendir, so an
	// error of theirs (ENOENT, ESTALE, EIO) shows at the end of the
	// listing, from getdents(2), not from open(2); a directory handle
	// used only for fchdir(2) or fstat(2) never reports it.
	AttrTimeout, EntryTimeout, NegativeTimeout time.Duration
	// FsName is shown in /proc/mounts, e.g. "gluon:vol0"; default "gluon".
	FsName string
	// AllowOther lets users other than the mounter use the mount. It is
	// always on when mounting as root: the kernel checks permissions
	// (default_permissions), so sharing the mount is safe.
	AllowOther bool
	// SELinux stores security.selinux labels, as GlusterFS's --selinux
	// does; without it they are refused with EOPNOTSUPP.
	SELinux bool
	// Debug logs every FUSE request and reply.
	Debug  bool
	Logger *slog.Logger // default slog.Default()

	now func() time.Time // the clock of caches; tests set it
}

// MountPoint is a mounted volume. (Go allows no type named like the Mount
// function.)
type MountPoint struct {
	dir    string
	vol    *volume
	server *gofuse.Server
	log    *slog.Logger
	done   chan struct{} // closed when the serve loop has exited

	mu        sync.Mutex
	unmounted bool
}

const (
	maxIO          = 1 << 20 // largest read and write the kernel sends
	maxBackground  = 64      // async requests (readahead, writeback) in flight
	defaultTimeout = time.Second
	fsType         = "gluon"
)

// Mount mounts top at dir and returns once the mount is usable. The caller
// keeps top: it may close it once Wait has returned.
func Mount(dir string, top xl.Xlator, opts Options) (*MountPoint, error) {
	if top == nil {
		return nil, errors.New("fuse: mount: nil translator")
	}
	dir, err := filepath.Abs(dir) // Unmount must not depend on the cwd
	if err != nil {
		return nil, fmt.Errorf("fuse: mount: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("fuse: mount: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("fuse: mount: %s is not a directory", dir)
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("mount", dir)
	v := &volume{top: top, log: lg, prefetch: newPrefetcher(), selinux: opts.SELinux}
	if _, err := rand.Read(v.client[:]); err != nil {
		return nil, fmt.Errorf("fuse: mount: client id: %w", err)
	}
	fsName := opts.FsName
	if fsName == "" {
		fsName = fsType
	}
	attr := timeout(opts.AttrTimeout, defaultTimeout)
	// What the mount knows of extended attributes is as stale as the
	// kernel's attributes may be.
	v.xattrs = newXattrCache(attr, opts.now)
	entry := timeout(opts.EntryTimeout, defaultTimeout)
	// A listing read ahead may be as old as the kernel's own caches.
	v.early.ttl = min(attr, entry)
	v.attrTimeout, v.entryTimeout = attr, entry
	fsOpts := &fs.Options{
		AttrTimeout:    &attr,
		EntryTimeout:   &entry,
		RootStableAttr: &fs.StableAttr{Ino: xl.RootGFID.Ino()},
		// Modes come from the store; 0000 means 0000.
		NullPermissions: true,
		Logger:          slog.NewLogLogger(lg.Handler(), slog.LevelWarn),
		MountOptions: gofuse.MountOptions{
			// The kernel checks POSIX permissions against our attributes,
			// as GlusterFS's fuse mount does.
			Options:       []string{"default_permissions"},
			AllowOther:    opts.AllowOther || os.Geteuid() == 0,
			FsName:        fsName,
			Name:          fsType,
			MaxWrite:      maxIO,
			MaxReadAhead:  maxIO,
			MaxBackground: maxBackground,
			DirectMount:   true, // falls back to fusermount when not root
			// Replies are built in memory; splicing them through a pipe
			// gains nothing and fails for 1 MiB replies (pipe-max-size).
			DisableSplice: true,
			// The bricks clear set-id bits and file capabilities when a
			// file is written, truncated or chowned (features/access and
			// the brick's own kernel), so the kernel need not ask for
			// security.capability before every write, which would cost a
			// round trip to the brick each time.
			// ASYNC_DIO: without it the kernel completes asynchronous
			// O_DIRECT I/O synchronously, so libaio at iodepth 16 ran
			// at the speed of iodepth 1 (GlusterFS's mount asks too).
			ExtraCapabilities: gofuse.CAP_HANDLE_KILLPRIV_V2 | gofuse.CAP_ASYNC_DIO,
			Debug:             opts.Debug,
			Logger:            slog.NewLogLogger(lg.Handler(), slog.LevelInfo),
			PanicHandler: func(p any) gofuse.Status {
				lg.Error("panic in FUSE handler", "panic", p)
				return gofuse.EIO
			},
		},
	}
	if neg := timeout(opts.NegativeTimeout, 0); neg > 0 {
		fsOpts.NegativeTimeout = &neg
	}
	root := &node{vol: v, gfid: xl.RootGFID}
	server, err := gofuse.NewServer(fs.NewNodeFS(root, fsOpts), dir, &fsOpts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("fuse: mount %s: %w", dir, err)
	}
	m := &MountPoint{dir: dir, vol: v, server: server, log: lg, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		server.Serve()
		v.early.dropAll(v)
		v.prefetch.stop()
	}()
	if err := server.WaitMount(); err != nil {
		if uerr := m.Unmount(); uerr != nil {
			lg.Error("unmount after failed mount", "err", uerr)
		}
		return nil, fmt.Errorf("fuse: mount %s: %w", dir, err)
	}
	raiseReadahead(dir, lg)
	lg.Debug("mounted", "fsname", fsName, "client", fmt.Sprintf("%x", v.client))
	return m, nil
}

// raiseReadahead lets sequential reads travel as maxIO requests. The
// kernel starts a FUSE mount with its default readahead window (128 KiB),
// which INIT can only shrink, so it is raised through sysfs. Best effort:
// that needs root.
func raiseReadahead(dir string, lg *slog.Logger) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		lg.Debug("readahead: stat", "err", err)
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(maxIO>>10)), 0); err != nil {
		lg.Debug("readahead: raise", "err", err)
	}
}

// timeout maps an Options duration: zero means def, negative means none.
func timeout(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Unmount unmounts cleanly, retrying while the mount is busy. If it stays
// busy it is detached lazily: it disappears from the namespace now, and
// Wait returns once its last open file is closed.
func (m *MountPoint) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unmounted {
		return nil
	}
	select {
	case <-m.done: // unmounted from outside, e.g. umount(8)
		m.unmounted = true
		return nil
	default:
	}
	// Server.Unmount retries EBUSY with backoff and waits for the serve
	// loops to finish.
	err := m.server.Unmount()
	if err == nil {
		m.unmounted = true
		return nil
	}
	m.log.Warn("mount busy; detaching lazily", "err", err)
	if derr := detach(m.dir); derr != nil {
		return fmt.Errorf("fuse: unmount %s: %v; lazy unmount: %w", m.dir, err, derr)
	}
	m.unmounted = true
	return nil
}

// detach unmounts dir lazily (umount -l), directly when we may, else
// through the setuid fusermount helper.
func detach(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err != syscall.EPERM {
		return err
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		path, lerr := exec.LookPath(bin)
		if lerr != nil {
			continue
		}
		out, cerr := exec.Command(path, "-u", "-z", dir).CombinedOutput()
		if cerr != nil {
			return fmt.Errorf("%s: %v: %s", bin, cerr, out)
		}
		return nil
	}
	return err
}

// Wait blocks until the volume is unmounted, by Unmount or from outside.
func (m *MountPoint) Wait() { <-m.done }
