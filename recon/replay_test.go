package recon

import (
	"context"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Replaying a replicated journal into a bare store applies the
// committed entries in log order, never a replaced one, and the
// uncommitted tail only when asked; replaying again changes nothing.
func TestReplay(t *testing.T) {
	ctx := context.Background()
	brick, _, file := brickJournal(t)
	j, err := Open(brick, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, uncommitted := range []bool{false, true} {
		s, _ := store(t)
		// Twice: a replay finds its own earlier work done. (Not across the
		// rename: a create is known done only under its name.)
		passes := 2
		if uncommitted {
			passes = 1
		}
		for range passes {
			st, err := j.Replay(ctx, s, ReplayOptions{Uncommitted: uncommitted}, func(e *Entry, err error) {
				t.Errorf("entry %+v: %v", e, err)
			})
			if err != nil {
				t.Fatal(err)
			}
			want := ReplayStats{Applied: 2, Skipped: 3, Uncommitted: 1}
			if uncommitted {
				want = ReplayStats{Applied: 3, Skipped: 2, Uncommitted: 1}
			}
			if st != want {
				t.Errorf("uncommitted %v: %+v, want %+v", uncommitted, st, want)
			}
		}
		name, other := "f", "g"
		if uncommitted {
			name, other = "g", "f"
		}
		a, e := s.Lookup(ctx, xl.RootGFID, name)
		if e != 0 || a.GFID != file || a.Size != 4096 {
			t.Errorf("uncommitted %v: %s: %+v %v (the replaced write must not show)", uncommitted, name, a, e)
		}
		if _, e := s.Lookup(ctx, xl.RootGFID, other); e != syscall.ENOENT {
			t.Errorf("uncommitted %v: %s: %v", uncommitted, other, e)
		}
	}
}
