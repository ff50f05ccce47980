package recon

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// jbr-server's on-disk format, spelled out here so that a change to it
// breaks these tests.
const (
	posKey = "jbr.pos"  // term, index, commit: little-endian u64s
	noopOp = "jbr.noop" // the Ipc name of a leader's no-op record
)

// pos is jbr-server's record of an entry's place in the replicated log.
func pos(term, index, commit uint64) xl.Xdata {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b, term)
	binary.LittleEndian.PutUint64(b[8:], index)
	binary.LittleEndian.PutUint64(b[16:], commit)
	return xl.Xdata{posKey: b}
}

// brickJournal writes a replicated brick's journal into a new brick
// directory and returns the directory and the journal, still open (its
// brick running). Log (replicated) entries, by journal record:
//
//	1  term 4 index 1  no-op of a new leader
//	2  term 4 index 2  create "f"
//	3  term 4 index 3  write 5 bytes at 10    (replaced by record 5)
//	4  term 7 index 3  (journal term 7 from here) truncate, replaces 3
//	5  term 7 index 4  rename f -> g
func brickJournal(t *testing.T) (string, *journal.Journal, xl.GFID) {
	t.Helper()
	brick := t.TempDir()
	j, err := journal.Open(filepath.Join(brick, volfile.JournalDir), journal.Options{Logger: quiet, SegmentSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	ctx := context.Background()
	file := xl.NewGFID()
	client := xl.NewGFID()
	app := func(call xl.Call, f xl.Fop) {
		t.Helper()
		if _, err := j.Append(ctx, &journal.Record{Call: call, Fop: f}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.StartTerm(4); err != nil {
		t.Fatal(err)
	}
	app(xl.Call{Xdata: pos(4, 1, 0)}, xl.Fop{Op: xl.OpIpc, Name: noopOp})
	app(xl.Call{Uid: 1000, Gid: 100, Client: client, Seq: 1, Xdata: pos(4, 2, 1)},
		xl.Fop{Op: xl.OpCreate, GFID: xl.RootGFID, Name: "f", GFID2: file, Mode: 0o644, Flags: syscall.O_RDWR})
	app(xl.Call{Client: client, Seq: 2, Xdata: pos(4, 3, 2)},
		xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: file, H: 9}, Off: 10, Data: []byte("hello")})
	if err := j.StartTerm(7); err != nil {
		t.Fatal(err)
	}
	app(xl.Call{Client: client, Seq: 3, Xdata: pos(7, 3, 2)}, xl.Fop{Op: xl.OpTruncate, GFID: file, Len: 4096})
	app(xl.Call{Client: client, Seq: 4, Xdata: pos(7, 4, 3)},
		xl.Fop{Op: xl.OpRename, GFID: xl.RootGFID, Name: "f", GFID2: xl.RootGFID, Name2: "g"})
	j.MarkApplied(1)
	j.MarkApplied(2)
	j.MarkApplied(3)
	if err := j.MarkSynced(1); err != nil {
		t.Fatal(err)
	}
	return brick, j, file
}

func entries(t *testing.T, j *Journal, f Filter) []*Entry {
	t.Helper()
	var out []*Entry
	if err := j.Entries(f, func(e *Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A running brick's journal is read from a copy: every record, its
// replicated place, what it did, and its state.
func TestDumpRunningBrick(t *testing.T) {
	brick, live, file := brickJournal(t)
	before, err := os.ReadDir(filepath.Join(brick, volfile.JournalDir))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Open(brick, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	info := j.Info()
	if info.Term != 7 || info.FirstIndex != 1 || info.LastIndex != 5 || info.Synced != 1 || info.Applied != 3 || info.Segments != 2 {
		t.Errorf("info %+v", info)
	}
	es := entries(t, j, Filter{})
	if len(es) != 5 {
		t.Fatalf("%d entries, want 5", len(es))
	}
	type row struct {
		jterm, jidx, term, index uint64
		op, state                string
	}
	want := []row{
		{4, 1, 4, 1, "noop", StateSynced},
		{4, 2, 4, 2, "Create", StateApplied},
		{4, 3, 4, 3, "Write", StateReplaced},
		{7, 4, 7, 3, "Truncate", StateLogged},
		{7, 5, 7, 4, "Rename", StateLogged},
	}
	for i, e := range es {
		got := row{e.JournalTerm, e.JournalIndex, e.Term, e.Index, e.Op, e.State}
		if got != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got, want[i])
		}
	}
	c := es[1]
	if c.Target != xl.RootGFID.String() || c.Object != file.String() || c.Name != "f" || c.Mode != 0o644 ||
		c.Uid != 1000 || c.Gid != 100 || c.Commit != 1 || !strings.HasSuffix(c.Request, "/1") {
		t.Errorf("create: %+v", c)
	}
	if w := es[2]; w.Target != file.String() || w.Offset != 10 || w.Length != 5 {
		t.Errorf("write: %+v", w)
	}
	if tr := es[3]; tr.Length != 4096 {
		t.Errorf("truncate: %+v", tr)
	}
	if r := es[4]; r.Name != "f" || r.Name2 != "g" || r.Object != xl.RootGFID.String() {
		t.Errorf("rename: %+v", r)
	}

	// By term: the replicated term.
	if es := entries(t, j, Filter{Term: 4}); len(es) != 3 || es[2].Op != "Write" {
		t.Errorf("term 4: %d entries", len(es))
	}
	if es := entries(t, j, Filter{Term: 5}); len(es) != 0 {
		t.Errorf("term 5: %d entries", len(es))
	}

	// The brick's journal is untouched, and still usable by its owner.
	after, err := os.ReadDir(filepath.Join(brick, volfile.JournalDir))
	if err != nil {
		t.Fatal(err)
	}
	names := func(des []os.DirEntry) (out []string) {
		for _, d := range des {
			out = append(out, d.Name())
		}
		return out
	}
	if !slices.Equal(names(before), names(after)) {
		t.Errorf("journal directory changed: %v -> %v", names(before), names(after))
	}
	if _, err := live.Append(context.Background(), &journal.Record{Fop: xl.Fop{Op: xl.OpUnlink, GFID: xl.RootGFID, Name: "g"}}); err != nil {
		t.Fatal(err)
	}
}

// One segment file names just its records; a journal directory works
// too; anything else is refused clearly.
func TestOpenPaths(t *testing.T) {
	brick, _, _ := brickJournal(t)
	jdir := filepath.Join(brick, volfile.JournalDir)
	copies := t.TempDir()
	segs, err := filepath.Glob(filepath.Join(jdir, "term-*.log"))
	if err != nil || len(segs) != 2 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	for _, c := range []struct {
		path  string
		terms []uint64
	}{
		{segs[0], []uint64{4, 4, 4}},
		{segs[1], []uint64{7, 7}},
		{jdir, []uint64{4, 4, 4, 7, 7}},
	} {
		j, err := Open(c.path, Options{Logger: quiet, TempDir: copies})
		if err != nil {
			t.Fatal(err)
		}
		var terms []uint64
		for _, e := range entries(t, j, Filter{}) {
			terms = append(terms, e.JournalTerm)
		}
		j.Close()
		if !slices.Equal(terms, c.terms) {
			t.Errorf("Open(%s): journal terms %v, want %v", c.path, terms, c.terms)
		}
	}

	empty := t.TempDir()
	other := filepath.Join(empty, "notes.txt")
	os.WriteFile(other, []byte("x"), 0o644)
	for path, want := range map[string]string{
		empty:                          "no journal here or in .gluon/journal",
		other:                          "not a journal segment",
		filepath.Join(empty, "nosuch"): "no such file",
	} {
		if _, err := Open(path, Options{Logger: quiet, TempDir: copies}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%s) = %v, want %q", path, err, want)
		}
	}
	if left, _ := os.ReadDir(copies); len(left) != 0 {
		t.Errorf("copies left behind: %v", left)
	}
}

func TestBrickPath(t *testing.T) {
	for in, want := range map[string]string{
		"server1:/data/b0":  "/data/b0",
		"server1:/data/a:b": "/data/a:b",
		"[::1]:/bricks/b0":  "/bricks/b0",
		"[fe80::1]:/x:y/b1": "/x:y/b1",
	} {
		if got := brickPath(in); got != want {
			t.Errorf("brickPath(%q) = %q, want %q", in, got, want)
		}
	}
}
