package xl

import (
	"context"
	"reflect"
	"syscall"
	"testing"
)

// Every method of Xlator must have a row in the op table, and every row a
// method: the codec, the journal and tracing all rely on the table.
func TestOpTableCoversInterface(t *testing.T) {
	it := reflect.TypeOf((*Xlator)(nil)).Elem()
	seen := map[string]bool{}
	for i := 0; i < it.NumMethod(); i++ {
		name := it.Method(i).Name
		seen[name] = true
		if _, ok := OpByName(name); !ok {
			t.Errorf("Xlator.%s has no entry in the op table", name)
		}
	}
	for o := OpInvalid + 1; o < opCount; o++ {
		if Ops[o].Name == "" {
			t.Errorf("op %d has no table entry", o)
		} else if !seen[Ops[o].Name] {
			t.Errorf("op table names %s, which Xlator lacks", Ops[o].Name)
		}
	}
}

// recorder is a leaf that remembers the generic form of each call it gets.
type recorder struct{ last *Fop }

func (r *recorder) handle(_ context.Context, f *Fop) *Result {
	c := *f
	r.last = &c
	return &Result{Errno: syscall.Errno(f.Op)}
}

// Calling every method through Funnel, then Dispatch back onto a typed
// xlator, then Funnel again must deliver the same op with the same fields:
// this is the path a request takes through the protocol.
func TestFunnelDispatchRoundTrip(t *testing.T) {
	rec := &recorder{}
	inner := Funnel{H: rec.handle}
	outer := Funnel{H: func(ctx context.Context, f *Fop) *Result { return Dispatch(ctx, inner, f) }}
	ctx := context.Background()
	g1, g2 := NewGFID(), NewGFID()
	fd := Fd{GFID: g1, H: 7, Flags: syscall.O_RDWR}
	sa := SetattrIn{Valid: SetMode | SetMtime, Mode: 0o640, Mtime: Timespec{Sec: 5, Nsec: 6}}
	calls := map[Op]func(){
		OpLookup:      func() { outer.Lookup(ctx, g1, "a") },
		OpGetattr:     func() { outer.Getattr(ctx, g1) },
		OpSetattr:     func() { outer.Setattr(ctx, g1, sa) },
		OpAccess:      func() { outer.Access(ctx, g1, 4) },
		OpReadlink:    func() { outer.Readlink(ctx, g1) },
		OpMknod:       func() { outer.Mknod(ctx, g1, "n", g2, syscall.S_IFIFO|0o600, 9) },
		OpMkdir:       func() { outer.Mkdir(ctx, g1, "d", g2, 0o755) },
		OpSymlink:     func() { outer.Symlink(ctx, g1, "s", g2, "target") },
		OpLink:        func() { outer.Link(ctx, g1, g2, "l") },
		OpUnlink:      func() { outer.Unlink(ctx, g1, "u") },
		OpRmdir:       func() { outer.Rmdir(ctx, g1, "r") },
		OpRename:      func() { outer.Rename(ctx, g1, "a", g2, "b", RenameExchange) },
		OpCreate:      func() { outer.Create(ctx, g1, "c", g2, syscall.O_EXCL, 0o644) },
		OpOpen:        func() { outer.Open(ctx, g1, syscall.O_TRUNC) },
		OpRead:        func() { outer.Read(ctx, fd, make([]byte, 10), 3) },
		OpWrite:       func() { outer.Write(ctx, fd, []byte("hi"), 4) },
		OpTruncate:    func() { outer.Truncate(ctx, g1, 5<<30) },
		OpFallocate:   func() { outer.Fallocate(ctx, fd, 3, 1, 2) },
		OpLseek:       func() { outer.Lseek(ctx, fd, 8, 3) },
		OpFlush:       func() { outer.Flush(ctx, fd) },
		OpFsync:       func() { outer.Fsync(ctx, fd, true) },
		OpRelease:     func() { outer.Release(ctx, fd) },
		OpOpendir:     func() { outer.Opendir(ctx, g1) },
		OpReaddir:     func() { outer.Readdir(ctx, fd, 11, 12) },
		OpReleasedir:  func() { outer.Releasedir(ctx, fd) },
		OpStatfs:      func() { outer.Statfs(ctx, g1) },
		OpGetxattr:    func() { outer.Getxattr(ctx, g1, "user.x") },
		OpSetxattr:    func() { outer.Setxattr(ctx, g1, "user.x", []byte("v"), 1) },
		OpListxattr:   func() { outer.Listxattr(ctx, g1) },
		OpRemovexattr: func() { outer.Removexattr(ctx, g1, "user.x") },
		OpIpc:         func() { outer.Ipc(ctx, "fdl.status", Xdata{"k": []byte("v")}) },
	}
	for o := OpInvalid + 1; o < opCount; o++ {
		call, ok := calls[o]
		if !ok {
			t.Errorf("no round-trip case for %v", o)
			continue
		}
		rec.last = nil
		call()
		if rec.last == nil || rec.last.Op != o {
			t.Errorf("%v: leaf saw %+v", o, rec.last)
		}
	}
	// Field fidelity for the ops whose arguments are easiest to lose.
	outer.Rename(ctx, g1, "a", g2, "b", RenameExchange)
	if f := rec.last; f.GFID != g1 || f.Name != "a" || f.GFID2 != g2 || f.Name2 != "b" || f.Flags != RenameExchange {
		t.Errorf("rename lost arguments: %+v", f)
	}
	outer.Setattr(ctx, g1, sa)
	if rec.last.Setattr != sa {
		t.Errorf("setattr lost arguments: %+v", rec.last.Setattr)
	}
	outer.Write(ctx, fd, []byte("hi"), 4)
	if f := rec.last; f.Fd != fd || string(f.Data) != "hi" || f.Off != 4 {
		t.Errorf("write lost arguments: %+v", f)
	}
	if !(&Fop{Op: OpOpen, Flags: syscall.O_TRUNC}).Mutates() || (&Fop{Op: OpOpen}).Mutates() {
		t.Error("Open mutates exactly when O_TRUNC is set")
	}
}

func TestUnsupportedAnswersENOSYS(t *testing.T) {
	var u Unsupported
	if _, e := u.Lookup(context.Background(), RootGFID, "x"); e != syscall.ENOSYS {
		t.Fatalf("Lookup = %v, want ENOSYS", e)
	}
	if _, e := u.Read(context.Background(), Fd{}, make([]byte, 4), 0); e != syscall.ENOSYS {
		t.Fatalf("Read = %v, want ENOSYS", e)
	}
}

func TestGFIDStringRoundTrip(t *testing.T) {
	g := NewGFID()
	p, err := ParseGFID(g.String())
	if err != nil || p != g {
		t.Fatalf("ParseGFID(%s) = %v, %v", g, p, err)
	}
	if RootGFID.String() != "00000000-0000-0000-0000-000000000001" || RootGFID.Ino() != 1 {
		t.Fatalf("root gfid %s ino %d", RootGFID, RootGFID.Ino())
	}
	for _, bad := range []string{"", "zz", g.String()[:35] + "g"} {
		if _, err := ParseGFID(bad); err == nil {
			t.Errorf("ParseGFID(%q) accepted", bad)
		}
	}
}
