package client_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/probe"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/spy"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// A call the caller gives up on stops on the brick too: its handler sees
// its ctx end, while the connection carries on.
func TestCancelReachesServer(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	b := startBrick(t, pb, "127.0.0.1:0", server.Options{})
	c, log := newClient(t, b.addr, client.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan syscall.Errno)
	go func() {
		_, e := c.Ipc(ctx, probe.IpcBlock, nil)
		done <- e
	}()
	<-pb.Blocked
	cancel()
	if e := <-done; e != syscall.EINTR {
		t.Fatalf("cancelled call = %v, want EINTR", e)
	}
	select {
	case <-pb.Unblocked:
	case <-time.After(20 * time.Second):
		t.Fatal("the brick never saw the cancellation")
	}
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 {
		t.Fatalf("getattr after the cancellation: %v", e)
	}
	if log.Contains("connection lost") {
		t.Error("cancelling cost the connection")
	}
}

// An open abandoned by its caller may still succeed on the brick; the fd
// it got must not stay open until the connection ends.
func TestAbandonedOpenIsReleased(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	ctx := context.Background()
	if _, e := fs.Mkdir(ctx, xl.RootGFID, "d", gDir, 0o755); e != 0 {
		t.Fatal(e)
	}
	if _, e := fs.Mknod(ctx, xl.RootGFID, "f", gFile, syscall.S_IFREG|0o644, 0); e != 0 {
		t.Fatal(e)
	}
	sp := spy.New(fs)
	sp.Gate = make(chan struct{})
	b := startBrick(t, sp, "127.0.0.1:0", server.Options{})
	c, _ := newClient(t, b.addr, client.Options{})
	opens := []struct {
		name string
		open func(context.Context) syscall.Errno
	}{
		{"open", func(ctx context.Context) syscall.Errno { _, e := c.Open(ctx, gFile, syscall.O_RDWR); return e }},
		{"opendir", func(ctx context.Context) syscall.Errno { _, e := c.Opendir(ctx, gDir); return e }},
	}
	for i, op := range opens {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan syscall.Errno)
		go func() { done <- op.open(cctx) }()
		<-sp.Opening
		cancel()
		if e := <-done; e != syscall.EINTR {
			t.Fatalf("%s: cancelled = %v, want EINTR", op.name, e)
		}
		sp.Gate <- struct{}{} // the brick opens it after all
		eventually(t, op.name+": the orphaned fd is released", func() bool {
			fds := sp.Opened()
			return len(fds) == i+1 && sp.Released(fds[i]) == 1
		})
	}
	// Released exactly once: the server forgot them, and has nothing left
	// to release when the connection ends.
	c.Close()
	b.stop()
	for i, fd := range sp.Opened() {
		if n := sp.Released(fd); n != 1 {
			t.Errorf("%s: fd released %d times", opens[i].name, n)
		}
	}
}
