package conformance

import (
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// dirCases are about listing directories.
var dirCases = []testCase{
	{"ReadDirListsTenThousandEntriesOnce", readDirTenThousand},
	{"ReadDirReportsTypesAndAttrs", readDirReportsAttrs},
}

func readDirTenThousand(t *testing.T, fsys FS) {
	const n = 10000
	ok(t, fsys.Mkdir("big", 0o755))
	for i := range n {
		p := fmt.Sprintf("big/entry-%05d", i)
		if i%1000 == 0 {
			ok(t, fsys.Mkdir(p, 0o755)) // a few directories in the mix
			continue
		}
		f, err := fsys.OpenFile(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		ok(t, err)
		ok(t, f.Close())
	}
	ents, err := fsys.ReadDir("big")
	ok(t, err)
	seen := make(map[string]int, n)
	inos := make(map[uint64]string, n)
	for _, e := range ents {
		seen[e.Name]++
		if other, dup := inos[e.Attr.Ino]; dup && other != e.Name {
			t.Errorf("%s and %s report the same inode %d", other, e.Name, e.Attr.Ino)
		}
		inos[e.Attr.Ino] = e.Name
	}
	for i := range n {
		name := fmt.Sprintf("entry-%05d", i)
		if c := seen[name]; c != 1 {
			t.Errorf("%s listed %d times", name, c)
		}
		delete(seen, name)
	}
	for name := range seen {
		t.Errorf("unexpected entry %q", name)
	}
	if len(ents) != n {
		t.Errorf("%d entries, want %d", len(ents), n)
	}
}

func readDirReportsAttrs(t *testing.T, fsys FS) {
	ok(t, fsys.Mkdir("d", 0o755))
	writeFile(t, fsys, "d/file", []byte("12345"))
	ok(t, fsys.Mkdir("d/dir", 0o700))
	ok(t, fsys.Symlink("file", "d/link"))
	ok(t, fsys.Mknod("d/fifo", unix.S_IFIFO|0o600, 0))
	ents, err := fsys.ReadDir("d")
	ok(t, err)
	got := names(ents)
	slices.Sort(got)
	if want := []string{"dir", "fifo", "file", "link"}; !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	for _, e := range ents {
		want := stat(t, fsys, "d/"+e.Name)
		a := e.Attr
		if a.Ino != want.Ino || a.Mode != want.Mode || a.Size != want.Size || a.Nlink != want.Nlink || a.Uid != want.Uid {
			t.Errorf("%s: readdir says ino %d mode %#o size %d nlink %d uid %d; lstat says %d %#o %d %d %d",
				e.Name, a.Ino, a.Mode, a.Size, a.Nlink, a.Uid, want.Ino, want.Mode, want.Size, want.Nlink, want.Uid)
		}
	}
}
