package conformance

import (
	"bytes"
	"errors"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// xattrCases are about extended attributes.
var xattrCases = []testCase{
	{"XattrRoundTripListRemove", xattrRoundTrip},
	{"XattrCreateAndReplaceFlags", xattrFlags},
	{"XattrLargeValues", xattrLarge},
}

func xattrRoundTrip(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	ok(t, fsys.Mkdir("d", 0o755))
	for _, p := range []string{"f", "d"} {
		ok(t, fsys.Setxattr(p, "user.a", []byte("one"), 0))
		ok(t, fsys.Setxattr(p, "user.empty", nil, 0))
		ok(t, fsys.Setxattr(p, "user.bin", []byte{0, 1, 0, 255}, 0))
		for name, want := range map[string][]byte{"user.a": []byte("one"), "user.empty": {}, "user.bin": {0, 1, 0, 255}} {
			if got, err := fsys.Getxattr(p, name); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s %s: %q, %v; want %q", p, name, got, err, want)
			}
		}
		list, err := fsys.Listxattr(p)
		ok(t, err)
		for _, name := range []string{"user.a", "user.empty", "user.bin"} {
			if c := count(list, name); c != 1 {
				t.Errorf("%s: listxattr %q names %s %d times", p, list, name, c)
			}
		}
		ok(t, fsys.Removexattr(p, "user.a"))
		_, err = fsys.Getxattr(p, "user.a")
		wantErr(t, err, syscall.ENODATA, "getxattr after removexattr")
		wantErr(t, fsys.Removexattr(p, "user.a"), syscall.ENODATA, "removexattr twice")
		if list, err := fsys.Listxattr(p); err != nil || slices.Contains(list, "user.a") {
			t.Errorf("%s: listxattr after removexattr: %q, %v", p, list, err)
		}
		_, err = fsys.Getxattr(p, "user.never")
		wantErr(t, err, syscall.ENODATA, "getxattr of a name never set")
	}
	// Attributes belong to the inode, so every hard link shows them.
	ok(t, fsys.Link("f", "g"))
	if got, err := fsys.Getxattr("g", "user.bin"); err != nil || !bytes.Equal(got, []byte{0, 1, 0, 255}) {
		t.Errorf("getxattr through a second link: %q, %v", got, err)
	}
}

func xattrFlags(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	wantErr(t, fsys.Setxattr("f", "user.x", []byte("v"), unix.XATTR_REPLACE), syscall.ENODATA, "XATTR_REPLACE of a missing name")
	ok(t, fsys.Setxattr("f", "user.x", []byte("v1"), unix.XATTR_CREATE))
	wantErr(t, fsys.Setxattr("f", "user.x", []byte("v2"), unix.XATTR_CREATE), syscall.EEXIST, "XATTR_CREATE of an existing name")
	ok(t, fsys.Setxattr("f", "user.x", []byte("v3"), unix.XATTR_REPLACE))
	if got, err := fsys.Getxattr("f", "user.x"); err != nil || string(got) != "v3" {
		t.Errorf("after XATTR_REPLACE: %q, %v; want v3", got, err)
	}
}

// xattrLarge checks the size limits. Linux takes values up to 64 KiB
// (XATTR_SIZE_MAX), but ext4 without the ea_inode feature stores at most
// one block per inode and refuses more with ENOSPC, so a 64 KiB value
// must either round-trip or be refused with ENOSPC, leaving nothing
// behind, unless the FS promises LargeXattrs. A value of 3000 bytes fits
// everywhere and must round-trip.
func xattrLarge(t *testing.T, fsys FS) {
	writeFile(t, fsys, "f", nil)
	mid := pattern(3000, 1)
	ok(t, fsys.Setxattr("f", "user.mid", mid, 0))
	if got, err := fsys.Getxattr("f", "user.mid"); err != nil || !bytes.Equal(got, mid) {
		t.Errorf("3000-byte value: read back %d bytes, %v", len(got), err)
	}

	big := pattern(64<<10, 2)
	err := fsys.Setxattr("f", "user.big", big, 0)
	switch {
	case err == nil:
		if got, err := fsys.Getxattr("f", "user.big"); err != nil || !bytes.Equal(got, big) {
			t.Errorf("64 KiB value: read back %d bytes, %v", len(got), err)
		}
		if list, err := fsys.Listxattr("f"); err != nil || !slices.Contains(list, "user.big") {
			t.Errorf("listxattr: %q, %v; want user.big", list, err)
		}
		ok(t, fsys.Removexattr("f", "user.big"))
	case errors.Is(err, syscall.ENOSPC) && !promised(fsys).largeXattrs:
		t.Logf("the store refuses a 64 KiB value with ENOSPC, as ext4 without ea_inode does")
		_, err := fsys.Getxattr("f", "user.big")
		wantErr(t, err, syscall.ENODATA, "getxattr after a refused setxattr")
	default:
		t.Errorf("setxattr of 64 KiB: %v, want success (or ENOSPC where LargeXattrs is not promised)", err)
	}
	wantErr(t, fsys.Setxattr("f", "user.huge", make([]byte, 64<<10+1), 0), syscall.E2BIG, "setxattr of 64 KiB + 1")
	if got, err := fsys.Getxattr("f", "user.mid"); err != nil || !bytes.Equal(got, mid) {
		t.Errorf("3000-byte value after the large ones: %d bytes, %v", len(got), err)
	}
}

func count(list []string, s string) int {
	c := 0
	for _, x := range list {
		if x == s {
			c++
		}
	}
	return c
}
