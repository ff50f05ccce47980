package wire

import (
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func write4k() (*xl.Call, *xl.Fop) {
	c := &xl.Call{Uid: 1000, Gid: 100, Groups: []uint32{100}, Pid: 42, Client: [16]byte{1}, Seq: 1 << 20}
	f := &xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.NewGFID(), H: 12, Flags: syscall.O_RDWR}, Off: 1 << 30, Data: make([]byte, 4096)}
	return c, f
}

// BenchmarkEncodeWrite4k encodes a 4 KiB write's frame; the data itself
// is never copied, it goes to the socket from the caller's slice.
func BenchmarkEncodeWrite4k(b *testing.B) {
	c, f := write4k()
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(f.Data)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], 7, c, f)
	}
}

func BenchmarkDecodeWrite4k(b *testing.B) {
	c, f := write4k()
	meta := AppendRequest(nil, 7, c, f)[HeaderSize:]
	b.SetBytes(int64(len(f.Data)))
	b.ReportAllocs()
	for b.Loop() {
		var gc xl.Call
		var gf xl.Fop
		if err := DecodeRequest(meta, f.Data, &gc, &gf); err != nil {
			b.Fatal(err)
		}
	}
}

func readdirReply() *xl.Result {
	r := &xl.Result{}
	for i := range 100 {
		r.Dirents = append(r.Dirents, xl.Dirent{Name: "file-name-" + string(rune('a'+i%26)), Off: uint64(i + 1),
			Attr: xl.Attr{GFID: xl.NewGFID(), Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: 1 << 20, Blksize: 4096,
				Mtime: xl.Timespec{Sec: 1.7e9, Nsec: 1}}})
	}
	return r
}

func BenchmarkEncodeReaddir100(b *testing.B) {
	r := readdirReply()
	buf := AppendReply(nil, 1, r)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendReply(buf[:0], 1, r)
	}
}

func BenchmarkDecodeReaddir100(b *testing.B) {
	meta := AppendReply(nil, 1, readdirReply())[HeaderSize:]
	b.SetBytes(int64(len(meta)))
	b.ReportAllocs()
	for b.Loop() {
		var r xl.Result
		if err := DecodeResult(meta, nil, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeIpcXdata encodes an Ipc whose xdata carries a 4 KiB
// value into a fresh frame buffer, as protocol/client sends replication's
// peer messages: the value goes in the data section, uncopied.
func BenchmarkEncodeIpcXdata(b *testing.B) {
	c, _ := write4k()
	f := &xl.Fop{Op: xl.OpIpc, Name: "jbr.step", Xdata: xl.Xdata{
		"term": []byte("7"), "from": []byte("1"), "msgs": make([]byte, 4096),
	}}
	var data [][]byte
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		_, data = AppendRequestData(make([]byte, 0, 128), data[:0], 7, c, f)
	}
}
