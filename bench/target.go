package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// VolumeSpec is the layout asked for by a "gluon:..." or "gluster:..."
// target: Distribute replica sets of Replica bricks each.
type VolumeSpec struct {
	Replica    int
	Distribute int
}

// Bricks is the number of bricks the volume needs.
func (v VolumeSpec) Bricks() int { return v.Replica * v.Distribute }

func (v VolumeSpec) String() string {
	return fmt.Sprintf("replica=%d,distribute=%d", v.Replica, v.Distribute)
}

const maxBricks = 64

// ParseVolumeSpec parses "replica=N[,distribute=M]" (both default to 1),
// with or without a leading "gluon:" or "gluster:".
func ParseVolumeSpec(s string) (VolumeSpec, error) {
	v := VolumeSpec{Replica: 1, Distribute: 1}
	for _, kind := range []string{kindGluon, kindGluster} {
		if s == kind {
			s = ""
		}
		s = strings.TrimPrefix(s, kind+":")
	}
	if s == "" {
		return v, nil
	}
	seen := make(map[string]bool)
	for _, kv := range strings.Split(s, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return v, fmt.Errorf("volume spec %q: %q is not key=value", s, kv)
		}
		if seen[k] {
			return v, fmt.Errorf("volume spec %q: %s given twice", s, k)
		}
		seen[k] = true
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return v, fmt.Errorf("volume spec %q: %s must be a positive integer", s, k)
		}
		switch k {
		case "replica":
			v.Replica = n
		case "distribute":
			v.Distribute = n
		default:
			return v, fmt.Errorf("volume spec %q: unknown key %q (want replica, distribute)", s, k)
		}
	}
	if v.Bricks() > maxBricks {
		return v, fmt.Errorf("volume spec %q: %d bricks, at most %d", s, v.Bricks(), maxBricks)
	}
	return v, nil
}

// Target kinds.
const (
	kindDir      = "dir"
	kindLocal    = "local"
	kindLoopback = "loopback"
	// kindLoopbackNP is the loopback with FUSE passthrough off: every
	// READ and WRITE is served by the Go daemon, as gluon's are, so it is
	// the fair ceiling for a FUSE file system that serves data itself.
	kindLoopbackNP = "loopback-np"
	// kindLoopbackR3 is loopback-np keeping every file in three copies
	// on the same disk, synced to a quorum of two: the ceiling for a
	// three-way replicated FUSE file system (see replicaNode).
	kindLoopbackR3 = "loopback-r3"
	kindGluon      = "gluon"
	kindGluster    = "gluster"
)

// targetSpec is a parsed Config.Targets entry.
type targetSpec struct {
	label string // the entry as given: names the target in the report
	kind  string
	vol   VolumeSpec // gluon, gluster
	path  string     // dir
}

func parseTarget(s string) (targetSpec, error) {
	t := targetSpec{label: s}
	name, _, _ := strings.Cut(s, ":")
	switch {
	case s == kindLocal || s == kindLoopback || s == kindLoopbackNP || s == kindLoopbackR3:
		t.kind = s
		return t, nil
	case name == kindGluon || name == kindGluster:
		t.kind = name
		v, err := ParseVolumeSpec(s)
		t.vol = v
		return t, err
	case s == "":
		return t, errors.New("empty target")
	}
	fi, err := os.Stat(s)
	if err != nil || !fi.IsDir() {
		return t, fmt.Errorf("target %q is neither local, loopback, loopback-np, loopback-r3, gluon:replica=N[,distribute=M], gluster:replica=N[,distribute=M] nor an existing directory", s)
	}
	t.kind = kindDir
	t.path = s
	return t, nil
}

// TargetInfo describes a target in the report.
type TargetInfo struct {
	Name   string `json:"name"`    // as given in Config.Targets
	Dir    string `json:"dir"`     // where the workloads ran
	FSType string `json:"fs_type"` // file system type of Dir, from statfs
	// Setup is how long starting the target took (gluon up, glusterd and
	// the volume, the loopback mount). Layout is how long writing the
	// LayoutBytes of shared input files took, once, before the rounds.
	Setup       time.Duration `json:"setup_ns"`
	Layout      time.Duration `json:"layout_ns"`
	LayoutBytes int64         `json:"layout_bytes"`
}

// target is a started target: a directory to run in, the processes that
// serve it, and how to tear it down.
type target struct {
	info  TargetInfo
	dir   string
	pids  func() []int // nil: nothing to measure (the kernel does the work)
	close func() error
	// data is the directory of the files the workloads share (see
	// layoutData); dataErr why laying them out failed.
	data    string
	dataErr error
	// disk is a directory on the block device the target writes to
	// (its files, bricks or backing directory); "" when unknown, as for
	// an existing directory, which may be a remote mount.
	disk string
}

