package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/fuse"
)

// fuseFlags are the kernel cache and access settings of a mount.
type fuseFlags struct {
	attr, entry, negative time.Duration
	allowOther, debug     bool
	selinux               bool
}

func (f *fuseFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.DurationVar(&f.attr, "attr-timeout", time.Second, "how long the kernel caches attributes; 0 disables")
	fl.DurationVar(&f.entry, "entry-timeout", time.Second, "how long the kernel caches name lookups; 0 disables")
	fl.DurationVar(&f.negative, "negative-timeout", 0, "how long the kernel caches failed lookups; 0 disables")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users use the mount (always on for root)")
	fl.BoolVar(&f.debug, "fuse-debug", false, "log every FUSE request and reply")
	fl.BoolVar(&f.selinux, "selinux", false, "store security.selinux labels (without it they are refused with EOPNOTSUPP, as by GlusterFS)")
}

func (f *fuseFlags) check() error {
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"attr-timeout", f.attr}, {"entry-timeout", f.entry}, {"negative-timeout", f.negative}} {
		if t.d < 0 {
			return usagef("--%s %v: must not be negative", t.name, t.d)
		}
	}
	return nil
}

// options maps the flags onto fuse.Options, where zero means "default"
// and negative means "off".
func (f *fuseFlags) options(log *slog.Logger, fsName string) fuse.Options {
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	return fuse.Options{
		AttrTimeout:     off(f.attr),
		EntryTimeout:    off(f.entry),
		NegativeTimeout: off(f.negative),
		FsName:          fsName,
		AllowOther:      f.allowOther,
		Debug:           f.debug,
		SELinux:         f.selinux,
		Logger:          log,
	}
}

// args renders the flags back for a re-executed mount process.
func (f *fuseFlags) args() []string {
	a := []string{
		"--attr-timeout=" + f.attr.String(),
		"--entry-timeout=" + f.entry.String(),
		"--negative-timeout=" + f.negative.String(),
	}
	if f.allowOther {
		a = append(a, "--allow-other")
	}
	if f.debug {
		a = append(a, "--fuse-debug")
	}
	if f.selinux {
		a = append(a, "--selinux")
	}
	return a
}

// mountPoint is what fuse.Mount returns.
type mountPoint interface {
	Unmount() error
	Wait()
}

// mounted is a volume served at a mount point by this process.
type mounted struct {
	dir  string
	vol  *client.Volume
	mp   mountPoint
	gone chan struct{} // closed once the kernel mount is gone
}

// mountVolume opens volume name and mounts it at dir (absolute, resolved),
// returning once the mount answers through the kernel. ctx bounds the wait
// for the volume to answer. metrics may be nil.
func mountVolume(ctx context.Context, cli *clientv3.Client, name, dir string, opts fuse.Options, metrics prometheus.Registerer, log *slog.Logger) (*mounted, error) {
	vol, err := client.Open(ctx, cli, name, client.Options{Logger: log, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	mp, err := fuse.Mount(dir, vol.Top, opts)
	if err != nil {
		vol.Close()
		return nil, err
	}
	m := &mounted{dir: dir, vol: vol, mp: mp, gone: make(chan struct{})}
	go func() {
		mp.Wait()
		close(m.gone)
	}()
	if err := checkMounted(dir); err != nil {
		m.close(log)
		return nil, err
	}
	return m, nil
}

// checkMounted verifies that dir is a gluon FUSE mount and that its root
// answers a stat through the kernel.
func checkMounted(dir string) error {
	ok, err := isMounted(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: not mounted after mount returned", dir)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mounted %s but cannot stat it: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mounted %s but its root is not a directory", dir)
	}
	return nil
}

// close unmounts (lazily if busy) and tears down the client graph.
func (m *mounted) close(log *slog.Logger) error {
	err := m.mp.Unmount()
	if err != nil {
		log.Error("unmount failed", "dir", m.dir, "err", err)
	} else {
		<-m.gone
	}
	if cerr := m.vol.Close(); cerr != nil {
		log.Warn("closing client graph", "err", cerr)
	}
	return err
}

// isMounted reports whether a gluon FUSE file system is mounted at dir,
// reading /proc/self/mountinfo (whose paths escape space, tab, newline
// and backslash in octal).
func isMounted(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, typ := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(typ) < 1 {
			continue
		}
		if unescapeMount(fields[4]) == dir && typ[0] == "fuse."+fsType {
			return true, nil
		}
	}
	return false, sc.Err()
}

// fsType is the FUSE subtype the fuse package mounts with ("fuse.gluon").
const fsType = "gluon"

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// mountDir resolves a mount point to the absolute path the kernel
// records, checking that it is a directory.
func mountDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	abs, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("mount point: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("mount point: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("mount point %s is not a directory", dir)
	}
	return abs, nil
}

// mountReq is everything a mount process needs; it is built from gluon
// mount's flags or from mount(8)'s arguments to mount.gluon.
type mountReq struct {
	endpoints []string
	volume    string
	dir       string
	fsName    string
	fuse      fuseFlags
	timeout   time.Duration // for etcd and the bricks to answer
	logFile   string        // background mode only
	logLevel  string
	logFormat string
}

