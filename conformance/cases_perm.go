package conformance

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// permCases check permissions for an unprivileged caller (uid and gid
// 65534, no supplementary groups) and root's bypass. Each has a positive
// control, so that a view which cannot reach the files at all fails
// instead of passing for the wrong reason.
var permCases = []testCase{
	{"NonRootReadsPublicFile", nonRootReadsPublicFile},
	{"NonRootCreateInRootDirEACCES", nonRootCreateInRootDir},
	{"NonRootOpenPrivateFileEACCES", nonRootOpenPrivateFile},
	{"NonRootCreatesOwnFilesInWorldWritableDir", nonRootCreatesOwnFiles},
	{"NonRootSearchDeniedEACCES", nonRootSearchDenied},
	{"NonRootChmodOthersFileEPERM", nonRootChmodOthers},
	{"NonRootChownEPERM", nonRootChown},
	{"NonRootUtimesNeedsOwnerOrWrite", nonRootUtimes},
	{"NonRootAccessChecksModeBits", nonRootAccess},
	{"NonRootXattrPermissions", nonRootXattr},
	{"StickyDirProtectsOthersEntries", stickyDir},
	{"RootBypassesPermissionBits", rootBypasses},
}

func user(fsys FS) FS { return fsys.AsUser(userUid, userGid) }

func openClose(fsys FS, p string, flags int) error {
	f, err := fsys.OpenFile(p, flags, 0o644)
	if err == nil {
		err = f.Close()
	}
	return err
}

func nonRootReadsPublicFile(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("public"))
	u := user(fsys)
	a, err := u.Stat("f")
	ok(t, err)
	if a.Size != 6 {
		t.Errorf("size %d, want 6", a.Size)
	}
	wantContent(t, u, "f", []byte("public"))
	ents, err := u.ReadDir(".")
	ok(t, err)
	if len(ents) != 1 || ents[0].Name != "f" {
		t.Errorf("readdir as user: %q", names(ents))
	}
}

func nonRootCreateInRootDir(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	u := user(fsys)
	wantErr(t, openClose(u, "d/f", unix.O_WRONLY|unix.O_CREAT), syscall.EACCES, "create in a root-owned 0755 directory")
	wantErr(t, u.Mkdir("d/sub", 0o755), syscall.EACCES, "mkdir in a root-owned 0755 directory")
	wantErr(t, u.Symlink("t", "d/l"), syscall.EACCES, "symlink in a root-owned 0755 directory")
	wantErr(t, u.Mknod("d/p", unix.S_IFIFO|0o644, 0), syscall.EACCES, "mknod in a root-owned 0755 directory")
	writeFile(t, fsys, "d/mine", nil)
	wantErr(t, u.Unlink("d/mine"), syscall.EACCES, "unlink in a root-owned 0755 directory")
	wantErr(t, u.Rename("d/mine", "d/yours", 0), syscall.EACCES, "rename in a root-owned 0755 directory")
	ents, err := fsys.ReadDir("d")
	ok(t, err)
	if len(ents) != 1 {
		t.Errorf("denied calls left entries behind: %q", names(ents))
	}
	// Existing names are EEXIST even where the caller could not create.
	wantErr(t, u.Mkdir("d/mine", 0o755), syscall.EEXIST, "mkdir over an existing name in an unwritable directory")
}

func nonRootOpenPrivateFile(t *testing.T, fsys FS) {
	writeFile(t, fsys, "private", []byte("secret"))
	ok(t, fsys.Chmod("private", 0o600))
	writeFile(t, fsys, "public", []byte("open"))
	u := user(fsys)
	wantErr(t, openClose(u, "private", unix.O_RDONLY), syscall.EACCES, "open a 0600 root file for reading")
	wantErr(t, openClose(u, "public", unix.O_WRONLY), syscall.EACCES, "open a 0644 root file for writing")
	wantErr(t, openClose(u, "public", unix.O_RDONLY|unix.O_TRUNC), syscall.EACCES, "open a 0644 root file with O_TRUNC")
	wantErr(t, u.Truncate("public", 0), syscall.EACCES, "truncate a 0644 root file")
	ok(t, openClose(u, "public", unix.O_RDONLY))
	wantContent(t, fsys, "public", []byte("open"))
}

