package access

import (
	"context"
	"path"
	"slices"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/xl"
	"golang.org/x/sys/unix"
)

var (
	root   = &xl.Call{}
	alice  = &xl.Call{Uid: 1000, Gid: 1000}
	bob    = &xl.Call{Uid: 2000, Gid: 2000}
	member = &xl.Call{Uid: 3000, Gid: 3000, Groups: []uint32{100}}
)

// fixture is a tree built as root directly on the leaf:
//
//	pub/       0777 root        sticky/  01777 root     priv/ 0700 root
//	d/         0755 root        alicedir/ 0755 alice    sgid/ 02777 root:100
type fixture struct {
	t    *testing.T
	leaf *memfs.FS
	x    *Access
	gfid map[string]xl.GFID
}

type obj struct {
	path     string
	mode     uint32 // with type bits
	uid, gid uint32
}

var tree = []obj{
	{"pub", syscall.S_IFDIR | 0o777, 0, 0},
	{"pub/exists", syscall.S_IFREG | 0o644, 0, 0},
	{"priv", syscall.S_IFDIR | 0o700, 0, 0},
	{"priv/f", syscall.S_IFREG | 0o644, 0, 0},
	{"sticky", syscall.S_IFDIR | syscall.S_ISVTX | 0o777, 0, 0},
	{"sticky/rootf", syscall.S_IFREG | 0o666, 0, 0},
	{"sticky/alicef", syscall.S_IFREG | 0o644, 1000, 1000},
	{"sticky/alicedir", syscall.S_IFDIR | 0o755, 1000, 1000},
	{"d", syscall.S_IFDIR | 0o755, 0, 0},
	{"d/f644", syscall.S_IFREG | 0o644, 0, 0},
	{"d/f600", syscall.S_IFREG | 0o600, 0, 0},
	{"d/f666", syscall.S_IFREG | 0o666, 0, 0},
	{"d/f000", syscall.S_IFREG, 0, 0},
	{"d/fx", syscall.S_IFREG | 0o755, 0, 0},
	{"d/alice", syscall.S_IFREG | 0o644, 1000, 1000},
	{"d/alice077", syscall.S_IFREG | 0o077, 1000, 1000},
	{"d/alicegrp", syscall.S_IFREG | 0o644, 1000, 100},
	{"d/mem", syscall.S_IFREG | 0o644, 3000, 3000},
	{"d/grp", syscall.S_IFREG | 0o640, 0, 100},
	{"d/suid", syscall.S_IFREG | syscall.S_ISUID | 0o777, 0, 0},
	{"d/fifo", syscall.S_IFIFO | 0o666, 0, 0},
	{"d/sub", syscall.S_IFDIR | 0o755, 0, 0},
	{"alicedir", syscall.S_IFDIR | 0o755, 1000, 1000},
	{"alicedir/a", syscall.S_IFREG | 0o644, 1000, 1000},
	{"alicedir/sub", syscall.S_IFDIR | 0o555, 1000, 1000},
	{"sgid", syscall.S_IFDIR | syscall.S_ISGID | 0o777, 0, 100},
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, leaf: memfs.New(memfs.Options{}), gfid: map[string]xl.GFID{".": xl.RootGFID}}
	x, err := New(f.leaf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.x = x
	ctx := context.Background()
	for _, o := range tree {
		g := xl.NewGFID()
		parent := f.g(path.Dir(o.path))
		var errno syscall.Errno
		if o.mode&syscall.S_IFMT == syscall.S_IFDIR {
			_, errno = f.leaf.Mkdir(ctx, parent, path.Base(o.path), g, o.mode)
		} else {
			_, errno = f.leaf.Mknod(ctx, parent, path.Base(o.path), g, o.mode, 0)
		}
		if errno != 0 {
			t.Fatalf("making %s: %v", o.path, errno)
		}
		// The mode again after the chown, which clears set-id bits.
		in := xl.SetattrIn{Valid: xl.SetUid | xl.SetGid | xl.SetMode, Uid: o.uid, Gid: o.gid, Mode: o.mode}
		if _, errno := f.leaf.Setattr(ctx, g, in); errno != 0 {
			t.Fatalf("chown %s: %v", o.path, errno)
		}
		f.gfid[o.path] = g
	}
	for _, p := range []string{"d/f644", "d/f600", "d/fifo"} {
		if errno := f.leaf.Setxattr(ctx, f.g(p), "user.x", []byte("v"), 0); errno != 0 {
			t.Fatal(errno)
		}
	}
	for _, n := range []string{"trusted.t", "security.s"} {
		for _, p := range []string{"d/f644", "d/f600"} {
			if errno := f.leaf.Setxattr(ctx, f.g(p), n, []byte("v"), 0); errno != 0 {
				t.Fatal(errno)
			}
		}
	}
	return f
}

