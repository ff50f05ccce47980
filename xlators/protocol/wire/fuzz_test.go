package wire

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// samples returns a realistic request and reply for every op.
func samples() map[xl.Op]struct {
	f xl.Fop
	r xl.Result
} {
	g1 := xl.GFID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	g2 := xl.GFID{6: 0x40, 8: 0x80, 15: 0x22}
	fd := xl.Fd{GFID: g1, H: 7, Flags: syscall.O_RDWR}
	ts := xl.Timespec{Sec: 1700000000, Nsec: 123456789}
	attr := xl.Attr{GFID: g2, Mode: syscall.S_IFREG | 0o644, Nlink: 1, Uid: 1000, Gid: 100,
		Size: 5 << 20, Blocks: 10240, Blksize: 4096, Atime: ts, Mtime: ts, Ctime: ts}
	dir := attr
	dir.Mode = syscall.S_IFDIR | 0o755
	type pair = struct {
		f xl.Fop
		r xl.Result
	}
	return map[xl.Op]pair{
		xl.OpLookup:   {xl.Fop{Op: xl.OpLookup, GFID: g1, Name: "a.txt"}, xl.Result{Attr: attr}},
		xl.OpGetattr:  {xl.Fop{Op: xl.OpGetattr, GFID: g1}, xl.Result{Attr: dir}},
		xl.OpSetattr:  {xl.Fop{Op: xl.OpSetattr, GFID: g1, Setattr: xl.SetattrIn{Valid: xl.SetMode | xl.SetMtime, Mode: 0o600, Mtime: ts}}, xl.Result{Attr: attr}},
		xl.OpAccess:   {xl.Fop{Op: xl.OpAccess, GFID: g1, Flags: 4}, xl.Result{Errno: syscall.EACCES}},
		xl.OpReadlink: {xl.Fop{Op: xl.OpReadlink, GFID: g1}, xl.Result{Data: []byte("../target")}},
		xl.OpMknod:    {xl.Fop{Op: xl.OpMknod, GFID: g1, Name: "fifo", GFID2: g2, Mode: syscall.S_IFIFO | 0o600, Rdev: 0x0801}, xl.Result{Attr: attr}},
		xl.OpMkdir:    {xl.Fop{Op: xl.OpMkdir, GFID: g1, Name: "d", GFID2: g2, Mode: 0o755}, xl.Result{Attr: dir}},
		xl.OpSymlink:  {xl.Fop{Op: xl.OpSymlink, GFID: g1, Name: "s", GFID2: g2, Name2: "/some/target"}, xl.Result{Attr: attr}},
		xl.OpLink:     {xl.Fop{Op: xl.OpLink, GFID: g1, GFID2: g2, Name2: "hard"}, xl.Result{Attr: attr}},
		xl.OpUnlink:   {xl.Fop{Op: xl.OpUnlink, GFID: g1, Name: "gone"}, xl.Result{Errno: syscall.ENOENT}},
		xl.OpRmdir:    {xl.Fop{Op: xl.OpRmdir, GFID: g1, Name: "d"}, xl.Result{Errno: syscall.ENOTEMPTY}},
		xl.OpRename:   {xl.Fop{Op: xl.OpRename, GFID: g1, Name: "a", GFID2: g2, Name2: "b", Flags: xl.RenameNoreplace}, xl.Result{}},
		xl.OpCreate:   {xl.Fop{Op: xl.OpCreate, GFID: g1, Name: "c", GFID2: g2, Flags: syscall.O_RDWR | syscall.O_EXCL, Mode: 0o644}, xl.Result{Fd: fd, Attr: attr}},
		xl.OpOpen:     {xl.Fop{Op: xl.OpOpen, GFID: g1, Flags: syscall.O_RDONLY}, xl.Result{Fd: fd}},
		xl.OpRead:     {xl.Fop{Op: xl.OpRead, Fd: fd, Off: 4096, Len: 64}, xl.Result{N: 64, Data: bytes.Repeat([]byte{0xab}, 64)}},
		xl.OpWrite:    {xl.Fop{Op: xl.OpWrite, Fd: fd, Off: 1 << 40, Data: []byte("hello, world")}, xl.Result{N: 12}},
		xl.OpTruncate: {xl.Fop{Op: xl.OpTruncate, GFID: g1, Len: 5 << 30}, xl.Result{Attr: attr}},
		xl.OpFallocate: {xl.Fop{Op: xl.OpFallocate, Fd: fd, Flags: 3, Off: 4096, Len: 8192},
			xl.Result{Errno: syscall.EOPNOTSUPP}},
		xl.OpLseek:      {xl.Fop{Op: xl.OpLseek, Fd: fd, Off: 100, Flags: 3}, xl.Result{N: 4096}},
		xl.OpFlush:      {xl.Fop{Op: xl.OpFlush, Fd: fd}, xl.Result{}},
		xl.OpFsync:      {xl.Fop{Op: xl.OpFsync, Fd: fd, Flags: 1}, xl.Result{Errno: syscall.EIO}},
		xl.OpRelease:    {xl.Fop{Op: xl.OpRelease, Fd: fd}, xl.Result{}},
		xl.OpOpendir:    {xl.Fop{Op: xl.OpOpendir, GFID: g1}, xl.Result{Fd: fd}},
		xl.OpReaddir:    {xl.Fop{Op: xl.OpReaddir, Fd: fd, Off: 2, Len: 128}, xl.Result{Dirents: []xl.Dirent{{Name: "x", Off: 3, Attr: attr, NoXattrs: true}, {Name: "y", Off: 4, Attr: dir}}}},
		xl.OpReleasedir: {xl.Fop{Op: xl.OpReleasedir, Fd: fd}, xl.Result{}},
		xl.OpStatfs:     {xl.Fop{Op: xl.OpStatfs, GFID: g1}, xl.Result{Statfs: xl.Statfs{Blocks: 1 << 30, Bfree: 1 << 29, Bavail: 1 << 28, Files: 1 << 20, Ffree: 1 << 19, Bsize: 4096, Frsize: 4096, NameLen: 255}}},
		xl.OpGetxattr:   {xl.Fop{Op: xl.OpGetxattr, GFID: g1, Name: "user.k"}, xl.Result{Data: []byte{}}},
		xl.OpSetxattr:   {xl.Fop{Op: xl.OpSetxattr, GFID: g1, Name: "user.k", Data: []byte("v"), Flags: 1}, xl.Result{}},
		xl.OpListxattr:  {xl.Fop{Op: xl.OpListxattr, GFID: g1}, xl.Result{Names: []string{"user.a", "trusted.gfid"}}},
		xl.OpRemovexattr: {xl.Fop{Op: xl.OpRemovexattr, GFID: g1, Name: "user.k"},
			xl.Result{Errno: syscall.ENODATA}},
		xl.OpIpc: {xl.Fop{Op: xl.OpIpc, Name: "fdl.status", Xdata: xl.Xdata{"from": []byte{1, 2}, "empty": {}}},
			xl.Result{Xdata: xl.Xdata{"last": []byte("42")}}},
	}
}

