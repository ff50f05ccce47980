package conformance_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/conformance"
	"github.com/gluon-fs/gluon/xlators/access"
	"github.com/gluon-fs/gluon/xlators/posix"
)

func TestMain(m *testing.M) {
	conformance.MaybeRunChild()
	// OSFS creates through the kernel, which applies the umask; the cases
	// assume the usual 022.
	syscall.Umask(0o022)
	goleak.VerifyTestMain(m)
}

// searchableTempDir is a t.TempDir that uid 65534 can reach: the
// directory t.TempDir makes it in is mode 0700.
func searchableTempDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOSFS runs the suite against the kernel's filesystem under
// t.TempDir(), which checks the suite itself: every case states what
// Linux does.
func TestOSFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the suite creates devices and changes owners, so it must run as root")
	}
	conformance.Run(t, func(t *testing.T) conformance.FS {
		return conformance.OSFS(searchableTempDir(t))
	})
}

// TestPosix runs the suite against a brick's store behind the
// access-control translator, driven as the FUSE bridge would.
func TestPosix(t *testing.T) {
	conformance.Run(t, func(t *testing.T) conformance.FS {
		store, err := posix.New(t.TempDir(), posix.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := store.Close(); err != nil {
				t.Error(err)
			}
		})
		x, err := access.New(store, access.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return conformance.XlFS(x)
	}, conformance.LargeXattrs)
}
