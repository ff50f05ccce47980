package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The gluster target is the single-host GlusterFS setup of gluon's
// baseline measurements: all bricks on this machine, glusterd bound to
// 127.0.0.1, Debian's default volume options, and a FUSE mount by
// mount.glusterfs.

const (
	glusterInstallHint = "apt-get install -y glusterfs-server"
	// The gluster CLI refuses brick hosts spelled localhost or 127.0.0.1,
	// so bricks use a host name resolving to 127.0.0.1: the machine's own
	// name if it does, else this alias, added to /etc/hosts for the run.
	glusterAlias      = "gluon-bench-loopback"
	glusterHostMarker = "# added-by-gluon-bench"
	etcHosts          = "/etc/hosts"
)

// glusterdVolfile is Debian's glusterd.vol with management bound to loopback.
const glusterdVolfile = `volume management
    type mgmt/glusterd
    option working-directory /var/lib/glusterd
    option transport-type socket
    option transport.address-family inet
    option transport.socket.bind-address 127.0.0.1
    option transport.socket.keepalive-time 10
    option transport.socket.keepalive-interval 2
    option transport.socket.read-fail-log off
    option transport.socket.listen-port 24007
    option ping-timeout 0
    option event-threads 1
    option max-port  60999
end-volume
`

type glusterVolume struct {
	log       *slog.Logger
	gluster   string // CLI binary
	base      string // temporary directory: bricks, mount point, glusterd files
	vol       string
	mnt       string
	host      string
	addedHost bool
	// glusterd is the pid of the glusterd this run started, 0 if it
	// found one running (which it then leaves running).
	glusterd int
	created  bool
	mounted  bool
}

var sbinDirs = []string{"/usr/sbin", "/sbin"}