func (f *fixture) g(p string) xl.GFID {
	g, ok := f.gfid[p]
	if !ok {
		f.t.Fatalf("fixture has no %q", p)
	}
	return g
}

func (f *fixture) attr(p string) xl.Attr {
	a, errno := f.leaf.Getattr(context.Background(), f.g(p))
	if errno != 0 {
		f.t.Fatalf("getattr %s: %v", p, errno)
	}
	return a
}

func as(c *xl.Call) context.Context { return xl.WithCall(context.Background(), c) }

func TestNewNeedsChild(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

func TestPermissions(t *testing.T) {
	type op func(ctx context.Context, f *fixture) syscall.Errno
	create := func(dir, name string, flags uint32) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, _, errno := f.x.Create(ctx, f.g(dir), name, xl.NewGFID(), flags, 0o644)
			return errno
		}
	}
	open := func(p string, flags uint32) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Open(ctx, f.g(p), flags)
			return errno
		}
	}
	lookup := func(dir, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Lookup(ctx, f.g(dir), name)
			return errno
		}
	}
	mkdir := func(dir, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Mkdir(ctx, f.g(dir), name, xl.NewGFID(), 0o755)
			return errno
		}
	}
	mknod := func(dir, name string, mode uint32) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Mknod(ctx, f.g(dir), name, xl.NewGFID(), mode, unix.Mkdev(1, 3))
			return errno
		}
	}
	symlink := func(dir, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Symlink(ctx, f.g(dir), name, xl.NewGFID(), "target")
			return errno
		}
	}
	link := func(src, dir, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Link(ctx, f.g(src), f.g(dir), name)
			return errno
		}
	}
	unlink := func(dir, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno { return f.x.Unlink(ctx, f.g(dir), name) }
	}
	rmdir := func(dir, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno { return f.x.Rmdir(ctx, f.g(dir), name) }
	}
	rename := func(od, on, nd, nn string, flags uint32) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			return f.x.Rename(ctx, f.g(od), on, f.g(nd), nn, flags)
		}
	}
	opendir := func(p string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Opendir(ctx, f.g(p))
			return errno
		}
	}
	readdir := func(p string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Readdir(ctx, xl.Fd{GFID: f.g(p)}, 0, 16)
			return errno
		}
	}
	readdirOpened := func(p string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			fd, errno := f.x.Opendir(as(root), f.g(p))
			if errno != 0 {
				return errno
			}
			_, errno = f.x.Readdir(ctx, fd, 0, 16)
			return errno
		}
	}
	access := func(p string, mask uint32) op {
		return func(ctx context.Context, f *fixture) syscall.Errno { return f.x.Access(ctx, f.g(p), mask) }
	}
	setattr := func(p string, in xl.SetattrIn) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Setattr(ctx, f.g(p), in)
			return errno
		}
	}
	truncate := func(p string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Truncate(ctx, f.g(p), 1)
			return errno
		}
	}
	getxattr := func(p, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			_, errno := f.x.Getxattr(ctx, f.g(p), name)
			return errno
		}
	}
	setxattr := func(p, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno {
			return f.x.Setxattr(ctx, f.g(p), name, []byte("w"), 0)
		}
	}
	removexattr := func(p, name string) op {
		return func(ctx context.Context, f *fixture) syscall.Errno { return f.x.Removexattr(ctx, f.g(p), name) }
	}
	explicit := xl.SetattrIn{Valid: xl.SetAtime | xl.SetMtime, Atime: xl.Timespec{Sec: 1}, Mtime: xl.Timespec{Sec: 2}}
	touch := xl.SetattrIn{Valid: xl.SetAtimeNow | xl.SetMtimeNow}

	for _, tc := range []struct {
		name string
		who  *xl.Call
		op   op
		want syscall.Errno
	}{
		{"LookupNeedsSearch", alice, lookup("priv", "f"), syscall.EACCES},
		{"LookupRootBypassesSearch", root, lookup("priv", "f"), 0},
		{"LookupInSearchableDir", alice, lookup("d", "f644"), 0},
		{"LookupThroughFileENOTDIR", alice, lookup("d/f644", "x"), syscall.ENOTDIR},

		{"CreateInUnwritableDir", alice, create("d", "new", syscall.O_WRONLY), syscall.EACCES},
		{"CreateInUnsearchableDir", alice, create("priv", "new", syscall.O_WRONLY), syscall.EACCES},
		{"CreateInWorldWritableDir", alice, create("pub", "new", syscall.O_WRONLY), 0},
		{"CreateRootAnywhere", root, create("priv", "new", syscall.O_WRONLY), 0},
		{"CreateExclExistingEEXISTBeforeEACCES", alice, create("d", "f644", syscall.O_WRONLY|syscall.O_EXCL), syscall.EEXIST},
		{"CreateExistingWritableOpensIt", alice, create("d", "f666", syscall.O_WRONLY), 0},
		{"CreateExistingUnwritable", alice, create("d", "f644", syscall.O_WRONLY), syscall.EACCES},
		{"CreateExistingDirEISDIR", alice, create("d", "sub", syscall.O_RDONLY), syscall.EISDIR},

		{"MkdirInUnwritableDir", alice, mkdir("d", "new"), syscall.EACCES},
		{"MkdirExistingEEXISTBeforeEACCES", alice, mkdir("d", "sub"), syscall.EEXIST},
		{"MkdirInUnsearchableDirEACCES", alice, mkdir("priv", "f"), syscall.EACCES},
		{"MkdirInWorldWritableDir", alice, mkdir("pub", "new"), 0},

		{"MknodFifoInWorldWritableDir", alice, mknod("pub", "p", syscall.S_IFIFO|0o644), 0},
		{"MknodCharDeviceNeedsRoot", alice, mknod("pub", "c", syscall.S_IFCHR|0o644), syscall.EPERM},
		{"MknodCharDeviceEACCESFirst", alice, mknod("d", "c", syscall.S_IFCHR|0o644), syscall.EACCES},
		{"MknodCharDeviceExistingEEXIST", alice, mknod("pub", "exists", syscall.S_IFCHR|0o644), syscall.EEXIST},
		{"MknodCharDeviceRoot", root, mknod("d", "c", syscall.S_IFCHR|0o644), 0},

		{"SymlinkInUnwritableDir", alice, symlink("d", "l"), syscall.EACCES},
		{"SymlinkInWorldWritableDir", alice, symlink("pub", "l"), 0},

		{"LinkOthersUnwritableFileProtected", alice, link("d/f644", "pub", "l"), syscall.EPERM},
		{"LinkOthersReadWriteFile", alice, link("d/f666", "pub", "l"), 0},
		{"LinkOthersSetuidFileProtected", alice, link("d/suid", "pub", "l"), syscall.EPERM},
		{"LinkOwnFile", alice, link("d/alice", "pub", "l"), 0},
		{"LinkIntoUnwritableDir", alice, link("d/alice", "d", "l"), syscall.EACCES},
		{"LinkOverExistingEEXIST", alice, link("d/alice", "d", "f644"), syscall.EEXIST},
		{"LinkRootAnything", root, link("d/f600", "pub", "l"), 0},

		{"UnlinkInUnwritableDir", alice, unlink("d", "f666"), syscall.EACCES},
		{"UnlinkStickyOthersFile", alice, unlink("sticky", "rootf"), syscall.EPERM},
		{"UnlinkStickyOwnFile", alice, unlink("sticky", "alicef"), 0},
		{"UnlinkStickyByOtherUser", bob, unlink("sticky", "alicef"), syscall.EPERM},
		{"UnlinkStickyByRoot", root, unlink("sticky", "alicef"), 0},
		{"UnlinkMissingENOENT", alice, unlink("pub", "missing"), syscall.ENOENT},
		{"UnlinkMissingInUnwritableDirENOENT", alice, unlink("d", "missing"), syscall.ENOENT},
		{"UnlinkInUnsearchableDir", alice, unlink("priv", "f"), syscall.EACCES},

		{"RmdirStickyOwnDir", alice, rmdir("sticky", "alicedir"), 0},
		{"RmdirStickyOthersDir", bob, rmdir("sticky", "alicedir"), syscall.EPERM},
		{"RmdirInUnwritableDir", alice, rmdir("d", "sub"), syscall.EACCES},

		{"RenameFromUnwritableDir", alice, rename("d", "f666", "pub", "r", 0), syscall.EACCES},
		{"RenameIntoUnwritableDir", alice, rename("alicedir", "a", "d", "r", 0), syscall.EACCES},
		{"RenameStickyOthersSource", alice, rename("sticky", "rootf", "sticky", "r", 0), syscall.EPERM},
		{"RenameStickyOthersTarget", alice, rename("sticky", "alicef", "sticky", "rootf", 0), syscall.EPERM},
		{"RenameStickyOwnFile", alice, rename("sticky", "alicef", "sticky", "r", 0), 0},
		{"RenameDirToNewParentNeedsWriteOnIt", alice, rename("alicedir", "sub", "pub", "sub", 0), syscall.EACCES},
		{"RenameDirWithinParent", alice, rename("alicedir", "sub", "alicedir", "sub2", 0), 0},
		{"RenameOwnFileAcrossDirs", alice, rename("alicedir", "a", "pub", "a", 0), 0},
		{"RenameNoreplaceEEXISTBeforeEACCES", alice, rename("d", "f666", "d", "f644", xl.RenameNoreplace), syscall.EEXIST},
		{"RenameExchangeMissingTargetENOENT", alice, rename("alicedir", "a", "alicedir", "missing", xl.RenameExchange), syscall.ENOENT},
		{"RenameMissingSourceENOENT", alice, rename("pub", "missing", "pub", "x", 0), syscall.ENOENT},
		{"RenameRootAnything", root, rename("d", "f600", "priv", "x", 0), 0},

		{"OpenReadPrivateFile", alice, open("d/f600", syscall.O_RDONLY), syscall.EACCES},
		{"OpenReadPublicFile", alice, open("d/f644", syscall.O_RDONLY), 0},
		{"OpenWriteReadOnlyFile", alice, open("d/f644", syscall.O_WRONLY), syscall.EACCES},
		{"OpenTruncNeedsWrite", alice, open("d/f644", syscall.O_RDONLY|syscall.O_TRUNC), syscall.EACCES},
		{"OpenReadWriteWorldWritable", alice, open("d/f666", syscall.O_RDWR), 0},
		{"OpenGroupMemberReads", member, open("d/grp", syscall.O_RDONLY), 0},
		{"OpenGroupMemberCannotWrite", member, open("d/grp", syscall.O_WRONLY), syscall.EACCES},
		{"OpenNonMemberGroupFile", bob, open("d/grp", syscall.O_RDONLY), syscall.EACCES},
		{"OpenOwnerClassWinsOverOther", alice, open("d/alice077", syscall.O_RDONLY), syscall.EACCES},
		{"OpenRootIgnoresModeBits", root, open("d/f000", syscall.O_RDWR), 0},
		{"OpenDirForWriteEISDIR", alice, open("d", syscall.O_WRONLY), syscall.EISDIR},
		{"OpenNoatimeOthersFile", alice, open("d/f644", syscall.O_RDONLY|syscall.O_NOATIME), syscall.EPERM},
		{"OpenNoatimeOwnFile", alice, open("d/alice", syscall.O_RDONLY|syscall.O_NOATIME), 0},

		{"OpendirUnreadable", alice, opendir("priv"), syscall.EACCES},
		{"OpendirReadable", alice, opendir("d"), 0},
		{"OpendirFileENOTDIR", alice, opendir("d/f644"), syscall.ENOTDIR},
		// An anonymous fd was opened by no Opendir: Readdir checks as it.
		{"ReaddirAnonymousUnreadable", alice, readdir("priv"), syscall.EACCES},
		{"ReaddirAnonymousReadable", alice, readdir("d"), 0},
		{"ReaddirAnonymousRoot", root, readdir("priv"), 0},
		{"ReaddirAnonymousFileENOTDIR", alice, readdir("d/f644"), syscall.ENOTDIR},
		// An fd opened holds the permission it was opened with.
		{"ReaddirOpenedAsRoot", alice, readdirOpened("priv"), 0},

		{"AccessReadPublic", alice, access("d/f644", unix.R_OK), 0},
		{"AccessWritePublic", alice, access("d/f644", unix.W_OK), syscall.EACCES},
		{"AccessExists", alice, access("d/f000", unix.F_OK), 0},
		{"AccessRootWriteAnything", root, access("d/f000", unix.R_OK|unix.W_OK), 0},
		{"AccessRootExecNeedsExecBit", root, access("d/f644", unix.X_OK), syscall.EACCES},
		{"AccessRootExecExecutable", root, access("d/fx", unix.X_OK), 0},
		{"AccessRootSearchDir", root, access("priv", unix.X_OK), 0},
		{"AccessBadMask", alice, access("d/f644", 8), syscall.EINVAL},

		{"ChmodOthersFile", alice, setattr("d/f644", xl.SetattrIn{Valid: xl.SetMode, Mode: 0o777}), syscall.EPERM},
		{"ChmodOwnFile", alice, setattr("d/alice", xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600}), 0},
		{"ChmodRoot", root, setattr("d/f644", xl.SetattrIn{Valid: xl.SetMode, Mode: 0o600}), 0},
		{"ChownGiveAway", alice, setattr("d/alice", xl.SetattrIn{Valid: xl.SetUid, Uid: 2000}), syscall.EPERM},
		{"ChownToSelf", alice, setattr("d/alice", xl.SetattrIn{Valid: xl.SetUid, Uid: 1000}), 0},
		{"ChownOthersFile", alice, setattr("d/f666", xl.SetattrIn{Valid: xl.SetUid, Uid: 1000}), syscall.EPERM},
		{"ChownRoot", root, setattr("d/f644", xl.SetattrIn{Valid: xl.SetUid | xl.SetGid, Uid: 5, Gid: 5}), 0},
		{"ChgrpToForeignGroup", alice, setattr("d/alice", xl.SetattrIn{Valid: xl.SetGid, Gid: 100}), syscall.EPERM},
		{"ChgrpToOwnSupplementaryGroup", member, setattr("d/mem", xl.SetattrIn{Valid: xl.SetGid, Gid: 100}), 0},
		{"ChgrpOthersFile", member, setattr("d/grp", xl.SetattrIn{Valid: xl.SetGid, Gid: 100}), syscall.EPERM},
		{"UtimesExplicitOthersWritableFile", alice, setattr("d/f666", explicit), syscall.EPERM},
		{"UtimesExplicitOwnFile", alice, setattr("d/alice", explicit), 0},
		{"UtimesNowWritableFile", alice, setattr("d/f666", touch), 0},
		{"UtimesNowUnwritableFile", alice, setattr("d/f644", touch), syscall.EACCES},
		{"UtimesNowOneTimeIsOwners", alice, setattr("d/f666", xl.SetattrIn{Valid: xl.SetMtimeNow}), syscall.EPERM},
		{"SetSizeWritable", alice, setattr("d/f666", xl.SetattrIn{Valid: xl.SetSize, Size: 1}), 0},
		{"SetSizeUnwritable", alice, setattr("d/f644", xl.SetattrIn{Valid: xl.SetSize, Size: 1}), syscall.EACCES},
		{"SetSizeDirEISDIR", alice, setattr("d", xl.SetattrIn{Valid: xl.SetSize, Size: 1}), syscall.EISDIR},
		{"SetSizeFifoEINVAL", alice, setattr("d/fifo", xl.SetattrIn{Valid: xl.SetSize, Size: 1}), syscall.EINVAL},

		{"TruncateUnwritable", alice, truncate("d/f644"), syscall.EACCES},
		{"TruncateWritable", alice, truncate("d/f666"), 0},
		{"TruncateDirEISDIR", alice, truncate("d"), syscall.EISDIR},

		{"GetUserXattrReadable", alice, getxattr("d/f644", "user.x"), 0},
		{"GetUserXattrUnreadable", alice, getxattr("d/f600", "user.x"), syscall.EACCES},
		{"SetUserXattrUnwritable", alice, setxattr("d/f644", "user.y"), syscall.EACCES},
		{"SetUserXattrWritable", alice, setxattr("d/f666", "user.y"), 0},
		{"RemoveUserXattrUnwritable", alice, removexattr("d/f644", "user.x"), syscall.EACCES},
		{"SetUserXattrOnFifo", alice, setxattr("d/fifo", "user.y"), syscall.EPERM},
		{"GetUserXattrOnFifoInvisible", alice, getxattr("d/fifo", "user.x"), syscall.ENODATA},
		{"SetUserXattrOnOthersStickyDir", alice, setxattr("sticky", "user.y"), syscall.EPERM},
		{"SetTrustedXattrNonRoot", alice, setxattr("d/alice", "trusted.t"), syscall.EPERM},
		{"RemoveTrustedXattrNonRoot", alice, removexattr("d/f644", "trusted.t"), syscall.EPERM},
		{"GetTrustedXattrNonRootInvisible", alice, getxattr("d/f644", "trusted.t"), syscall.ENODATA},
		{"GetTrustedXattrRoot", root, getxattr("d/f600", "trusted.t"), 0},
		{"SetTrustedXattrRoot", root, setxattr("d/f600", "trusted.t"), 0},
		{"SetSecurityXattrNonRoot", alice, setxattr("d/alice", "security.s"), syscall.EPERM},
		{"GetSecurityXattrNeedsNoPermission", alice, getxattr("d/f600", "security.s"), 0},
		{"SetPosixACLUnsupported", root, setxattr("d/f644", "system.posix_acl_access"), syscall.EOPNOTSUPP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if got := tc.op(as(tc.who), f); got != tc.want {
				t.Errorf("uid %d: got %v (%d), want %v (%d)", tc.who.Uid, got, got, tc.want, tc.want)
			}
		})
	}
}

