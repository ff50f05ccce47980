package dht2

import (
	"bytes"
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// holdBelow sits below a Guard. It holds the first request that matches
// hold, after the guard let it through, until release is closed, and
// closes past once after matches a request and its answer.
type holdBelow struct {
	xl.Funnel
	entered, release, past chan struct{}
	once, pastOnce         sync.Once
}

func newHoldBelow(next xl.Xlator, hold func(context.Context, *xl.Fop) bool, after func(context.Context, *xl.Fop, *xl.Result) bool) *holdBelow {
	h := &holdBelow{entered: make(chan struct{}), release: make(chan struct{}), past: make(chan struct{})}
	h.Funnel = xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		if hold(ctx, f) {
			held := false
			h.once.Do(func() { held = true })
			if held {
				close(h.entered)
				<-h.release
			}
		}
		r := xl.Dispatch(ctx, next, f)
		if after(ctx, f, r) {
			h.pastOnce.Do(func() { close(h.past) })
		}
		return r
	}}
	return h
}

func migrating(ctx context.Context) bool {
	_, ok := xl.CallFrom(ctx).Xdata[bypassKey]
	return ok
}

// TestFenceWaitsForRequestsInFlight: a request for a token that the
// source's Guard let through just before the fence, and that reaches the
// store only after the migration read what it changes, is not lost: the
// fence waits for it. A client's create that raced the fence was missed
// by the copy, removed with the source's copy, and its first write at the
// new home got ESTALE; a write that raced it was lost.
func TestFenceWaitsForRequestsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		// op is the other client's request that is held below the guard.
		op func(d *DHT2, dir, f xl.GFID) (xl.GFID, syscall.Errno)
		// hold matches it; after matches the migration's read under the
		// fence past which it would be missed.
		hold  func(dir, f xl.GFID) func(context.Context, *xl.Fop) bool
		after func(dir, f xl.GFID) func(context.Context, *xl.Fop, *xl.Result) bool
	}{{
		name: "create",
		op: func(d *DHT2, dir, _ xl.GFID) (xl.GFID, syscall.Errno) {
			fd, a, e := d.Create(bg, dir, "late", xl.NewGFID(), syscall.O_RDWR, 0o644)
			if e != 0 {
				return xl.GFID{}, e
			}
			defer d.Release(bg, fd)
			_, e = d.Write(bg, fd, []byte("late"), 0)
			return a.GFID, e
		},
		hold: func(dir, _ xl.GFID) func(context.Context, *xl.Fop) bool {
			return func(ctx context.Context, f *xl.Fop) bool { return f.Op == xl.OpCreate && f.Name == "late" }
		},
		after: func(dir, _ xl.GFID) func(context.Context, *xl.Fop, *xl.Result) bool {
			return func(ctx context.Context, f *xl.Fop, r *xl.Result) bool { // the end of its listing
				return f.Op == xl.OpReaddir && f.Fd.GFID == dir && migrating(ctx) && len(r.Dirents) == 0
			}
		},
	}, {
		name: "write",
		op: func(d *DHT2, _, f xl.GFID) (xl.GFID, syscall.Errno) {
			fd, e := d.Open(bg, f, syscall.O_RDWR)
			if e != 0 {
				return f, e
			}
			defer d.Release(bg, fd)
			_, e = d.Write(bg, fd, []byte("late"), 0)
			return f, e
		},
		hold: func(_, g xl.GFID) func(context.Context, *xl.Fop) bool {
			return func(ctx context.Context, f *xl.Fop) bool { return f.Op == xl.OpWrite && f.Fd.GFID == g }
		},
		after: func(_, g xl.GFID) func(context.Context, *xl.Fop, *xl.Result) bool {
			return func(ctx context.Context, f *xl.Fop, _ *xl.Result) bool {
				return f.Op == xl.OpRead && f.Fd.GFID == g && migrating(ctx)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterOf(t, 2, 1, Options{})
			other := c.client(Options{})
			dir := c.mkdirOn(xl.RootGFID, "d", 0)
			f := c.create(dir, "f", []byte("orig"))
			tok := TokenOf(dir)
			src := c.guards[0]
			// Before any request: the guard's child is only read by requests.
			after := tc.after(dir, f)
			h := newHoldBelow(src.next, tc.hold(dir, f), func(ctx context.Context, fop *xl.Fop, r *xl.Result) bool {
				return after(ctx, fop, r) && src.Fenced(tok)
			})
			src.next = h

			type result struct {
				g xl.GFID
				e syscall.Errno
			}
			done := make(chan result, 1)
			go func() {
				g, e := tc.op(other, dir, f)
				done <- result{g, e}
			}()
			<-h.entered
			migrated := make(chan error, 1)
			go func() { migrated <- c.d.MigrateToken(bg, tok, 1, nil) }()
			// Let the request go once the source's guard waits for it, or
			// once the migration has read past it without waiting.
		wait:
			for src.draining.Load() == 0 {
				select {
				case <-h.past:
					break wait
				case <-time.After(time.Millisecond):
				}
			}
			close(h.release)
			if err := <-migrated; err != nil {
				t.Fatal(err)
			}
			c.move(c.src, tok, 1)
			r := <-done
			if r.e != 0 {
				t.Fatalf("%s that raced the fence: %v", tc.name, r.e)
			}
			for _, d := range []*DHT2{c.d, other} {
				if got := read(t, d, r.g); !bytes.Equal(got, []byte("late")) {
					t.Errorf("read %q, want %q", got, "late")
				}
			}
			if _, e := c.stores[1].Getattr(bg, r.g); e != 0 {
				t.Errorf("the file is not on the new home: %v", e)
			}
			if _, e := c.stores[0].Getattr(bg, r.g); e != syscall.ESTALE && e != syscall.ENOENT {
				t.Errorf("the old home kept the file: %v", e)
			}
		})
	}
}
