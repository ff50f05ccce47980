package bench

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A descriptor inherited without close-on-exec (as flock(1) passes its
// lock) must not reach the GlusterFS daemons the gluster target starts.
func TestCloexecInherited(t *testing.T) {
	fd, err := syscall.Open(os.DevNull, syscall.O_RDONLY, 0) // no O_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	cloexecInherited()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("fd %d still inherited by children: flags %#x", fd, flags)
	}
}