func (a *app) mountCmd() *cobra.Command {
	var (
		req        mountReq
		foreground bool
		dbg        debugFlags
	)
	cmd := &cobra.Command{
		Use:   "mount [--etcd ENDPOINTS] VOLUME MOUNTPOINT",
		Short: "Mount a started volume with FUSE",
		Long: `Mount VOLUME, whose description and bricks are found in etcd, at
MOUNTPOINT. The volume must be started and its bricks online.

By default the mount runs in the background: gluon mount returns once the
mount is usable, and the mount process logs to --log-file. With
--foreground it stays attached and logs to stderr. Either way it ends when
the file system is unmounted (umount MOUNTPOINT) or on SIGTERM/SIGINT.

For mount(8) and /etc/fstab, see 'gluon install-mount-helper'.`,
		Example: `  gluon mount vol0 /mnt/vol0
  gluon mount --etcd etcd1:2379,etcd2:2379 vol0 /mnt/vol0
  gluon mount --foreground --attr-timeout 0 vol0 /mnt/vol0
  umount /mnt/vol0`,
		Args: exactArgs("VOLUME", "MOUNTPOINT"),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := req.fuse.check(); err != nil {
				return err
			}
			if req.timeout <= 0 {
				return usagef("--timeout %v: must be positive", req.timeout)
			}
			return dbg.check()
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req.volume, req.dir = args[0], args[1]
			req.logLevel, req.logFormat = a.logLevel, a.logFormat
			if foreground {
				return a.mountForeground(cmd.Context(), &req, &dbg)
			}
			if dbg.metrics != "" || dbg.pprof != "" {
				return usagef("--metrics and --pprof need --foreground")
			}
			if err := spawnMount(&req, a.stderr); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "mounted %s at %s\n", req.volume, req.dir)
			return err
		}),
	}
	etcdFlag(cmd, &req.endpoints)
	f := cmd.Flags()
	f.BoolVar(&foreground, "foreground", false, "stay attached and log to stderr")
	f.StringVar(&req.logFile, "log-file", "", "background mode: log `FILE` (default /var/log/gluon/MOUNTPOINT.log)")
	f.DurationVar(&req.timeout, "timeout", time.Minute, "how long to wait for etcd and the volume's bricks")
	f.StringVar(&req.fsName, "fsname", "", "source shown in /proc/mounts (default gluon:VOLUME)")
	req.fuse.add(cmd)
	dbg.add(cmd)
	return cmd
}

// mountForeground serves the mount in this process until it is unmounted
// or ctx ends. If started by spawnMount it reports readiness on the pipe
// named by $GLUON_READY_FD.
func (a *app) mountForeground(ctx context.Context, req *mountReq, dbg *debugFlags) (err error) {
	ready := readyPipe()
	if ready != nil {
		defer func() {
			if err != nil {
				fmt.Fprintf(ready, "error: %s\n", oneLine(err.Error()))
			}
			ready.Close()
		}()
	}
	log := a.log.With("volume", req.volume)
	dir, err := mountDir(req.dir)
	if err != nil {
		return err
	}
	stop, err := dbg.serve(log, "mount")
	if err != nil {
		return err
	}
	defer stop()
	octx, cancel := context.WithTimeout(ctx, req.timeout)
	defer cancel()
	cli, err := dialEtcd(octx, req.endpoints)
	if err != nil {
		return err
	}
	defer cli.Close()
	fsName := req.fsName
	if fsName == "" {
		fsName = "gluon:" + req.volume
	}
	m, err := mountVolume(octx, cli, req.volume, dir, req.fuse.options(log, fsName), dbg.registerer(), log)
	if err != nil {
		return err
	}
	log.Info("mounted", "dir", dir)
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
		ready = nil
	} else {
		fmt.Fprintf(a.stdout, "mounted %s at %s\n", req.volume, dir)
	}
	select {
	case <-ctx.Done():
		log.Info("unmounting", "dir", dir)
		return m.close(log)
	case <-m.gone:
		log.Info("unmounted from outside", "dir", dir)
		return m.close(log)
	}
}

// Background mounts: the parent re-executes itself with --foreground in a
// new session and waits on a pipe for "ok" or "error: ...", so that it
// returns (and mount(8) returns) only once the mount is usable.
const readyFDEnv = "GLUON_READY_FD"

func readyPipe() io.WriteCloser {
	if os.Getenv(readyFDEnv) != "3" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	return os.NewFile(3, "ready")
}

// defaultLogFile names a background mount's log after its mount point, as
// GlusterFS does: /mnt/vol0 logs to /var/log/gluon/mnt-vol0.log.
func defaultLogFile(dir string) string {
	name := strings.Trim(strings.ReplaceAll(filepath.Clean(dir), "/", "-"), "-")
	if name == "" {
		name = "root"
	}
	return filepath.Join("/var/log/gluon", name+".log")
}

var errMountFailed = errors.New("mount failed")

// spawnMount starts a background mount process and waits until it is
// serving or has failed.
func spawnMount(req *mountReq, stderr io.Writer) error {
	dir, err := mountDir(req.dir)
	if err != nil {
		return err
	}
	logFile := req.logFile
	if logFile == "" {
		logFile = defaultLogFile(dir)
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer lf.Close()
	return startDetached(req, dir, lf, logFile)
}