func TestListxattrHidesTrustedFromNonRoot(t *testing.T) {
	f := newFixture(t)
	got, errno := f.x.Listxattr(as(alice), f.g("d/f644"))
	if errno != 0 || !slices.Equal(got, []string{"security.s", "user.x"}) {
		t.Errorf("alice: got %q, %v; want [security.s user.x]", got, errno)
	}
	got, errno = f.x.Listxattr(as(root), f.g("d/f644"))
	if errno != 0 || !slices.Equal(got, []string{"security.s", "trusted.t", "user.x"}) {
		t.Errorf("root: got %q, %v; want all three", got, errno)
	}
}

func TestChmodByNonMemberClearsSetgid(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		path string
		want uint32
	}{
		{"d/alice", syscall.S_ISGID | 0o755}, // alice is in group 1000
		{"d/alicegrp", 0o755},                // but not in group 100
	} {
		in := xl.SetattrIn{Valid: xl.SetMode, Mode: syscall.S_ISGID | 0o755}
		if _, errno := f.x.Setattr(as(alice), f.g(tc.path), in); errno != 0 {
			t.Fatalf("chmod %s: %v", tc.path, errno)
		}
		if got := f.attr(tc.path).Mode &^ syscall.S_IFMT; got != tc.want {
			t.Errorf("%s: mode %#o, want %#o", tc.path, got, tc.want)
		}
	}
}

