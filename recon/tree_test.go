package recon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// store opens a posix store on a new directory.
func store(t testing.TB) (*posix.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := posix.New(dir, posix.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// populate makes a small namespace with every kind of object.
func populate(t testing.TB, x xl.Xlator) {
	t.Helper()
	ctx := context.Background()
	must := func(e syscall.Errno) {
		t.Helper()
		if e != 0 {
			t.Fatal(e)
		}
	}
	d := xl.NewGFID()
	_, e := x.Mkdir(ctx, xl.RootGFID, "d", d, 0o750)
	must(e)
	sub := xl.NewGFID()
	_, e = x.Mkdir(ctx, d, "sub", sub, 0o755)
	must(e)
	write := func(parent xl.GFID, name string, data []byte, mode uint32) xl.GFID {
		g := xl.NewGFID()
		fd, _, e := x.Create(ctx, parent, name, g, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, mode)
		must(e)
		if len(data) > 0 {
			_, e = x.Write(ctx, fd, data, 0)
			must(e)
		}
		must(x.Release(ctx, fd))
		return g
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*ChunkSize/16+100)
	f := write(d, "big", big, 0o644)
	write(sub, "small", []byte("hello"), 0o600)
	write(xl.RootGFID, "empty", nil, 0o640)
	_, e = x.Link(ctx, f, xl.RootGFID, "big-link")
	must(e)
	_, e = x.Symlink(ctx, d, "ln", xl.NewGFID(), "../empty")
	must(e)
	must(x.Setxattr(ctx, f, "user.color", []byte("blue"), 0))
	must(x.Setxattr(ctx, d, "user.dir", []byte("x"), 0))
}

func scan(t testing.TB, x xl.Xlator) *Tree {
	t.Helper()
	tr, err := Scan(context.Background(), x, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestResyncEmptyReplica(t *testing.T) {
	ctx := context.Background()
	ref, _ := store(t)
	rep, _ := store(t)
	populate(t, ref)
	rt, pt := scan(t, ref), scan(t, rep)
	diffs := Compare(rt, pt)
	if len(diffs) == 0 {
		t.Fatal("an empty replica compares equal to a populated one")
	}
	m, err := Repair(ctx, ref, rep, rt, pt, RepairOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// d, sub, big, small, empty, big-link, ln
	if m.Created != 7 || m.Bytes != int64(rt.Objects[rt.Entries[EntryKey{xl.RootGFID, "big-link"}]].Size)+5 {
		t.Errorf("moved %+v", m)
	}
	if d := Compare(scan(t, ref), scan(t, rep)); len(d) != 0 {
		t.Fatalf("after a full resync: %v", d)
	}
}

func TestRepairCopiesOnlyWhatDiffers(t *testing.T) {
	ctx := context.Background()
	ref, _ := store(t)
	rep, repDir := store(t)
	populate(t, ref)
	if _, err := Repair(ctx, ref, rep, scan(t, ref), scan(t, rep), RepairOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	// Damage the replica behind the store's back: a byte of the second
	// chunk, a mode, an xattr, an extra file and a missing one.
	f, err := os.OpenFile(filepath.Join(repDir, "d", "big"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), ChunkSize+7); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(filepath.Join(repDir, "d", "sub", "small"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(repDir, "empty")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repDir, "d", "stray"), []byte("stray"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(filepath.Join(repDir, "d"), "user.dir", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}

	rt, pt := scan(t, ref), scan(t, rep)
	diffs := Compare(rt, pt)
	var kinds []string
	for _, d := range diffs {
		kinds = append(kinds, d.Kind+" "+d.Path)
	}
	got := strings.Join(kinds, ", ")
	want := "extra /d/stray, missing /empty, data /big-link, meta /d, meta /d/sub/small"
	if got != want {
		t.Errorf("differences:\n got %s\nwant %s\n%v", got, want, diffs)
	}
	m, err := Repair(ctx, ref, rep, rt, pt, RepairOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	want2 := Moved{Created: 1, Removed: 1, Data: 2, Meta: 3, Bytes: ChunkSize}
	// The empty file, still in the store by GFID, is linked back and
	// compared whole (Data and Meta: its size, mode and owner), besides
	// big's chunk, /d's xattr and small's mode.
	if m != want2 {
		t.Errorf("moved %+v, want %+v", m, want2)
	}
	if d := Compare(scan(t, ref), scan(t, rep)); len(d) != 0 {
		t.Fatalf("after repair: %v", d)
	}
}

func TestRepairReplacesAnObjectOfAnotherType(t *testing.T) {
	ctx := context.Background()
	ref, _ := store(t)
	rep, _ := store(t)
	g := xl.NewGFID()
	if _, e := ref.Mkdir(ctx, xl.RootGFID, "x", g, 0o755); e != 0 {
		t.Fatal(e)
	}
	fd, _, e := rep.Create(ctx, xl.RootGFID, "x", xl.NewGFID(), syscall.O_WRONLY|syscall.O_CREAT, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	rep.Release(ctx, fd)
	if _, err := Repair(ctx, ref, rep, scan(t, ref), scan(t, rep), RepairOptions{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if d := Compare(scan(t, ref), scan(t, rep)); len(d) != 0 {
		t.Fatalf("after repair: %v", d)
	}
}

// BenchmarkFullResync: a full resync of 10,000 files of 4 KiB between two
// posix stores in one process (no network): scan both, compare, repair.
//
//	go test ./recon -run '^$' -bench FullResync -benchtime 1x
func BenchmarkFullResync(b *testing.B) {
	const files = 10000
	ctx := context.Background()
	ref, _ := store(b)
	data := bytes.Repeat([]byte("x"), 4096)
	for i := range files {
		fd, _, e := ref.Create(ctx, xl.RootGFID, fmt.Sprintf("f%05d", i), xl.NewGFID(), syscall.O_WRONLY|syscall.O_CREAT, 0o644)
		if e != 0 {
			b.Fatal(e)
		}
		if _, e := ref.Write(ctx, fd, data, 0); e != 0 {
			b.Fatal(e)
		}
		ref.Release(ctx, fd)
	}
	for range b.N {
		b.StopTimer()
		rep, _ := store(b)
		b.StartTimer()
		rt, pt := scan(b, ref), scan(b, rep)
		m, err := Repair(ctx, ref, rep, rt, pt, RepairOptions{Logger: quiet})
		if err != nil || m.Created != files {
			b.Fatalf("moved %+v, %v", m, err)
		}
	}
	b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
}

// The leader's copy of an object that a majority of replicas hold alike,
// differently, is suspect: repairing from it would spread damage.
func TestSuspectLeader(t *testing.T) {
	g := xl.NewGFID()
	tree := func(chunk uint64) *Tree {
		return &Tree{Objects: map[xl.GFID]*Object{g: {GFID: g, Mode: syscall.S_IFREG | 0o644, Size: 10, Chunks: []uint64{chunk}}}}
	}
	tests := []struct {
		name  string
		trees []*Tree
		want  bool
	}{
		{"all alike", []*Tree{tree(1), tree(1), tree(1)}, false},
		{"one follower differs", []*Tree{tree(1), tree(2), tree(1)}, false},
		{"followers agree against the leader", []*Tree{tree(1), tree(2), tree(2)}, true},
		{"all differ", []*Tree{tree(1), tree(2), tree(3)}, false},
		{"a follower unreachable", []*Tree{tree(1), tree(2), nil}, false},
		{"two replicas: no majority against the leader", []*Tree{tree(1), tree(2)}, false},
	}
	for _, tt := range tests {
		if got := suspectLeader(tt.trees, 0)[g]; got != tt.want {
			t.Errorf("%s: suspect %v, want %v", tt.name, got, tt.want)
		}
	}
}
