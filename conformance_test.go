package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gluon-fs/gluon/conformance"
)

// TestConformanceFUSE runs the POSIX conformance suite through the kernel
// on a volume mounted by the real "gluon up".
func TestConformanceFUSE(t *testing.T) {
	// The suite's unprivileged user must reach the mount point: t.TempDir's
	// parent is mode 0700.
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, "--dir", dir)
	conformance.Run(t, func(t *testing.T) conformance.FS {
		return conformance.OSFS(u.mnt)
	})
	if code := u.stop(); code != 0 {
		t.Errorf("gluon up exited %d", code)
	}
}
