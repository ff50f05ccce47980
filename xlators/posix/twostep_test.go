package posix

import (
	"fmt"
	"sync"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestLookupDuringMkdirDoesNotAdopt: a lookup or a listing that meets a
// directory another request is making waits for its label instead of
// adopting it under a GFID of its own (which failed the mkdir with
// EEXIST and left the directory under the wrong GFID). DHT2 clients make
// their anchor directories so, racing each other's scrubbers.
func TestLookupDuringMkdirDoesNotAdopt(t *testing.T) {
	s := newBrick(t)
	ctx := bg
	for i := range 200 {
		name := fmt.Sprintf("d%d", i)
		g := xl.NewGFID()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 20 {
				s.Lookup(ctx, xl.RootGFID, name)
			}
		}()
		go func() {
			defer wg.Done()
			fd, e := s.Opendir(ctx, xl.RootGFID)
			if e != 0 {
				t.Error(e)
				return
			}
			defer s.Releasedir(ctx, fd)
			s.Readdir(ctx, fd, 0, 1000)
		}()
		a, e := s.Mkdir(ctx, xl.RootGFID, name, g, 0o755)
		wg.Wait()
		if e != 0 || a.GFID != g {
			t.Fatalf("mkdir %s racing lookups: %v, gfid %v, want %v", name, e, a.GFID, g)
		}
		if a, e := s.Lookup(ctx, xl.RootGFID, name); e != 0 || a.GFID != g {
			t.Fatalf("lookup after: %v, gfid %v", e, a.GFID)
		}
	}
}
