package posix

import (
	"bytes"
	"os"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// A write larger than one pwrite chunk lands whole, where it was asked
// to; an appending one lands whole at the end.
func TestLargeWrites(t *testing.T) {
	b := newBrick(t)
	g := b.file(xl.RootGFID, "f", "head")
	data := make([]byte, 3*writeChunk+123)
	for i := range data {
		data[i] = byte(i * 13)
	}
	fd, e := b.Open(bg, g, uint32(os.O_RDWR))
	ok(t, e)
	defer b.Release(bg, fd)
	n, e := b.Write(bg, fd, data, 100)
	ok(t, e)
	if n != len(data) {
		t.Fatalf("wrote %d of %d", n, len(data))
	}
	afd, e := b.Open(bg, g, uint32(os.O_WRONLY|os.O_APPEND))
	ok(t, e)
	defer b.Release(bg, afd)
	n, e = b.Write(bg, afd, data, 0)
	ok(t, e)
	if n != len(data) {
		t.Fatalf("appended %d of %d", n, len(data))
	}
	got := make([]byte, 100+2*len(data)+10)
	m, e := b.Read(bg, fd, got, 0)
	ok(t, e)
	if m != 100+2*len(data) {
		t.Fatalf("file holds %d bytes, want %d", m, 100+2*len(data))
	}
	if string(got[:4]) != "head" || !bytes.Equal(got[100:100+len(data)], data) || !bytes.Equal(got[100+len(data):m], data) {
		t.Error("the file does not hold what was written")
	}
}
