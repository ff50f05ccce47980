package server_test

import (
	"context"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/probe"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// panicky is a translator with bugs: Ipc "panic" and every Releasedir
// panic.
type panicky struct{ xl.Base }

func (p panicky) Ipc(ctx context.Context, op xl.IpcOp, in xl.Xdata) (xl.Xdata, syscall.Errno) {
	if op == "panic" {
		panic("boom in ipc")
	}
	return p.Base.Ipc(ctx, op, in)
}

func (panicky) Releasedir(context.Context, xl.Fd) syscall.Errno { panic("boom in releasedir") }

// A translator that panics fails the request it was serving with EIO, and
// the log says where; the connection, its other requests and the brick
// carry on. The releases that follow a disconnect are guarded alike.
func TestPanicFailsOnlyItsRequest(t *testing.T) {
	_, addr, log := serve(t, panicky{xl.Base{Xlator: memfs.New(memfs.Options{})}})
	c, clog := newClient(t, addr)
	ctx := context.Background()
	if _, e := c.Ipc(ctx, "panic", nil); e != syscall.EIO {
		t.Fatalf("a panicking op = %v, want EIO", e)
	}
	if !log.ContainsLocalPeer("ERROR", "translator panicked", "op=Ipc", "boom in ipc", "stack=", "goroutine") {
		t.Error("the panic is not logged with op, remote address and stack")
	}
	if _, e := c.Getattr(ctx, xl.RootGFID); e != 0 {
		t.Fatalf("getattr after the panic: %v", e)
	}
	if clog.Contains("connection lost") {
		t.Error("the panic cost the client its connection")
	}

	if _, e := c.Opendir(ctx, xl.RootGFID); e != 0 {
		t.Fatal(e)
	}
	c.Close()
	eventually(t, "the release on disconnect panics", func() bool {
		return log.Contains("ERROR", "translator panicked", "op=Releasedir", "boom in releasedir")
	})
	c2, _ := newClient(t, addr)
	if _, e := c2.Getattr(ctx, xl.RootGFID); e != 0 {
		t.Fatalf("a new client after the panics: %v", e)
	}
}

// A cancel frame cancels its request's context on the brick; the request
// is still answered. A cancel for a request that is not running is
// ignored.
func TestCancelFrame(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	_, addr, _ := serve(t, pb)
	r := dial(t, addr)
	r.hello(goodHello())
	r.send(wire.AppendHeader(nil, wire.Header{Type: wire.TypeCancel, ID: 99}))
	r.send(request(1, &xl.Fop{Op: xl.OpIpc, Name: string(probe.IpcBlock)}))
	<-pb.Blocked
	r.send(wire.AppendHeader(nil, wire.Header{Type: wire.TypeCancel, ID: 1}))
	h, p, err := r.read()
	if err != nil || h.Type != wire.TypeReply || h.ID != 1 {
		t.Fatalf("after the cancel: %+v, %v", h, err)
	}
	var res xl.Result
	if err := wire.DecodeResult(p, nil, &res); err != nil || res.Errno != syscall.EINTR {
		t.Fatalf("cancelled request answered %+v, %v; want EINTR", res, err)
	}
	if res := r.call(2, &xl.Fop{Op: xl.OpGetattr, GFID: xl.RootGFID}); res.Errno != 0 {
		t.Fatalf("getattr after the cancel: %v", res.Errno)
	}
}

// Two requests in flight under one id could not be told apart by a
// cancel: the second costs the client its connection.
func TestDuplicateRequestID(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	_, addr, log := serve(t, pb)
	r := dial(t, addr)
	r.hello(goodHello())
	r.send(request(1, &xl.Fop{Op: xl.OpIpc, Name: string(probe.IpcBlock)}))
	<-pb.Blocked
	r.send(request(1, &xl.Fop{Op: xl.OpGetattr, GFID: xl.RootGFID}))
	r.expectHangup()
	waitLog(t, log, "WARN", "request id 1 is already in flight", "remote="+r.nc.LocalAddr().String())
}

// A request served inline that turns out to block does not hold up the
// other requests of its connection: the reading passes to another
// goroutine, which serves them and reads the cancel.
func TestBlockedRequestDoesNotHoldUpItsConnection(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	_, addr, _ := serve(t, pb)
	r := dial(t, addr)
	r.hello(goodHello())
	for i := range 3 {
		id := uint64(10 * (i + 1))
		r.send(request(id, &xl.Fop{Op: xl.OpIpc, Name: string(probe.IpcBlock)}))
		<-pb.Blocked
		if res := r.call(id+1, &xl.Fop{Op: xl.OpGetattr, GFID: xl.RootGFID}); res.Errno != 0 {
			t.Fatalf("getattr beside a blocked request: %v", res.Errno)
		}
		r.send(wire.AppendHeader(nil, wire.Header{Type: wire.TypeCancel, ID: id}))
		h, p, err := r.read()
		if err != nil || h.ID != id {
			t.Fatalf("after the cancel: %+v, %v", h, err)
		}
		var res xl.Result
		if err := wire.DecodeResult(p, nil, &res); err != nil || res.Errno != syscall.EINTR {
			t.Fatalf("cancelled request answered %+v, %v; want EINTR", res, err)
		}
	}
}
