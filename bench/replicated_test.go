package bench

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The loopback-r3 target keeps its backing files and their two copies
// identical through writes, fsyncs, truncation, renames and removals,
// and leaves neither goroutines nor files behind.
func TestLoopbackR3Copies(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	work := t.TempDir()
	lo, err := openLoopbackR3(work)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			lo.close()
		}
	}()
	base := filepath.Dir(lo.dir)
	backings := []string{filepath.Join(base, "data"), filepath.Join(base, "copy1"), filepath.Join(base, "copy2")}
	// same checks that every backing directory holds rel with content
	// want (nil: holds no rel).
	same := func(rel string, want []byte) {
		t.Helper()
		for _, b := range backings {
			got, err := os.ReadFile(filepath.Join(b, rel))
			switch {
			case want == nil && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("%s/%s: still there (%v)", filepath.Base(b), rel, err)
			case want != nil && (err != nil || !bytes.Equal(got, want)):
				t.Errorf("%s/%s: %d bytes, %v; want %d bytes", filepath.Base(b), rel, len(got), err, len(want))
			}
		}
	}

	if err := os.Mkdir(filepath.Join(lo.dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(lo.dir, "d", "f"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 64<<10)
	for i, off := range []int{8 << 10, 0, 60 << 10, 4 << 10, 32 << 10} {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 4<<10)
		copy(want[off:], chunk)
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	same("d/f", want[:64<<10])
	if err := f.Truncate(10 << 10); err != nil {
		t.Fatal(err)
	}
	same("d/f", want[:10<<10])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(lo.dir, "d", "f"), 5<<10); err != nil {
		t.Fatal(err)
	}
	same("d/f", want[:5<<10])
	// Reopening with O_TRUNC empties the copies too.
	if err := os.WriteFile(filepath.Join(lo.dir, "d", "g"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lo.dir, "d", "g"), []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	same("d/g", []byte("short"))

	// Into a directory that has no copies yet.
	if err := os.Mkdir(filepath.Join(lo.dir, "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(lo.dir, "d", "f"), filepath.Join(lo.dir, "e", "f")); err != nil {
		t.Fatal(err)
	}
	same("d/f", nil)
	same("e/f", want[:5<<10])
	// Over a file, and of a file without copies.
	if err := os.Rename(filepath.Join(lo.dir, "d", "g"), filepath.Join(lo.dir, "e", "f")); err != nil {
		t.Fatal(err)
	}
	same("e/f", []byte("short"))
	if err := os.Symlink("f", filepath.Join(lo.dir, "e", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(lo.dir, "e", "link"), filepath.Join(lo.dir, "e", "f")); err != nil {
		t.Fatal(err)
	}
	for _, b := range backings[1:] {
		if _, err := os.Lstat(filepath.Join(b, "e", "f")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: e/f replaced by a link without copies is still there (%v)", filepath.Base(b), err)
		}
	}

	if err := os.Remove(filepath.Join(lo.dir, "e", "f")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lo.dir, "e", "h"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	same("e/h", want)
	if err := os.Remove(filepath.Join(lo.dir, "e", "h")); err != nil {
		t.Fatal(err)
	}
	same("e/h", nil)
	for _, d := range []string{"d", "e"} {
		if err := os.Remove(filepath.Join(lo.dir, d)); err != nil {
			t.Fatal(err)
		}
		same(d, nil)
	}

	closed = true
	if err := lo.close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}

// The harness's writing and metadata workloads run on loopback-r3, and
// the benchmark process is measured as its server.
func TestRunLoopbackR3(t *testing.T) {
	work := t.TempDir()
	rep, err := Run(context.Background(), Config{
		Targets:     []string{"loopback-r3"},
		Workloads:   []string{"randwrite-fsync", "randrw", "meta"},
		Rounds:      1,
		Runtime:     time.Second,
		Size:        "4M",
		ReadSize:    "4M",
		Jobs:        2,
		MetaFiles:   100,
		MetaDirs:    4,
		KeepCaches:  true,
		WorkDir:     work,
		RawDir:      t.TempDir(),
		MetaWorkers: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := 2 + len(MetaPhases); len(rep.Results) != n {
		t.Fatalf("%d results, want %d", len(rep.Results), n)
	}
	for _, res := range rep.Results {
		if res.Error != "" || res.Value() <= 0 || !res.Measured {
			t.Errorf("%s: %+v", res.Workload, res)
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir not cleaned up: %v", ents)
	}
}