func sampleCall() *xl.Call {
	return &xl.Call{Uid: 1000, Gid: 100, Groups: []uint32{100, 27}, Pid: 4242,
		Client: [16]byte{0: 0xc1, 15: 0x1d}, Seq: 77, Xdata: xl.Xdata{"gfid-req": make([]byte, 16)}}
}

// seeds returns the corpus: real frames and fops of every op, keyed by
// fuzz target and file name, each as the target's arguments.
func seeds() map[string]map[string][][]byte {
	frames := map[string][][]byte{}
	fops := map[string][][]byte{}
	for op, s := range samples() {
		frames["request-"+op.String()] = [][]byte{append(AppendRequest(nil, 11, sampleCall(), &s.f), s.f.Data...)}
		frames["reply-"+op.String()] = [][]byte{append(AppendReply(nil, 11, &s.r), s.r.Data...)}
		fops[op.String()] = [][]byte{AppendFop(nil, &s.f), s.f.Data}
	}
	frames["hello"] = [][]byte{AppendHello(nil, 1, &Hello{Version: Version, Volume: "vol0", MaxFrame: DefaultMaxFrame, PingTimeout: 1e10})}
	frames["welcome"] = [][]byte{AppendWelcome(nil, 1, &Welcome{MaxFrame: DefaultMaxFrame})}
	frames["welcome-rejected"] = [][]byte{AppendWelcome(nil, 1, &Welcome{Errno: syscall.ENOENT, Reason: `volume "x" is not served here`})}
	frames["ping"] = [][]byte{AppendHeader(nil, Header{Type: TypePing})}
	frames["cancel"] = [][]byte{AppendHeader(nil, Header{Type: TypeCancel, ID: 11})}
	return map[string]map[string][][]byte{"FuzzDecodeFrame": frames, "FuzzDecodeFop": fops}
}

