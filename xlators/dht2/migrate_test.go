package dht2

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// content is a self-checking file body for version v of a file.
func content(name string, v int) []byte {
	b := make([]byte, 8<<10+v%1000)
	for i := 0; i+8 <= len(b)-8; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], xxhash.Sum64String(fmt.Sprint(name, v, i)))
	}
	binary.LittleEndian.PutUint64(b[len(b)-8:], xxhash.Sum64(b[:len(b)-8]))
	return b
}

func intact(b []byte) bool {
	return len(b) >= 8 && binary.LittleEndian.Uint64(b[len(b)-8:]) == xxhash.Sum64(b[:len(b)-8])
}

// TestMigrateUnderLoad moves the tokens of a tree to a new set while two
// clients read and write checksummed files in it. Nothing is lost or
// corrupted, every file stays readable, and afterwards the tree lives on
// the new set only.
func TestMigrateUnderLoad(t *testing.T) {
	c := newClusterOf(t, 4, 3, Options{})
	other := c.client(Options{}) // a second client, told of layouts by the store
	var dirs []xl.GFID
	var toks []uint16
	files := map[xl.GFID][]byte{}
	for s := range 3 {
		dir := c.mkdirOn(xl.RootGFID, fmt.Sprintf("d%d", s), s)
		sub := c.mkdirOn(dir, "sub", (s+1)%3)
		dirs = append(dirs, dir, sub)
		toks = append(toks, TokenOf(dir), TokenOf(sub))
		for i := range 10 {
			name := fmt.Sprintf("f%d", i)
			b := content(name, 0)
			files[c.create(dir, name, b)] = b
			files[c.create(sub, name, b)] = b
		}
		// A hard link and a renamed file: remote names in the tree.
		f := must(c.d.Lookup(bg, dir, "f0"))(t).GFID
		must(c.d.Link(bg, f, sub, "link"))(t)
		ok(t, c.d.Rename(bg, dir, "f1", sub, "moved", 0))
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops atomic.Int64
	errs := make(chan error, 100)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	// Readers: files nobody writes must read back intact throughout.
	for _, d := range []*DHT2{c.d, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				for g, want := range files {
					fd, e := d.Open(bg, g, syscall.O_RDONLY)
					if e != 0 {
						fail(fmt.Errorf("open %v: %v", g, e))
						return
					}
					buf := make([]byte, len(want)+1)
					n, e := d.Read(bg, fd, buf, 0)
					d.Release(bg, fd)
					if e != 0 || !bytes.Equal(buf[:n], want) {
						fail(fmt.Errorf("read %v: %d bytes, %v, intact %v", g, n, e, bytes.Equal(buf[:n], want)))
						return
					}
					ops.Add(1)
				}
			}
		}()
	}
	// Writers: each creates, rewrites and reads back its own files.
	type written struct {
		dir  xl.GFID
		name string
		v    int
	}
	var wmu sync.Mutex
	var wrote []written
	for w, d := range []*DHT2{c.d, other, c.d} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 30; i++ { // bounded: each file is copied again when its token moves
				dir := dirs[i%len(dirs)]
				name := fmt.Sprintf("w%d-%d", w, i)
				fd, _, e := d.Create(bg, dir, name, xl.NewGFID(), syscall.O_RDWR, 0o644)
				if e != 0 {
					fail(fmt.Errorf("create %s: %v", name, e))
					return
				}
				v := 0
				for ; v < 3; v++ {
					b := content(name, v)
					if n, e := d.Write(bg, fd, b, 0); e != 0 || n != len(b) {
						fail(fmt.Errorf("write %s: %d, %v", name, n, e))
						return
					}
					if _, e := d.Truncate(bg, fd.GFID, uint64(len(b))); e != 0 {
						fail(fmt.Errorf("truncate %s: %v", name, e))
						return
					}
					got := make([]byte, len(b))
					if n, e := d.Read(bg, fd, got, 0); e != 0 || n != len(b) || !intact(got) {
						fail(fmt.Errorf("read back %s: %d, %v", name, n, e))
						return
					}
					ops.Add(1)
				}
				d.Release(bg, fd)
				wmu.Lock()
				wrote = append(wrote, written{dir, name, v - 1})
				wmu.Unlock()
			}
		}()
	}
	// Migrate each token of the tree to set 3 while they run.
	for _, tok := range toks {
		before := ops.Load()
		for ops.Load() < before+20 && len(errs) == 0 { // let the load touch it
			time.Sleep(time.Millisecond)
		}
		var last MigrateProgress
		if err := c.d.MigrateToken(ctx, tok, 3, func(p MigrateProgress) { last = p }); err != nil {
			t.Fatal(err)
		}
		if !last.Done || last.Files == 0 {
			t.Errorf("token %d: progress %+v", tok, last)
		}
		c.move(c.src, tok, 3)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Everything written is there, intact, from both clients.
	for _, d := range []*DHT2{c.d, other} {
		for g, want := range files {
			if !bytes.Equal(read(t, d, g), want) {
				t.Errorf("file %v changed", g)
			}
		}
		for _, w := range wrote {
			a := must(d.Lookup(bg, w.dir, w.name))(t)
			if got := read(t, d, a.GFID); !bytes.Equal(got, content(w.name, w.v)) {
				t.Errorf("%s: %d bytes, not version %d", w.name, len(got), w.v)
			}
		}
	}
	if len(wrote) == 0 {
		t.Error("the writers wrote nothing")
	}
	// The tree lives on set 3 only; the old homes keep nothing of it.
	for k, dir := range dirs {
		for s, st := range c.stores {
			_, e := st.Getattr(bg, dir)
			if (e == 0) != (s == 3) {
				t.Errorf("directory %d on set %d: %v", k, s, e)
			}
		}
	}
	st, err := c.d.Scrub(bg)
	if err != nil || st.Orphans+st.Dangling+st.Errors != 0 {
		t.Errorf("scrub after the migration: %+v, %v", st, err)
	}
}

