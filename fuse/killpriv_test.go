package fuse

import (
	"bufio"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/xlators/access"
)

const (
	kpUid = 1234
	kpGid = 1235
)

// asUser starts sh -c script as kpUid:kpGid with $1 set to arg.
func asUser(script, arg string) *exec.Cmd {
	cmd := exec.Command("sh", "-c", script, "sh", arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: kpUid, Gid: kpGid, Groups: []uint32{}}}
	return cmd
}

// The mount leaves clearing set-id bits and file capabilities to the
// bricks (FUSE_HANDLE_KILLPRIV_V2), so the kernel no longer asks for
// security.capability before every write. What a user sees must not
// change: a write, truncate or chown clears them as on a local file
// system, and stat and exec see the cleared mode at once.
func TestKillPriv(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run commands as another user")
	}
	top, err := access.New(newLeaf(t), access.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := mount(t, top)
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	fn := filepath.Join(dir, "f")
	if err := os.WriteFile(fn, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(fn, 0, kpGid); err != nil {
		t.Fatal(err)
	}
	const priv = unix.S_ISUID | unix.S_ISGID | 0o775 // group-writable, group-executable
	setPriv := func() {
		t.Helper()
		if err := unix.Chmod(fn, priv); err != nil {
			t.Fatal(err)
		}
	}
	mode := func() uint32 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(fn, &st); err != nil {
			t.Fatal(err)
		}
		return st.Mode &^ unix.S_IFMT
	}
	run := func(cmd *exec.Cmd) {
		t.Helper()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", cmd.Args, err, out)
		}
	}
	for _, tc := range []struct {
		name   string
		modify func()
		want   uint32
	}{
		{"WriteByUser", func() { run(asUser(`printf x 1<>"$1"`, fn)) }, 0o775},
		{"TruncateByUser", func() { run(asUser(`truncate -s 3 "$1"`, fn)) }, 0o775},
		{"OpenTruncByUser", func() { run(asUser(`: > "$1"`, fn)) }, 0o775},
		{"ChownByRoot", func() {
			if err := os.Chown(fn, kpUid, kpGid); err != nil {
				t.Fatal(err)
			}
		}, 0o775},
		{"WriteByRoot", func() {
			if err := os.WriteFile(fn, []byte("root"), 0); err != nil {
				t.Fatal(err)
			}
		}, priv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chown(fn, 0, kpGid); err != nil {
				t.Fatal(err)
			}
			setPriv()
			if got := mode(); got != priv {
				t.Fatalf("mode %#o before, want %#o", got, priv)
			}
			tc.modify()
			if got := mode(); got != tc.want {
				t.Errorf("mode %#o after, want %#o", got, tc.want)
			}
		})
	}

	// A user who opened the file before it became set-id clears the bits
	// with the next write.
	t.Run("SetAfterOpen", func(t *testing.T) {
		if err := unix.Chmod(fn, 0o775); err != nil {
			t.Fatal(err)
		}
		cmd := asUser(`exec 3<>"$1"; echo open; read go; printf x >&3`, fn)
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "open\n" {
			t.Fatalf("child said %q, %v", line, err)
		}
		setPriv()
		in.Write([]byte("\n"))
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := mode(); got != 0o775 {
			t.Errorf("mode %#o after the write, want 0775", got)
		}
	})

	// The kernel checks exec permission and the set-id bits against its
	// cached attributes, which a write by a user must not leave stale.
	t.Run("CachedModeAfterWrite", func(t *testing.T) {
		setPriv()
		mode() // the kernel caches the set-id mode
		run(asUser(`printf x 1<>"$1"`, fn))
		// Asking for the mode alone, the kernel answers from its cache
		// unless the mode is known stale, as exec and access(2) do; a
		// full stat would refetch it with the size the write changed.
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, fn, 0, unix.STATX_MODE, &sx); err != nil {
			t.Fatal(err)
		}
		if got := uint32(sx.Mode) &^ unix.S_IFMT; got != 0o775 {
			t.Errorf("cached mode %#o after the write, want 0775", got)
		}
	})

	// File capabilities go with any write, root's included.
	t.Run("Capabilities", func(t *testing.T) {
		if err := unix.Chmod(fn, 0o755); err != nil {
			t.Fatal(err)
		}
		// struct vfs_cap_data, revision 2: CAP_NET_BIND_SERVICE permitted
		// and effective.
		caps := make([]byte, 20)
		binary.LittleEndian.PutUint32(caps[0:], 0x02000001)
		binary.LittleEndian.PutUint32(caps[4:], 1<<unix.CAP_NET_BIND_SERVICE)
		if err := unix.Setxattr(fn, "security.capability", caps, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Getxattr(fn, "security.capability", make([]byte, 64)); err != nil {
			t.Fatalf("capabilities not set: %v", err)
		}
		if err := os.WriteFile(fn, []byte("new code"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Getxattr(fn, "security.capability", make([]byte, 64)); err != unix.ENODATA {
			t.Errorf("capabilities after a write: %v, want ENODATA", err)
		}
	})
}