func TestCreateInSetgidDirStripsSetgidForNonMember(t *testing.T) {
	f := newFixture(t)
	ctx := as(alice)
	fd, a, errno := f.x.Create(ctx, f.g("sgid"), "f", xl.NewGFID(), syscall.O_WRONLY, syscall.S_ISGID|0o755)
	if errno != 0 {
		t.Fatal(errno)
	}
	f.x.Release(ctx, fd)
	if a.Mode&syscall.S_ISGID != 0 {
		t.Errorf("mode %#o keeps S_ISGID for a caller outside the directory's group", a.Mode)
	}
	a, errno = f.x.Mknod(as(member), f.g("sgid"), "g", xl.NewGFID(), syscall.S_IFREG|syscall.S_ISGID|0o755, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if a.Mode&syscall.S_ISGID == 0 {
		t.Errorf("mode %#o lost S_ISGID for a group member", a.Mode)
	}
}

// A write by a user clears the set-id bits the store, running as root,
// would keep; a write by root does not.
func TestWriteByUserClearsSetuid(t *testing.T) {
	for _, tc := range []struct {
		name string
		who  *xl.Call
		mod  func(ctx context.Context, x *Access, fd xl.Fd) syscall.Errno
		want uint32
	}{
		{"Write", alice, func(ctx context.Context, x *Access, fd xl.Fd) syscall.Errno {
			_, errno := x.Write(ctx, fd, []byte("x"), 0)
			return errno
		}, 0o777},
		{"Fallocate", alice, func(ctx context.Context, x *Access, fd xl.Fd) syscall.Errno {
			return x.Fallocate(ctx, fd, 0, 0, 10)
		}, 0o777},
		{"WriteByRoot", root, func(ctx context.Context, x *Access, fd xl.Fd) syscall.Errno {
			_, errno := x.Write(ctx, fd, []byte("x"), 0)
			return errno
		}, syscall.S_ISUID | 0o777},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := as(tc.who)
			fd, errno := f.x.Open(ctx, f.g("d/suid"), syscall.O_WRONLY)
			if errno != 0 {
				t.Fatal(errno)
			}
			if got := f.attr("d/suid").Mode &^ syscall.S_IFMT; got != syscall.S_ISUID|0o777 {
				t.Fatalf("open changed mode to %#o", got)
			}
			if errno := tc.mod(ctx, f.x, fd); errno != 0 {
				t.Fatal(errno)
			}
			if errno := f.x.Release(ctx, fd); errno != 0 {
				t.Fatal(errno)
			}
			if got := f.attr("d/suid").Mode &^ syscall.S_IFMT; got != tc.want {
				t.Errorf("mode %#o, want %#o", got, tc.want)
			}
		})
	}
}