// TestStaleLayoutRedirect: a client whose layout is stale sends a request
// to the set that gave the token away; the set refuses it, and the client
// waits for the new layout and applies it at the new home, never at the
// old one.
func TestStaleLayoutRedirect(t *testing.T) {
	c := newCluster(t, 3, Options{})
	stale := NewMemStore(Even(3))
	b := c.client(Options{Layout: stale})
	dir := c.mkdirOn(xl.RootGFID, "d", 0)
	tok := TokenOf(dir)
	c.create(dir, "before", []byte("before"))
	if err := c.d.MigrateToken(bg, tok, 2, nil); err != nil {
		t.Fatal(err)
	}
	c.move(c.src, tok, 2)
	if !c.guards[0].Fenced(tok) {
		t.Fatal("the old home does not refuse the token")
	}
	done := make(chan syscall.Errno, 1)
	go func() {
		fd, _, e := b.Create(bg, dir, "after", xl.NewGFID(), syscall.O_RDWR, 0o644)
		if e == 0 {
			_, e = b.Write(bg, fd, []byte("after"), 0)
			b.Release(bg, fd)
		}
		done <- e
	}()
	select {
	case e := <-done:
		t.Fatalf("the stale client's create finished before it learned the layout: %v", e)
	case <-time.After(50 * time.Millisecond):
	}
	c.move(stale, tok, 2)
	if e := <-done; e != 0 {
		t.Fatalf("create after the redirect: %v", e)
	}
	a := must(c.d.Lookup(bg, dir, "after"))(t)
	if got := read(t, c.d, a.GFID); string(got) != "after" {
		t.Errorf("read %q", got)
	}
	if _, e := c.stores[2].Getattr(bg, a.GFID); e != 0 {
		t.Errorf("the file is not on the new home: %v", e)
	}
	if _, e := c.stores[0].Lookup(bg, dir, "after"); e != syscall.ESTALE && e != syscall.ENOENT {
		t.Errorf("the old home has the file: %v", e)
	}
	if got := read(t, b, must(b.Lookup(bg, dir, "before"))(t).GFID); string(got) != "before" {
		t.Errorf("the stale client reads %q", got)
	}
}