func nonRootCreatesOwnFiles(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("pub", 0o755))
	ok(t, fsys.Chmod("pub", 0o777))
	u := user(fsys)
	ok(t, openClose(u, "pub/f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL))
	ok(t, u.Mkdir("pub/d", 0o755))
	ok(t, u.Symlink("f", "pub/l"))
	for _, p := range []string{"pub/f", "pub/d", "pub/l"} {
		if a := stat(t, fsys, p); a.Uid != userUid || a.Gid != userGid {
			t.Errorf("%s created by %d:%d is owned by %d:%d", p, userUid, userGid, a.Uid, a.Gid)
		}
	}
	// The owner may chmod and write his own file, and delete it.
	ok(t, u.Chmod("pub/f", 0o600))
	f, err := u.OpenFile("pub/f", unix.O_WRONLY, 0)
	ok(t, err)
	_, err = f.WriteAt([]byte("mine"), 0)
	ok(t, err)
	ok(t, f.Close())
	wantContent(t, fsys, "pub/f", []byte("mine"))
	ok(t, u.Unlink("pub/f"))
	ok(t, u.Rmdir("pub/d"))
}

func nonRootSearchDenied(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("closed", 0o700))
	writeFile(t, fsys, "closed/f", []byte("x"))
	ok(t, fsys.Mkdir("listonly", 0o755))
	ok(t, fsys.Chmod("listonly", 0o744)) // read without search
	writeFile(t, fsys, "listonly/f", []byte("x"))
	u := user(fsys)
	_, err := u.Stat("closed/f")
	wantErr(t, err, syscall.EACCES, "stat through a 0700 root directory")
	wantErr(t, openClose(u, "closed/f", unix.O_RDONLY), syscall.EACCES, "open through a 0700 root directory")
	_, err = u.ReadDir("closed")
	wantErr(t, err, syscall.EACCES, "readdir a 0700 root directory")
	_, err = u.Stat("listonly/f")
	wantErr(t, err, syscall.EACCES, "stat through a directory without x")
	ok(t, u.Access("listonly", unix.R_OK))
}

func nonRootChmodOthers(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Chmod("f", 0o666))
	wantErr(t, user(fsys).Chmod("f", 0o777), syscall.EPERM, "chmod of root's world-writable file")
	if a := stat(t, fsys, "f"); a.Perm() != 0o666 {
		t.Errorf("mode %#o after a denied chmod", a.Perm())
	}
}

func nonRootChown(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("pub", 0o755))
	ok(t, fsys.Chmod("pub", 0o777))
	u := user(fsys)
	ok(t, openClose(u, "pub/f", unix.O_WRONLY|unix.O_CREAT))
	wantErr(t, u.Chown("pub/f", 0, -1), syscall.EPERM, "give one's file to root")
	wantErr(t, u.Chown("pub/f", -1, 0), syscall.EPERM, "chgrp to a group one is not in")
	ok(t, u.Chown("pub/f", userUid, userGid)) // a no-op chown is allowed
	writeFile(t, fsys, "pub/root", nil)
	wantErr(t, u.Chown("pub/root", userUid, -1), syscall.EPERM, "take root's file")
	if a := stat(t, fsys, "pub/f"); a.Uid != userUid || a.Gid != userGid {
		t.Errorf("owner %d:%d after denied chowns", a.Uid, a.Gid)
	}
}

func nonRootUtimes(t *testing.T, fsys FS) {
	writeFile(t, fsys, "writable", nil)
	ok(t, fsys.Chmod("writable", 0o666))
	writeFile(t, fsys, "readonly", nil)
	u := user(fsys)
	now := unix.Timespec{Nsec: unix.UTIME_NOW}
	ok(t, u.Utimes("writable", now, now))
	wantErr(t, u.Utimes("readonly", now, now), syscall.EACCES, "touch a file one cannot write")
	then := unix.Timespec{Sec: 1000}
	wantErr(t, u.Utimes("writable", then, then), syscall.EPERM, "set explicit times on another's file")
}

