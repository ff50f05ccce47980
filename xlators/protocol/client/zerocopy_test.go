package client

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// A read reply is decoded straight into the caller's buffer: the result's
// data is the caller's slice, not a copy of it.
func TestReadLandsInCallerBuffer(t *testing.T) {
	c := memfsClient(t)
	ctx := context.Background()
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i)
	}
	fd := createWith(t, c, data)
	dst := make([]byte, len(data)+100)
	r := c.call(ctx, &xl.Fop{Op: xl.OpRead, Fd: fd, Len: int64(len(dst)), Data: dst})
	if r.Errno != 0 || len(r.Data) != len(data) {
		t.Fatalf("read: %v, %d bytes", r.Errno, len(r.Data))
	}
	if &r.Data[0] != &dst[0] {
		t.Error("read reply was not decoded into the caller's buffer")
	}
	if dst[1000] != byte(1000%256) {
		t.Error("wrong data")
	}
}

// A read whose fop carries an xdata value big enough to travel in the
// data section sends that section: the frame declares it, and a client
// that left it out would leave the server reading the next frame as it.
func TestReadWithBigXdataKeepsTheStream(t *testing.T) {
	c := memfsClient(t)
	ctx := context.Background()
	fd := createWith(t, c, []byte("hello"))
	for range 3 {
		dst := make([]byte, 16)
		r := c.call(ctx, &xl.Fop{Op: xl.OpRead, Fd: fd, Len: int64(len(dst)), Data: dst,
			Xdata: xl.Xdata{"big": make([]byte, 64<<10)}})
		if r.Errno != 0 || string(r.Data) != "hello" {
			t.Fatalf("read with a big xdata value: %v, %q", r.Errno, r.Data)
		}
		if a, e := c.Getattr(ctx, fd.GFID); e != 0 || a.Size != 5 {
			t.Fatalf("getattr after it: %v, size %d", e, a.Size)
		}
	}
}

// createWith creates file f in the root through c, holding data.
func createWith(t *testing.T, c *Client, data []byte) xl.Fd {
	t.Helper()
	ctx := context.Background()
	fd, _, e := c.Create(ctx, xl.RootGFID, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	if _, e := c.Write(ctx, fd, data, 0); e != 0 {
		t.Fatal(e)
	}
	return fd
}

// memfsClient connects a client to a brick serving a memfs on loopback;
// both go at the end of the test.
func memfsClient(t *testing.T) *Client {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(memfs.New(memfs.Options{}), server.Options{Volume: "v"})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	c, err := New(Options{Addr: ln.Addr().String(), Volume: "v"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