// TestScrubDuringMigration: a scrubber whose layout is stale while a
// token moves sees the token's half of its remote names missing from
// where it looks; it checks again through the layout before removing
// anything, and removes nothing.
func TestScrubDuringMigration(t *testing.T) {
	c := newClusterOf(t, 3, 3, Options{})
	p0 := c.mkdirOn(xl.RootGFID, "p0", 0)
	sub := c.mkdirOn(p0, "sub", 1) // a stub on set 0, the inode on set 1
	f := c.create(sub, "f", []byte("f"))
	must(c.d.Link(bg, f, p0, "link"))(t) // and the other way round
	stale := NewMemStore(Even(3))
	s := c.client(Options{Layout: stale, ScrubGrace: -1})
	for _, tok := range []uint16{TokenOf(sub), TokenOf(p0)} {
		if err := c.d.MigrateToken(bg, tok, 2, nil); err != nil {
			t.Fatal(err)
		}
		c.move(c.src, tok, 2)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.move(stale, TokenOf(sub), 2)
		c.move(stale, TokenOf(p0), 2)
	}()
	st, err := s.Scrub(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Orphans+st.Dangling != 0 {
		t.Errorf("scrub with a stale layout removed something: %+v", st)
	}
	if a := must(c.d.Lookup(bg, p0, "sub"))(t); a.GFID != sub {
		t.Errorf("sub: %v", a.GFID)
	}
	if a := must(c.d.Lookup(bg, p0, "link"))(t); a.GFID != f {
		t.Errorf("link: %v", a.GFID)
	}
	if got := read(t, c.d, f); string(got) != "f" {
		t.Errorf("f: %q", got)
	}
}

// TestMigratePrecopy: files are staged on the target before the freeze,
// and only those that changed meanwhile are copied under it.
func TestMigratePrecopy(t *testing.T) {
	c := newClusterOf(t, 2, 1, Options{})
	c.d.stageQuiet = 0 // stage files however new
	dir := c.mkdirOn(xl.RootGFID, "d", 0)
	want := map[string][]byte{}
	for i := range 5 {
		name := fmt.Sprintf("f%d", i)
		want[name] = content(name, i)
		c.create(dir, name, want[name])
	}
	c.create(dir, "empty", nil) // nothing to stage
	c.d.migrateHook = func(string) {
		// A change between the precopy and the freeze.
		a := must(c.d.Lookup(bg, dir, "f3"))(t)
		fd := must(c.d.Open(bg, a.GFID, syscall.O_WRONLY))(t)
		must(c.d.Write(bg, fd, []byte("more"), int64(a.Size)))(t)
		c.d.Release(bg, fd)
		want["f3"] = append(want["f3"], "more"...)
	}
	var last MigrateProgress
	if err := c.d.MigrateToken(bg, TokenOf(dir), 1, func(p MigrateProgress) { last = p }); err != nil {
		t.Fatal(err)
	}
	c.move(c.src, TokenOf(dir), 1)
	if last.Precopied != 4 || last.Files != 6 {
		t.Errorf("progress %+v, want 6 files of which 4 precopied", last)
	}
	for name, b := range want {
		a := must(c.d.Lookup(bg, dir, name))(t)
		if got := read(t, c.d, a.GFID); !bytes.Equal(got, b) {
			t.Errorf("%s: %d bytes, want %d", name, len(got), len(b))
		}
		if _, e := c.stores[1].Getattr(bg, a.GFID); e != 0 {
			t.Errorf("%s is not on the new home: %v", name, e)
		}
	}
	// No staged copy is left behind.
	for name, a := range list(t, c.d, dir) {
		if _, e := c.stores[1].Lookup(bg, bucket(TokenOf(dir)), stageName(a.GFID)); e != syscall.ENOENT {
			t.Errorf("stage of %s: %v", name, e)
		}
		if a.Nlink != 1 {
			t.Errorf("%s: nlink %d", name, a.Nlink)
		}
	}
	st, err := c.d.Scrub(bg)
	if err != nil || st.Orphans+st.Dangling+st.Errors != 0 {
		t.Errorf("scrub: %+v, %v", st, err)
	}
}

// The copy is synced on its new set while the source still holds the
// data: a client that fsynced the file on the old set, or whose writes
// were answered durable and so skips its fsync, must not find it only
// in the new set's unsynced journals after the cut-over.
func TestMigrateSyncsCopyBeforeCutover(t *testing.T) {
	var sets atomic.Int32
	var c *cluster
	var file xl.GFID
	var syncs, whileSourceHad atomic.Int32
	wrap := func(next xl.Xlator) xl.Xlator {
		set := sets.Add(1) - 1
		f := &xl.Funnel{}
		f.H = func(ctx context.Context, op *xl.Fop) *xl.Result {
			if set == 1 && op.Op == xl.OpFsync {
				syncs.Add(1)
				if _, e := c.stores[0].Getattr(bg, file); e == 0 {
					whileSourceHad.Add(1)
				}
			}
			return xl.Dispatch(ctx, next, op)
		}
		return f
	}
	c = newClusterWith(t, 2, 1, Options{}, wrap)
	dir := c.mkdirOn(xl.RootGFID, "d", 0)
	file = c.create(dir, "f", []byte("data"))
	if err := c.d.MigrateToken(bg, TokenOf(dir), 1, nil); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() == 0 || whileSourceHad.Load() == 0 {
		t.Fatalf("the new set got %d fsyncs, %d while the source still had the file; want one before the cut-over", syncs.Load(), whileSourceHad.Load())
	}
	if _, e := c.stores[0].Getattr(bg, file); e == 0 {
		t.Fatal("the source still has the file after the migration")
	}
}