func nonRootAccess(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	u := user(fsys)
	ok(t, u.Access("f", unix.F_OK))
	ok(t, u.Access("f", unix.R_OK))
	wantErr(t, u.Access("f", unix.W_OK), syscall.EACCES, "access W_OK on a 0644 root file")
	wantErr(t, u.Access("f", unix.X_OK), syscall.EACCES, "access X_OK on a 0644 root file")
	ok(t, u.Access(".", unix.R_OK|unix.X_OK))
	wantErr(t, u.Access(".", unix.W_OK), syscall.EACCES, "access W_OK on a 0755 root directory")
}

func nonRootXattr(t *testing.T, fsys FS) {
	writeFile(t, fsys, "root", nil)
	ok(t, fsys.Setxattr("root", "user.x", []byte("v"), 0))
	writeFile(t, fsys, "private", nil)
	ok(t, fsys.Chmod("private", 0o600))
	ok(t, fsys.Setxattr("private", "user.x", []byte("v"), 0))
	ok(t, fsys.Mkdir("pub", 0o755))
	ok(t, fsys.Chmod("pub", 0o777))
	u := user(fsys)
	ok(t, openClose(u, "pub/mine", unix.O_WRONLY|unix.O_CREAT))

	if got, err := u.Getxattr("root", "user.x"); err != nil || string(got) != "v" {
		t.Errorf("user.x of a readable file: %q, %v", got, err)
	}
	_, err := u.Getxattr("private", "user.x")
	wantErr(t, err, syscall.EACCES, "user.x of an unreadable file")
	wantErr(t, u.Setxattr("root", "user.y", []byte("v"), 0), syscall.EACCES, "set user.y on an unwritable file")
	wantErr(t, u.Removexattr("root", "user.x"), syscall.EACCES, "remove user.x from an unwritable file")
	ok(t, u.Setxattr("pub/mine", "user.y", []byte("v"), 0))
	wantErr(t, u.Setxattr("pub/mine", "trusted.y", []byte("v"), 0), syscall.EPERM, "set trusted.y as a user")
	if got, err := fsys.Getxattr("root", "user.x"); err != nil || string(got) != "v" {
		t.Errorf("user.x after denied removal: %q, %v", got, err)
	}
}

func stickyDir(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("tmp", 0o755))
	ok(t, fsys.Chmod("tmp", 0o1777))
	writeFile(t, fsys, "tmp/roots", []byte("r"))
	ok(t, fsys.Chmod("tmp/roots", 0o666))
	ok(t, fsys.Mkdir("tmp/rootdir", 0o777))
	u := user(fsys)
	wantErr(t, u.Unlink("tmp/roots"), syscall.EPERM, "unlink root's file in a sticky directory")
	wantErr(t, u.Rename("tmp/roots", "tmp/mine", 0), syscall.EPERM, "rename root's file in a sticky directory")
	wantErr(t, u.Rmdir("tmp/rootdir"), syscall.EPERM, "rmdir root's directory in a sticky directory")
	ok(t, openClose(u, "tmp/own", unix.O_WRONLY|unix.O_CREAT))
	wantErr(t, u.Rename("tmp/own", "tmp/roots", 0), syscall.EPERM, "rename over root's file in a sticky directory")
	ok(t, u.Rename("tmp/own", "tmp/own2", 0))
	ok(t, u.Unlink("tmp/own2"))
	wantContent(t, fsys, "tmp/roots", []byte("r"))
	ok(t, fsys.Unlink("tmp/roots")) // root may
}

func rootBypasses(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", []byte("x"))
	ok(t, fsys.Chmod("f", 0))
	ok(t, fsys.Mkdir("d", 0o755))
	ok(t, fsys.Chmod("d", 0))
	ok(t, openClose(fsys, "f", unix.O_RDWR))
	ok(t, openClose(fsys, "d/new", unix.O_WRONLY|unix.O_CREAT))
	if _, err := fsys.ReadDir("d"); err != nil {
		t.Errorf("readdir of a mode 0 directory as root: %v", err)
	}
	ok(t, fsys.Access("f", unix.R_OK|unix.W_OK))
	wantErr(t, fsys.Access("f", unix.X_OK), syscall.EACCES, "root's X_OK on a file without execute bits")
	ok(t, fsys.Chmod("d", 0o755)) // let the test's cleanup in
}
