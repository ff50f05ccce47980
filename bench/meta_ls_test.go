package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

func TestMetaConfigPhases(t *testing.T) {
	got := (MetaConfig{}).Phases()
	if !slices.Equal(got, MetaPhases) {
		t.Errorf("Big 0: %v, want %v", got, MetaPhases)
	}
	got[0] = "changed"
	if MetaPhases[0] != MetaCreate {
		t.Error("changing what Phases returned changed MetaPhases")
	}
	want := []string{MetaCreate, MetaStat, MetaLs, MetaFind, MetaLsBig, MetaRead, MetaUnlink}
	if got := (MetaConfig{Big: 1}).Phases(); !slices.Equal(got, want) {
		t.Errorf("Big 1: %v, want %v", got, want)
	}
	if slices.Contains(MetaPhases, MetaLsBig) {
		t.Error("MetaConfig.Phases changed MetaPhases")
	}
}

// meta-ls-big lists every file of its directory, one latency per entry,
// and leaves nothing behind; the other phases do not see its files.
func TestRunMetaBig(t *testing.T) {
	dir := t.TempDir()
	var observed []string
	cfg := MetaConfig{Dir: dir, Workers: 3, Files: 50, Dirs: 4, FileSize: 7, Big: 40,
		Observe: func(phase string) func() {
			observed = append(observed, phase)
			return func() {}
		}}
	phases, err := RunMeta(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range phases {
		names = append(names, p.Name)
		want := map[string]int{MetaFind: 50 + 4, MetaLsBig: 40}[p.Name]
		if want == 0 {
			want = 50
		}
		if p.Ops != want {
			t.Errorf("%s: %d ops, want %d", p.Name, p.Ops, want)
		}
		if p.Elapsed <= 0 || p.P50 <= 0 || p.P99 < p.P50 {
			t.Errorf("%s: implausible %+v", p.Name, p)
		}
	}
	if !slices.Equal(names, cfg.Phases()) || !slices.Equal(observed, cfg.Phases()) {
		t.Errorf("phases %v, observed %v, want %v", names, observed, cfg.Phases())
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind %v (%v)", ents, err)
	}
}

// With DropCaches the caches are dropped right before each phase that
// reads, meta-ls-big's after its untimed creates; without, never. A
// failed drop fails the run, which cleans up.
func TestRunMetaDropsCaches(t *testing.T) {
	for _, drop := range []bool{false, true} {
		dir := t.TempDir()
		var events []string
		cfg := MetaConfig{Dir: dir, Workers: 2, Files: 20, Dirs: 3, FileSize: 5, Big: 6, DropCaches: drop,
			Observe: func(phase string) func() {
				events = append(events, phase)
				return func() {}
			}}
		_, err := runMeta(context.Background(), cfg, func(context.Context) error {
			big, _ := filepath.Glob(filepath.Join(dir, "meta-*", "big", "f*"))
			events = append(events, fmt.Sprintf("drop (%d big)", len(big)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := cfg.Phases()
		if drop {
			want = []string{MetaCreate, "drop (0 big)", MetaStat, "drop (0 big)", MetaLs, "drop (0 big)", MetaFind,
				"drop (6 big)", MetaLsBig, "drop (0 big)", MetaRead, MetaUnlink}
		}
		if !slices.Equal(events, want) {
			t.Errorf("DropCaches %v: %q, want %q", drop, events, want)
		}
	}

	dir := t.TempDir()
	_, err := runMeta(context.Background(), MetaConfig{Dir: dir, Workers: 1, Files: 3, Dirs: 1, DropCaches: true},
		func(context.Context) error { return errors.New("no root") })
	if err == nil || err.Error() != MetaStat+": no root" {
		t.Errorf("failed drop: %v, want %s: no root", err, MetaStat)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind %v (%v)", ents, err)
	}
}

// A file system that loses, adds or changes entries fails the phase that
// looks at them, and the run cleans up after itself.
func TestRunMetaVerifies(t *testing.T) {
	// Each case changes the tree as the phase starts, as a broken file
	// system would show it.
	for name, c := range map[string]struct {
		phase  string
		change func(root string) error
		want   string
	}{
		"stat size": {MetaStat, func(root string) error {
			return os.Truncate(filepath.Join(root, "d0001", "f0000005"), 1)
		}, "size 1, want 7"},
		"ls lost": {MetaLs, func(root string) error {
			return os.Remove(filepath.Join(root, "d0002", "f0000011"))
		}, `"f0000011" missing`},
		"ls extra": {MetaLs, func(root string) error {
			return os.WriteFile(filepath.Join(root, "d0000", "f0000004x"), nil, 0o644)
		}, `"f0000004x" unexpected`},
		"ls not a file": {MetaLs, func(root string) error {
			p := filepath.Join(root, "d0003", "f0000016")
			return errors.Join(os.Remove(p), os.Mkdir(p, 0o755))
		}, "want a regular file of 7 bytes"},
		"find lost": {MetaFind, func(root string) error {
			return os.Remove(filepath.Join(root, "d0000", "f0000004"))
		}, "4 directories, 17 files and 0 other entries, want 4 directories and 18 files"},
		"find extra": {MetaFind, func(root string) error {
			return errors.Join(os.Mkdir(filepath.Join(root, "d0001", "x"), 0o755),
				os.Symlink("x", filepath.Join(root, "d0001", "y")))
		}, "5 directories, 18 files and 1 other entries"},
		"ls-big lost": {MetaLsBig, func(root string) error {
			return os.Remove(filepath.Join(root, "big", "f0000009"))
		}, `"f0000009" missing`},
		"ls-big size": {MetaLsBig, func(root string) error {
			return os.Truncate(filepath.Join(root, "big", "f0000003"), 8)
		}, "size 8; want a regular file of 7 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var changeErr error
			cfg := MetaConfig{Dir: dir, Workers: 2, Files: 18, Dirs: 4, FileSize: 7, Big: 10,
				Observe: func(phase string) func() {
					if phase == c.phase {
						roots, _ := filepath.Glob(filepath.Join(dir, "meta-*"))
						if len(roots) != 1 {
							changeErr = os.ErrNotExist
						} else {
							changeErr = c.change(roots[0])
						}
					}
					return func() {}
				}}
			_, err := RunMeta(context.Background(), cfg)
			if changeErr != nil {
				t.Fatal(changeErr)
			}
			if err == nil || !strings.HasPrefix(err.Error(), c.phase+": ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %s: ...%s...", err, c.phase, c.want)
			}
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
				t.Errorf("left behind %v (%v)", ents, err)
			}
		})
	}
}

// xattrNode is a loopback node that counts getxattr calls by attribute
// and answers them with errno or, if errno is 0, with value.
type xattrNode struct {
	fs.LoopbackNode
	errno syscall.Errno
	value []byte
	mu    *sync.Mutex
	calls map[string]int
}

func (n *xattrNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.mu.Lock()
	n.calls[attr]++
	n.mu.Unlock()
	switch {
	case n.errno != 0:
		return 0, n.errno
	case len(dest) < len(n.value):
		return uint32(len(n.value)), syscall.ERANGE
	}
	return uint32(copy(dest, n.value)), 0
}

const mntPlaceholder = "MNT"

// aclRW is the xattr form of the ACL u::rw-,g::r--,o::r-- (version 2,
// then tag, permissions and id of each entry, little-endian): the kernel
// parses what a FUSE server answers for system.posix_acl_access.
const aclRW = "\x02\x00\x00\x00" +
	"\x01\x00\x06\x00\xff\xff\xff\xff" +
	"\x04\x00\x04\x00\xff\xff\xff\xff" +
	"\x20\x00\x04\x00\xff\xff\xff\xff"

// listLong asks the file system what ls -l asks: the SELinux label and
// ACL of every entry, the default ACL of the directory if it has no ACL,
// and nothing more once the file system says it has no such attributes.
func TestListLongXattrs(t *testing.T) {
	for _, c := range []struct {
		errno   syscall.Errno
		value   string // if errno is 0
		want    map[string]int
		wantErr string
	}{
		{syscall.ENODATA, "", map[string]int{"security.selinux": 6, "system.posix_acl_access": 6, "system.posix_acl_default": 1}, ""},
		{0, "", map[string]int{"security.selinux": 6, "system.posix_acl_access": 6, "system.posix_acl_default": 1}, ""},
		// A directory with an access ACL is not asked for its default one.
		{0, aclRW, map[string]int{"security.selinux": 6, "system.posix_acl_access": 6}, ""},
		{syscall.ENOTSUP, "", map[string]int{"security.selinux": 1, "system.posix_acl_access": 1}, ""},
		// ls reports other errors, and so does the benchmark.
		{syscall.EIO, "", map[string]int{"security.selinux": 1}, "lgetxattr security.selinux " + mntPlaceholder + ": input/output error"},
	} {
		back, mnt := t.TempDir(), t.TempDir()
		var want []string
		for i := range 5 {
			name := fmt.Sprintf("f%d", i)
			want = append(want, name)
			if err := os.WriteFile(filepath.Join(back, name), []byte("abc"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var st syscall.Stat_t
		if err := syscall.Stat(back, &st); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		calls := make(map[string]int)
		root := &fs.LoopbackRoot{Path: back, Dev: uint64(st.Dev)}
		root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
			return &xattrNode{LoopbackNode: fs.LoopbackNode{RootData: r}, errno: c.errno, value: []byte(c.value), mu: &mu, calls: calls}
		}
		root.RootNode = root.NewNode(root, nil, "", &st)
		srv, err := fs.Mount(mnt, root.RootNode, &fs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := &metaRun{cfg: MetaConfig{FileSize: 3}}
		var lat []time.Duration
		err = m.listLong(mnt, want, &lat)
		if uerr := srv.Unmount(); uerr != nil {
			t.Error(uerr)
		}
		srv.Wait()
		if wantErr := strings.ReplaceAll(c.wantErr, mntPlaceholder, mnt); err == nil && wantErr != "" || err != nil && err.Error() != wantErr {
			t.Errorf("%v %q: error %v, want %q", c.errno, c.value, err, wantErr)
		}
		if c.wantErr == "" && len(lat) != 5 {
			t.Errorf("%v: %d latencies, want one per entry", c.errno, len(lat))
		}
		if !maps.Equal(calls, c.want) {
			t.Errorf("%v %q: getxattr calls %v, want %v", c.errno, c.value, calls, c.want)
		}
	}
}

// walkFind sees every entry of the tree once, by type, and times every
// directory, the top one included.
func TestWalkFind(t *testing.T) {
	top := t.TempDir()
	for _, d := range []string{"a", "a/b", "a/b/c", "e"} {
		if err := os.Mkdir(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"f", "a/f", "a/b/c/f", "a/b/c/g"} {
		if err := os.WriteFile(filepath.Join(top, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(os.Symlink("a", filepath.Join(top, "l")), syscall.Mkfifo(filepath.Join(top, "a/p"), 0o644)); err != nil {
		t.Fatal(err)
	}
	m := &metaRun{}
	var c findCount
	var lat []time.Duration
	if err := m.walkFind(context.Background(), unix.AT_FDCWD, top, top, &c, &lat); err != nil {
		t.Fatal(err)
	}
	if c != (findCount{dirs: 4, files: 4, other: 2}) || len(lat) != 5 {
		t.Errorf("found %+v with %d latencies, want 4 dirs, 4 files, 2 others, 5 latencies", c, len(lat))
	}
	if err := m.walkFind(context.Background(), unix.AT_FDCWD, filepath.Join(top, "l"), "l", &c, &lat); !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
		t.Errorf("walk of a symlink: %v, want it refused like find's O_NOFOLLOW", err)
	}
}

// meta-create's cap is Runtime unless MetaCreateFor says otherwise, and
// MetaBig reaches RunMeta.
func TestMetaSettings(t *testing.T) {
	s, err := Config{Targets: []string{"local"}, KeepCaches: true}.settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.meta.CreateFor != DefaultRuntime || s.meta.Big != 0 {
		t.Errorf("defaults: cap %v, big %d", s.meta.CreateFor, s.meta.Big)
	}
	s, err = Config{Targets: []string{"local"}, KeepCaches: true, MetaCreateFor: time.Hour, MetaBig: 10000}.settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.meta.CreateFor != time.Hour || s.meta.Big != 10000 || s.report().MetaBig != 10000 {
		t.Errorf("set: cap %v, big %d, reported %+v", s.meta.CreateFor, s.meta.Big, s.report())
	}
}