// TestSeedCorpus keeps testdata/fuzz in step with the encoder; run with
// -update-corpus after changing the format.
func TestSeedCorpus(t *testing.T) {
	if len(samples()) != int(xl.OpIpc) {
		t.Fatalf("samples cover %d ops, want %d", len(samples()), xl.OpIpc)
	}
	for target, files := range seeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, args := range files {
			want := []byte("go test fuzz v1\n")
			for _, a := range args {
				want = fmt.Appendf(want, "[]byte(%s)\n", strconv.Quote(string(a)))
			}
			path := filepath.Join(dir, name)
			if *updateCorpus {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (err %v); run go test -run TestSeedCorpus -update-corpus", path, err)
			}
		}
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame path a connection
// takes: header check, then the payload decoder for the frame's type.
// Whatever decodes must survive re-encoding unchanged.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b, 1<<20)
		if err != nil {
			return
		}
		payload := b[HeaderSize:]
		if len(payload) < int(h.Len) {
			return // the reader would hit EOF mid-frame
		}
		meta, data := payload[:h.MetaLen()], payload[h.MetaLen():h.Len]
		switch h.Type {
		case TypeRequest:
			var c xl.Call
			var fop xl.Fop
			if DecodeRequest(meta, data, &c, &fop) != nil {
				return
			}
			again := AppendRequest(nil, h.ID, &c, &fop)
			var c2 xl.Call
			var fop2 xl.Fop
			if err := DecodeRequest(again[HeaderSize:], dataSection(&fop), &c2, &fop2); err != nil {
				t.Fatalf("re-encoded request fails: %v", err)
			}
			if !reflect.DeepEqual(c, c2) || !reflect.DeepEqual(fop, fop2) {
				t.Fatalf("request changed on re-encoding:\n%+v %+v\n%+v %+v", c, fop, c2, fop2)
			}
		case TypeReply:
			var r xl.Result
			if DecodeResult(meta, data, &r) != nil {
				return
			}
			again := AppendReply(nil, h.ID, &r)
			var r2 xl.Result
			if err := DecodeResult(again[HeaderSize:], bytes.Clone(r.Data), &r2); err != nil {
				t.Fatalf("re-encoded reply fails: %v", err)
			}
			if !reflect.DeepEqual(r, r2) {
				t.Fatalf("reply changed on re-encoding:\n%+v\n%+v", r, r2)
			}
		case TypeHandshake:
			var hello Hello
			if DecodeHello(meta, &hello) == nil {
				var h2 Hello
				if err := DecodeHello(AppendHello(nil, 1, &hello)[HeaderSize:], &h2); err != nil || h2 != hello {
					t.Fatalf("hello %+v re-encodes to %+v, %v", hello, h2, err)
				}
			}
			var w Welcome
			if DecodeWelcome(meta, &w) == nil {
				var w2 Welcome
				if err := DecodeWelcome(AppendWelcome(nil, 1, &w)[HeaderSize:], &w2); err != nil || w2 != w {
					t.Fatalf("welcome %+v re-encodes to %+v, %v", w, w2, err)
				}
			}
		}
	})
}

// dataSection is a copy of the data section of f's request frame.
func dataSection(f *xl.Fop) []byte {
	d := RequestData(f)
	if d == nil {
		return nil
	}
	b := make([]byte, 0)
	for _, v := range d {
		b = append(b, v...)
	}
	return b
}

// FuzzDecodeFop feeds arbitrary metadata and data sections to the Fop
// decoder; whatever decodes must survive re-encoding unchanged.
func FuzzDecodeFop(f *testing.F) {
	f.Fuzz(func(t *testing.T, meta, data []byte) {
		var fop xl.Fop
		if DecodeFop(meta, data, &fop) != nil {
			return
		}
		var fop2 xl.Fop
		if err := DecodeFop(AppendFop(nil, &fop), bytes.Clone(fop.Data), &fop2); err != nil {
			t.Fatalf("re-encoded fop fails: %v", err)
		}
		if !reflect.DeepEqual(fop, fop2) {
			t.Fatalf("fop changed on re-encoding:\n%+v\n%+v", fop, fop2)
		}
	})
}
