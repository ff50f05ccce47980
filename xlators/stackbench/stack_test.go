// Package stackbench measures a single-brick volume's data path without
// the kernel: protocol/client, TCP loopback, protocol/server,
// features/access and storage/posix, stacked as a mount and a brick stack
// them. It holds benchmarks only; profile them with
//
//	go test ./xlators/stackbench -run '^$' -bench . -cpuprofile cpu.out
//
// The Local variants run the brick graph (access over posix) in process,
// so the difference is what the protocol costs.
package stackbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/access"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// brick is the graph a brick of a volume without replication serves.
func brick(b *testing.B) xl.Xlator {
	store, err := posix.New(b.TempDir(), posix.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	top, err := access.New(store, access.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	return top
}

// remote serves top on a loopback port and returns a connected client.
func remote(b *testing.B, top xl.Xlator) xl.Xlator {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(top, server.Options{Volume: "bench", Logger: quiet})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c, err := client.New(client.Options{Addr: ln.Addr().String(), Volume: "bench", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		srv.Close()
		if err := <-served; err != nil {
			b.Error(err)
		}
	})
	// The first call waits for the connection.
	if _, e := c.Getattr(context.Background(), xl.RootGFID); e != 0 {
		b.Fatalf("getattr root: %v", e)
	}
	return c
}

// stacks are the two ways a benchmark runs: through the protocol, and on
// the brick graph directly.
var stacks = []struct {
	name  string
	build func(*testing.B) xl.Xlator
}{
	{"Remote", func(b *testing.B) xl.Xlator { return remote(b, brick(b)) }},
	{"Local", brick},
}

// callers are who asks: root, whom access lets through at once, and an
// ordinary user, whose every op it checks.
var callers = []struct {
	name string
	call *xl.Call
}{
	{"Root", &xl.Call{Client: [16]byte{1}}},
	{"User", &xl.Call{Uid: 1000, Gid: 1000, Client: [16]byte{1}}},
}

func each(b *testing.B, run func(b *testing.B, x xl.Xlator, ctx context.Context)) {
	for _, s := range stacks {
		for _, c := range callers {
			b.Run(s.name+c.name, func(b *testing.B) {
				run(b, s.build(b), xl.WithCall(context.Background(), c.call))
			})
		}
	}
}

func must(b *testing.B, what string, e syscall.Errno) {
	b.Helper()
	if e != 0 {
		b.Fatalf("%s: %v", what, e)
	}
}

// workdir makes a directory everyone may write to, and a file in it that
// the caller owns, open read-write.
func workdir(b *testing.B, x xl.Xlator, ctx context.Context) (xl.GFID, xl.Fd) {
	root := xl.WithCall(context.Background(), &xl.Call{Client: [16]byte{1}})
	dir := xl.NewGFID()
	_, e := x.Mkdir(root, xl.RootGFID, "d", dir, 0o777)
	must(b, "mkdir", e)
	_, e = x.Setattr(root, dir, xl.SetattrIn{Valid: xl.SetMode, Mode: 0o777})
	must(b, "chmod", e)
	fd, _, e := x.Create(ctx, dir, "f", xl.NewGFID(), syscall.O_RDWR, 0o644)
	must(b, "create", e)
	b.Cleanup(func() { x.Release(ctx, fd) })
	return dir, fd
}

// transfer runs op (a Write or a Read) with a size-byte buffer at at(i)
// of workdir's file, after filling its first fill bytes.
func transfer(b *testing.B, op func(xl.Xlator, context.Context, xl.Fd, []byte, int64) (int, syscall.Errno), size int, fill int64, at func(i int) int64) {
	each(b, func(b *testing.B, x xl.Xlator, ctx context.Context) {
		_, fd := workdir(b, x, ctx)
		chunk := make([]byte, 1<<20)
		for off := int64(0); off < fill; off += int64(len(chunk)) {
			_, e := x.Write(ctx, fd, chunk, off)
			must(b, "fill", e)
		}
		buf := make([]byte, size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, e := op(x, ctx, fd, buf, at(i)); e != 0 {
				b.Fatal(e)
			}
		}
	})
}

// BenchmarkStackWrite4k is fio's randwrite: 4 KiB writes at random
// offsets in a 64 MiB file, each one call.
func BenchmarkStackWrite4k(b *testing.B) {
	transfer(b, xl.Xlator.Write, 4096, 0, func(i int) int64 { return int64(i*7919%16384) * 4096 })
}

// BenchmarkStackWrite1M is a sequential writer's request.
func BenchmarkStackWrite1M(b *testing.B) {
	transfer(b, xl.Xlator.Write, 1<<20, 0, func(i int) int64 { return int64(i%256) << 20 })
}

// BenchmarkStackRead4k reads 4 KiB at random offsets of a cached file.
func BenchmarkStackRead4k(b *testing.B) {
	transfer(b, xl.Xlator.Read, 4096, 16<<20, func(i int) int64 { return int64(i*7919%4096) * 4096 })
}

// BenchmarkStackGetxattrCaps is the security.capability probe the kernel
// makes before every write to a FUSE file (file_remove_privs).
func BenchmarkStackGetxattrCaps(b *testing.B) {
	each(b, func(b *testing.B, x xl.Xlator, ctx context.Context) {
		_, fd := workdir(b, x, ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, e := x.Getxattr(ctx, fd.GFID, "security.capability"); e != syscall.ENODATA {
				b.Fatal(e)
			}
		}
	})
}

// BenchmarkStackGetattr is a stat that misses the kernel's cache.
func BenchmarkStackGetattr(b *testing.B) {
	each(b, func(b *testing.B, x xl.Xlator, ctx context.Context) {
		_, fd := workdir(b, x, ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, e := x.Getattr(ctx, fd.GFID); e != 0 {
				b.Fatal(e)
			}
		}
	})
}

// BenchmarkStackLookup is a cold stat's lookup of an existing file.
func BenchmarkStackLookup(b *testing.B) {
	each(b, func(b *testing.B, x xl.Xlator, ctx context.Context) {
		dir, _ := workdir(b, x, ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, e := x.Lookup(ctx, dir, "f"); e != 0 {
				b.Fatal(e)
			}
		}
	})
}

// BenchmarkStackCreate is what one iteration of the meta-create workload
// asks of the translators: open(O_CREAT|O_EXCL) of a new name (a negative
// lookup, then create), a 1 KiB write, close (flush, release).
func BenchmarkStackCreate(b *testing.B) {
	each(b, func(b *testing.B, x xl.Xlator, ctx context.Context) {
		dir, _ := workdir(b, x, ctx)
		data := make([]byte, 1024)
		var n atomic.Int64
		b.ReportAllocs()
		for b.Loop() {
			name := fmt.Sprintf("c%d", n.Add(1))
			if _, e := x.Lookup(ctx, dir, name); e != syscall.ENOENT {
				b.Fatalf("lookup: %v", e)
			}
			fd, _, e := x.Create(ctx, dir, name, xl.NewGFID(), syscall.O_WRONLY|syscall.O_EXCL, 0o644)
			must(b, "create", e)
			_, e = x.Write(ctx, fd, data, 0)
			must(b, "write", e)
			must(b, "flush", x.Flush(ctx, fd))
			must(b, "release", x.Release(ctx, fd))
		}
	})
}
