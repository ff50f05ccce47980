package client_test

import (
	"context"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// benchFile connects a client to a loopback brick and opens a file of
// size bytes on it.
func benchFile(b *testing.B, size int) (*client.Client, xl.Fd) {
	br := startBrick(b, memfs.New(memfs.Options{}), "127.0.0.1:0", server.Options{})
	c, _ := newClient(b, br.addr, client.Options{})
	fd, _, e := c.Create(context.Background(), xl.RootGFID, "f", gFile, syscall.O_RDWR, 0o644)
	if e != 0 {
		b.Fatal(e)
	}
	if _, e := c.Write(context.Background(), fd, make([]byte, size), 0); e != 0 {
		b.Fatal(e)
	}
	return c, fd
}

func BenchmarkRoundTripWrite4k(b *testing.B) {
	c, fd := benchFile(b, 0)
	data := pattern(4096, 1)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, e := c.Write(ctx, fd, data, 0); e != 0 {
			b.Fatal(e)
		}
	}
}

// BenchmarkRoundTripWrite4kParallel keeps many writes in flight on the
// one connection, as a busy mount does.
func BenchmarkRoundTripWrite4kParallel(b *testing.B) {
	c, fd := benchFile(b, 0)
	ctx := context.Background()
	b.SetBytes(4096)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		data := pattern(4096, 2)
		for pb.Next() {
			if _, e := c.Write(ctx, fd, data, 0); e != 0 {
				b.Error(e)
				return
			}
		}
	})
}

func BenchmarkRoundTripRead1M(b *testing.B) {
	c, fd := benchFile(b, 1<<20)
	dst := make([]byte, 1<<20)
	ctx := context.Background()
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		if n, e := c.Read(ctx, fd, dst, 0); e != 0 || n != len(dst) {
			b.Fatal(n, e)
		}
	}
}

func BenchmarkRoundTripGetattr(b *testing.B) {
	c, _ := benchFile(b, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, e := c.Getattr(ctx, gFile); e != 0 {
			b.Fatal(e)
		}
	}
}

// BenchmarkOpenRelease is what a mount does per file it reads or writes:
// open it, then release it. It reports the process's CPU time per pair
// (cpu-ns/op) beside wall time.
func BenchmarkOpenRelease(b *testing.B) {
	c, fd := benchFile(b, 0)
	if e := c.Release(context.Background(), fd); e != 0 {
		b.Fatal(e)
	}
	ctx := context.Background()
	b.ReportAllocs()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	for b.Loop() {
		fd, e := c.Open(ctx, gFile, syscall.O_RDONLY)
		if e != 0 {
			b.Fatal(e)
		}
		if e := c.Release(ctx, fd); e != 0 {
			b.Fatal(e)
		}
	}
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