// openTarget sets up a target; the caller must close it.
func openTarget(ctx context.Context, s targetSpec, c *settings) (*target, error) {
	var t *target
	var err error
	switch s.kind {
	case kindDir:
		t, err = openDir(s.path)
	case kindLocal:
		t, err = openLocal(c.workDir)
	case kindLoopback:
		t, err = openLoopback(c.workDir, true)
	case kindLoopbackNP:
		t, err = openLoopback(c.workDir, false)
	case kindLoopbackR3:
		t, err = openLoopbackR3(c.workDir)
	case kindGluon:
		t, err = openGluon(ctx, c.starter, s.vol)
	case kindGluster:
		t, err = openGluster(ctx, c.workDir, s.vol, c.log)
	default:
		err = fmt.Errorf("unknown target kind %q", s.kind)
	}
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", s.label, err)
	}
	if s.kind != kindDir {
		t.disk = c.workDir
	}
	t.info.Name = s.label
	t.info.Dir = t.dir
	t.info.FSType = fsType(t.dir)
	return t, nil
}

// openDir uses an existing directory, typically a mount point. The
// workloads only touch the scratch directories they create in it.
func openDir(dir string) (*target, error) {
	probe, err := os.MkdirTemp(dir, ".gluon-bench-probe-")
	if err != nil {
		return nil, fmt.Errorf("directory not writable: %w", err)
	}
	if err := os.Remove(probe); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &target{dir: abs, close: func() error { return nil }}, nil
}

// openLocal makes a temporary directory under workDir: the bare disk the
// other targets are compared with.
func openLocal(workDir string) (*target, error) {
	dir, err := os.MkdirTemp(workDir, "gluon-bench-local-")
	if err != nil {
		return nil, err
	}
	return &target{dir: dir, close: func() error { return os.RemoveAll(dir) }}, nil
}

// loopbackTimeout is the kernel's entry and attribute cache time for the
// loopback mount; 1 s is also GlusterFS's FUSE default.
const loopbackTimeout = time.Second

// openLoopback mounts a go-fuse loopback (passthrough) file system of a
// temporary directory inside this process: the fastest a Go FUSE file
// system can be on this machine. On kernels with FUSE passthrough, go-fuse
// lets the kernel serve reads and writes of open files directly.
func openLoopback(workDir string, passthrough bool) (_ *target, err error) {
	base, err := os.MkdirTemp(workDir, "gluon-bench-loopback-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(base)
		}
	}()
	var node func(*fs.LoopbackRoot) fs.InodeEmbedder
	if !passthrough {
		node = func(r *fs.LoopbackRoot) fs.InodeEmbedder { return &daemonNode{fs.LoopbackNode{RootData: r}} }
	}
	return mountLoopback(base, node, nil)
}

// mountLoopback mounts base/mnt as a loopback of base/data, with nodes
// made by node (nil: go-fuse's own). Closing the target unmounts it, runs
// drain (if not nil) once the server has stopped, and removes base.
func mountLoopback(base string, node func(*fs.LoopbackRoot) fs.InodeEmbedder, drain func()) (*target, error) {
	data, mnt := filepath.Join(base, "data"), filepath.Join(base, "mnt")
	for _, d := range []string{data, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	root, err := fs.NewLoopbackRoot(data)
	if err != nil {
		return nil, err
	}
	if node != nil {
		lr := root.(*fs.LoopbackNode).RootData
		lr.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
			return node(r)
		}
		root = node(lr)
		lr.RootNode = root
	}
	timeout := loopbackTimeout
	srv, err := fs.Mount(mnt, root, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{FsName: "gluon-bench-loopback", Name: "loopback"},
	})
	if err != nil {
		return nil, fmt.Errorf("mount loopback (needs /dev/fuse and root or fusermount3): %w", err)
	}
	self := os.Getpid()
	return &target{
		dir:  mnt,
		pids: func() []int { return []int{self} },
		close: func() error {
			if err := srv.Unmount(); err != nil {
				return fmt.Errorf("unmount %s: %w", mnt, err)
			}
			srv.Wait()
			if drain != nil {
				drain()
			}
			return os.RemoveAll(base)
		},
	}, nil
}

// daemonNode is a loopback node whose files refuse FUSE passthrough.
type daemonNode struct{ fs.LoopbackNode }

// daemonFile hides the backing fd from the kernel, so data goes through
// the daemon.
type daemonFile struct{ *fs.LoopbackFile }

func (daemonFile) PassthroughFd() (int, bool) { return -1, false }

func daemonHandle(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return daemonFile{lf}
	}
	return fh
}

func (n *daemonNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, e := n.LoopbackNode.Open(ctx, flags)
	return daemonHandle(fh), fl, e
}

func (n *daemonNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, e := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, daemonHandle(fh), fl, e
}

// fsType names the file system dir is on.
func fsType(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return ""
	}
	switch int64(st.Type) {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// ensureUnmounted detaches whatever is mounted on dir, including a FUSE
// mount whose server has died (stat fails with ENOTCONN), so that removing
// its parent never descends into a live file system.
func ensureUnmounted(dir string) error {
	var st, pst unix.Stat_t
	if err := unix.Stat(filepath.Dir(dir), &pst); err != nil {
		return err
	}
	err := unix.Stat(dir, &st)
	if errors.Is(err, unix.ENOENT) || err == nil && st.Dev == pst.Dev {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}
