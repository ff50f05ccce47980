package client_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/probe"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// An idle connection stays up: someone reads the pongs even when no call
// is waiting for a reply.
func TestIdleConnectionStaysUp(t *testing.T) {
	b := startBrick(t, memfs.New(memfs.Options{}), "127.0.0.1:0", server.Options{})
	c, log := newClient(t, b.addr, client.Options{PingInterval: 20 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	ctx := context.Background()
	if _, e := c.Getattr(ctx, xl.RootGFID); e != 0 {
		t.Fatal(e)
	}
	time.Sleep(time.Second) // five ping timeouts without a call
	if log.Contains("connection lost") {
		t.Fatal("an idle connection was declared dead")
	}
	if _, e := c.Getattr(ctx, xl.RootGFID); e != 0 {
		t.Fatal(e)
	}
}

// A caller whose ctx ends while it reads a reply, its own or another's,
// leaves the connection in order: the frame it was reading is finished
// by the next reader, and the caller gets its reply or EINTR.
func TestCancelWhileReadingAReply(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	half := make(chan struct{})
	rest := make(chan struct{})
	addr := fakeBrick(t, func(nc net.Conn) {
		if welcome(nc) != nil {
			return
		}
		for first := true; ; first = false {
			var hb [wire.HeaderSize]byte
			if _, err := io.ReadFull(nc, hb[:]); err != nil {
				return
			}
			h, err := wire.ParseHeader(hb[:], wire.DefaultMaxFrame)
			if err != nil {
				return
			}
			if _, err := io.ReadFull(nc, make([]byte, h.Len)); err != nil {
				return
			}
			if h.Type != wire.TypeRequest {
				if h.Type == wire.TypePing {
					nc.Write(wire.AppendHeader(nil, wire.Header{Type: wire.TypePong}))
				}
				continue
			}
			if !first {
				nc.Write(wire.AppendReply(nil, h.ID, &xl.Result{}))
				continue
			}
			// The reply to the read, in two halves.
			frame := wire.AppendReply(nil, h.ID, &xl.Result{N: int64(len(data)), Data: data})
			nc.Write(append(frame, data[:len(data)/2]...))
			close(half)
			<-rest
			nc.Write(data[len(data)/2:])
		}
	})
	c, log := newClient(t, addr, client.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	dst := make([]byte, len(data))
	type result struct {
		n int
		e syscall.Errno
	}
	done := make(chan result)
	go func() {
		n, e := c.Read(ctx, xl.Fd{GFID: gFile, H: 1}, dst, 0)
		done <- result{n, e}
	}()
	<-half
	time.Sleep(20 * time.Millisecond) // let the caller read into the half
	cancel()
	close(rest)
	switch r := <-done; {
	case r.e == syscall.EINTR:
	case r.e == 0 && r.n == len(data) && bytes.Equal(dst, data):
	default:
		t.Fatalf("cancelled read = %d bytes, %v; want the reply or EINTR", r.n, r.e)
	}
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 {
		t.Fatalf("getattr after the cancelled read: %v", e)
	}
	if log.Contains("connection lost") {
		t.Error("the cancelled read cost the connection")
	}
}

// Many callers, some giving up at random moments, share a connection:
// each gets its own reply or EINTR/ETIMEDOUT, and the connection stays.
func TestCancelStorm(t *testing.T) {
	b := startBrick(t, probe.New(memfs.New(memfs.Options{})), "127.0.0.1:0", server.Options{})
	c, log := newClient(t, b.addr, client.Options{})
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 { // connected
		t.Fatal(e)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.N(200))*time.Microsecond)
				want := []byte{byte(g), byte(i)}
				out, e := c.Ipc(ctx, probe.IpcEcho, xl.Xdata{"v": want})
				cancel()
				switch {
				case e == syscall.EINTR, e == syscall.ETIMEDOUT:
				case e != 0:
					t.Errorf("echo: %v", e)
					return
				case !bytes.Equal(out["v"], want):
					t.Errorf("echo %v answered %v", want, out["v"])
					return
				}
			}
		})
	}
	wg.Wait()
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 {
		t.Fatalf("getattr after the storm: %v", e)
	}
	if log.Contains("connection lost") {
		t.Error("cancellations cost the connection")
	}
}