// Once more set-id files were seen than the set of them holds, a write
// by a user still clears the bits of a file that did not fit.
func TestWriteClearsSetuidPastTheBound(t *testing.T) {
	f := newFixture(t)
	f.x.maxPrivs = 0
	ctx := as(alice)
	fd, errno := f.x.Open(ctx, f.g("d/suid"), syscall.O_WRONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	if len(f.x.privs) != 0 || !f.x.overflow.Load() {
		t.Fatalf("the set holds %d files past a bound of 0, overflow %v", len(f.x.privs), f.x.overflow.Load())
	}
	if _, errno := f.x.Write(ctx, fd, []byte("x"), 0); errno != 0 {
		t.Fatal(errno)
	}
	if errno := f.x.Release(ctx, fd); errno != 0 {
		t.Fatal(errno)
	}
	if got := f.attr("d/suid").Mode &^ syscall.S_IFMT; got != 0o777 {
		t.Errorf("mode %#o, want %#o", got, 0o777)
	}
}

func TestTruncateByUserClearsSetuid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		trunc func(ctx context.Context, x *Access, g xl.GFID) syscall.Errno
	}{
		{"Truncate", func(ctx context.Context, x *Access, g xl.GFID) syscall.Errno {
			_, errno := x.Truncate(ctx, g, 0)
			return errno
		}},
		{"SetattrSize", func(ctx context.Context, x *Access, g xl.GFID) syscall.Errno {
			_, errno := x.Setattr(ctx, g, xl.SetattrIn{Valid: xl.SetSize})
			return errno
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if errno := tc.trunc(as(alice), f.x, f.g("d/suid")); errno != 0 {
				t.Fatal(errno)
			}
			if got := f.attr("d/suid").Mode &^ syscall.S_IFMT; got != 0o777 {
				t.Errorf("mode %#o, want 0777", got)
			}
		})
	}
}