// findSbin looks a program up in PATH and then in the sbin directories,
// which are not always in root's PATH under sudo or in containers.
func findSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func openGluster(ctx context.Context, workDir string, spec VolumeSpec, log *slog.Logger) (_ *target, err error) {
	g := &glusterVolume{log: log}
	var glusterd string
	for _, p := range []struct {
		name string
		dst  *string
	}{{"gluster", &g.gluster}, {"glusterd", &glusterd}, {"mount.glusterfs", new(string)}} {
		if *p.dst, err = findSbin(p.name); err != nil {
			return nil, fmt.Errorf("GlusterFS is not installed (%v); install it with: %s", err, glusterInstallHint)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the gluster target needs root (glusterd, mount)")
	}
	cloexecInherited()
	if g.base, err = os.MkdirTemp(workDir, "gluon-bench-gluster-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if terr := g.teardown(ctx); terr != nil {
				log.Warn("gluster teardown after failed setup", "err", terr)
			}
		}
	}()
	g.vol = fmt.Sprintf("gluonbench-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	g.mnt = filepath.Join(g.base, "mnt")
	if err := os.Mkdir(g.mnt, 0o755); err != nil {
		return nil, err
	}
	if err := g.pickHost(ctx); err != nil {
		return nil, err
	}
	if err := g.startGlusterd(ctx, glusterd); err != nil {
		return nil, err
	}

	args := []string{"volume", "create", g.vol}
	if spec.Replica > 1 {
		args = append(args, "replica", strconv.Itoa(spec.Replica))
	}
	args = append(args, "transport", "tcp")
	for i := range spec.Bricks() {
		b := filepath.Join(g.base, fmt.Sprintf("b%d", i+1))
		if err := os.Mkdir(b, 0o755); err != nil {
			return nil, err
		}
		args = append(args, g.host+":"+b)
	}
	// force: bricks on the root file system and several bricks of a
	// replica set on one host are what a single-machine benchmark needs.
	args = append(args, "force")
	if _, err := g.cli(ctx, args...); err != nil {
		return nil, err
	}
	g.created = true
	if _, err := g.cli(ctx, "volume", "start", g.vol); err != nil {
		return nil, err
	}
	if err := runCmd(ctx, time.Minute, "mount", "-t", "glusterfs", "127.0.0.1:/"+g.vol, g.mnt); err != nil {
		return nil, err
	}
	g.mounted = true
	// mount.glusterfs can return before, or despite, the client failing.
	for i := 0; fsType(g.mnt) != "fuse"; i++ {
		if i == 50 {
			return nil, fmt.Errorf("mount of %s at %s did not appear (see /var/log/glusterfs/)", g.vol, g.mnt)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return &target{dir: g.mnt, pids: g.pids, close: func() error { return g.teardown(ctx) }}, nil
}

// pickHost chooses the brick host name (see glusterAlias).
func (g *glusterVolume) pickHost(ctx context.Context) error {
	loopback := func(h string) bool {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", h)
		return err == nil && len(ips) > 0 && ips[0].String() == "127.0.0.1"
	}
	if h, err := os.Hostname(); err == nil && loopback(h) {
		g.host = h
		return nil
	}
	g.host = glusterAlias
	if loopback(glusterAlias) {
		return nil
	}
	f, err := os.OpenFile(etcHosts, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("cannot add %s to %s: %w", glusterAlias, etcHosts, err)
	}
	_, err = fmt.Fprintf(f, "127.0.0.1 %s %s\n", glusterAlias, glusterHostMarker)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	g.addedHost = err == nil
	return err
}

// startGlusterd starts glusterd on loopback unless one already answers.
func (g *glusterVolume) startGlusterd(ctx context.Context, glusterd string) error {
	if _, err := g.cliTimeout(ctx, 15*time.Second, "pool", "list"); err == nil {
		return nil
	}
	volfile := filepath.Join(g.base, "glusterd.vol")
	pidfile := filepath.Join(g.base, "glusterd.pid")
	if err := os.WriteFile(volfile, []byte(glusterdVolfile), 0o644); err != nil {
		return err
	}
	// glusterd daemonizes; the pid file names the daemon.
	if err := runCmd(ctx, time.Minute, glusterd, "-p", pidfile, "-f", volfile, "--log-level", "INFO"); err != nil {
		return err
	}
	if data, err := os.ReadFile(pidfile); err == nil {
		g.glusterd, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	var err error
	for range 30 {
		if _, err = g.cliTimeout(ctx, 15*time.Second, "pool", "list"); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("glusterd did not come up: %w", err)
}

// pids returns glusterd and every gluster process of this volume: bricks
// (glusterfsd), the FUSE client and the self-heal daemon (glusterfs).
func (g *glusterVolume) pids() []int {
	return g.procs(true)
}

// procs lists the gluster processes of this volume, and glusterd if
// withGlusterd: the one this run started, or any if it found one running.
func (g *glusterVolume) procs(withGlusterd bool) []int {
	var pids []int
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		c := strings.TrimSpace(string(comm))
		if !strings.HasPrefix(c, "gluster") {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if c == "glusterd" {
			if withGlusterd && (g.glusterd == 0 || g.glusterd == pid) {
				pids = append(pids, pid)
			}
			continue
		}
		if bytes.Contains(cmdline, []byte(g.vol)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// teardown undoes whatever openGluster did, in reverse, and keeps going
// past failures so that as much as possible is cleaned up.
func (g *glusterVolume) teardown(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx) // a cancelled run must still clean up
	var errs []error
	if g.mounted {
		errs = append(errs, unmountRetry(g.mnt))
		g.mounted = false
	}
	// Processes of this volume that stopping it should end; never a
	// glusterd, which other volumes (and other runs) may be using.
	leftovers := g.procs(false)
	if g.created {
		_, err := g.cli(ctx, "volume", "stop", g.vol, "force")
		if err == nil {
			_, err = g.cli(ctx, "volume", "delete", g.vol)
		}
		if err != nil {
			if _, perr := g.cliTimeout(ctx, 15*time.Second, "pool", "list"); perr != nil {
				err = fmt.Errorf("glusterd is gone (stopped by another program?), so volume %s stays defined in /var/lib/glusterd; its processes are stopped: %w", g.vol, err)
			}
			errs = append(errs, err)
		}
		g.created = false
	}
	if g.glusterd != 0 {
		out, err := g.cli(ctx, "volume", "list")
		if err == nil && strings.Contains(out, "No volumes") {
			errs = append(errs, terminate(g.glusterd, 10*time.Second))
		} else {
			g.log.Warn("leaving glusterd running: it has other volumes", "pid", g.glusterd)
		}
	}
	for _, pid := range leftovers {
		if isGluster(pid) {
			errs = append(errs, terminate(pid, 10*time.Second))
		}
	}
	if g.addedHost {
		errs = append(errs, removeHostsAlias())
		g.addedHost = false
	}
	if g.base != "" {
		if err := ensureUnmounted(g.mnt); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, os.RemoveAll(g.base))
		}
	}
	return errors.Join(errs...)
}

func (g *glusterVolume) cli(ctx context.Context, args ...string) (string, error) {
	return g.cliTimeout(ctx, 2*time.Minute, args...)
}

func (g *glusterVolume) cliTimeout(ctx context.Context, d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	out, err := exec.CommandContext(ctx, g.gluster, append([]string{"--mode=script"}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gluster %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// cloexecInherited marks the descriptors this process inherited beyond
// stdio close-on-exec. GlusterFS's daemons outlive the run, and one that
// inherited, say, the lock of a `flock bench.lock gluon bench ...` held
// that lock after the run ended.
func cloexecInherited() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

func runCmd(ctx context.Context, d time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unmountRetry unmounts dir, retrying while it is busy (files of a fio
// run still being released) and detaching it as a last resort.
func unmountRetry(dir string) error {
	var err error
	for range 10 {
		if err = unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) {
			return nil // EINVAL: not mounted (any more)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// isGluster reports whether pid is (still) a GlusterFS process, so that a
// recycled pid is never signalled.
func isGluster(pid int) bool {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.HasPrefix(string(comm), "gluster")
}

// terminate sends SIGTERM to pid and waits for it to go away.
func terminate(pid int, wait time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("process %d still running %v after SIGTERM", pid, wait)
}

// removeHostsAlias drops the line pickHost appended to /etc/hosts.
func removeHostsAlias() error {
	data, err := os.ReadFile(etcHosts)
	if err != nil {
		return err
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if !strings.HasSuffix(strings.TrimRight(l, "\n"), glusterHostMarker) {
			keep = append(keep, l)
		}
	}
	// In place rather than rename: /etc/hosts is often a bind mount.
	return os.WriteFile(etcHosts, []byte(strings.Join(keep, "")), 0o644)
}