// Set-id bits set after a user opened the file for writing are still
// cleared by the user's next write: the check is made at write time.
func TestWriteClearsSetuidSetAfterOpen(t *testing.T) {
	f := newFixture(t)
	fd, errno := f.x.Open(as(alice), f.g("d/f666"), syscall.O_WRONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer f.x.Release(as(alice), fd)
	write := func(who *xl.Call) {
		t.Helper()
		if _, errno := f.x.Write(as(who), fd, []byte("x"), 0); errno != 0 {
			t.Fatal(errno)
		}
	}
	mode := func() uint32 { return f.attr("d/f666").Mode &^ syscall.S_IFMT }
	write(alice)
	if _, errno := f.x.Setattr(as(root), f.g("d/f666"), xl.SetattrIn{Valid: xl.SetMode, Mode: syscall.S_ISUID | syscall.S_ISGID | 0o676}); errno != 0 {
		t.Fatal(errno)
	}
	write(root)
	if got := mode(); got != syscall.S_ISUID|syscall.S_ISGID|0o676 {
		t.Fatalf("root's write left mode %#o", got)
	}
	write(alice)
	if got := mode(); got != 0o676 {
		t.Fatalf("alice's write left mode %#o, want 0676", got)
	}
	// Setgid without group execute is a mandatory-locking mark, not a
	// privilege: a write keeps it.
	if _, errno := f.x.Setattr(as(root), f.g("d/f666"), xl.SetattrIn{Valid: xl.SetMode, Mode: syscall.S_ISGID | 0o666}); errno != 0 {
		t.Fatal(errno)
	}
	write(alice)
	if got := mode(); got != syscall.S_ISGID|0o666 {
		t.Fatalf("alice's write left mode %#o, want %#o", got, syscall.S_ISGID|0o666)
	}
}
