package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// mountHelperName is the name mount(8) runs for "mount -t gluon".
const mountHelperName = "mount.gluon"

// mount(8) helper exit statuses (see mount(8), "EXIT STATUS").
const (
	mountExitUsage = 1  // incorrect invocation
	mountExitFail  = 32 // mount failure
)

// mountHelper is main for mount.gluon:
//
//	mount.gluon HOST:/VOLUME DIR [-sfnv] [-o OPTIONS]
func mountHelper(ctx context.Context, args []string, stderr io.Writer) int {
	req, h, err := parseMountArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", mountHelperName, err)
		return mountExitUsage
	}
	if h.verbose {
		fmt.Fprintf(stderr, "%s: mounting volume %s from etcd %s at %s\n",
			mountHelperName, req.volume, strings.Join(req.endpoints, ","), req.dir)
	}
	if h.fake {
		return 0
	}
	if err := ctx.Err(); err != nil {
		return mountExitFail
	}
	if err := spawnMount(req, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", mountHelperName, oneLine(err.Error()))
		return mountExitFail
	}
	return 0
}

// helperFlags are mount(8)'s own switches.
type helperFlags struct {
	fake, verbose, sloppy bool
}

// ignoredOptions are for mount(8), systemd or fstab, not for us.
var ignoredOptions = map[string]bool{
	"_netdev": true, "nofail": true, "defaults": true, "rw": true,
	"auto": true, "noauto": true, "user": true, "users": true,
}

// parseMountArgs parses mount(8)'s helper command line. Options:
//
//	etcd=HOST:PORT          etcd endpoint (repeatable; default HOST:2379)
//	attribute-timeout=SECS  also attr-timeout; entry-timeout, negative-timeout
//	allow_other             let other users use the mount
//	selinux                 store security.selinux labels
//	log-file=PATH, log-level=LEVEL, timeout=SECS, fsname=NAME
func parseMountArgs(args []string) (*mountReq, helperFlags, error) {
	var (
		h    helperFlags
		pos  []string
		opts []string
	)
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "-o" || arg == "-t" || arg == "-N":
			if i+1 >= len(args) {
				return nil, h, fmt.Errorf("%s needs a value", arg)
			}
			i++
			switch arg {
			case "-o":
				opts = append(opts, args[i])
			case "-N":
				return nil, h, fmt.Errorf("-N (mount namespaces) is not supported")
			}
		case strings.HasPrefix(arg, "-o"):
			opts = append(opts, arg[2:])
		case strings.HasPrefix(arg, "-t"):
		case len(arg) > 1 && arg[0] == '-':
			for _, c := range arg[1:] {
				switch c {
				case 'f':
					h.fake = true
				case 'v':
					h.verbose = true
				case 's':
					h.sloppy = true
				case 'n': // no mtab: there is none to write
				default:
					return nil, h, fmt.Errorf("unknown flag -%c", c)
				}
			}
		default:
			pos = append(pos, arg)
		}
	}
	if len(pos) != 2 {
		return nil, h, fmt.Errorf("usage: %s HOST:/VOLUME DIR [-o OPTIONS]", mountHelperName)
	}
	host, vol, err := parseMountSource(pos[0])
	if err != nil {
		return nil, h, err
	}
	req := &mountReq{
		volume:    vol,
		dir:       pos[1],
		fsName:    pos[0],
		timeout:   time.Minute,
		logLevel:  "info",
		logFormat: "text",
		fuse:      fuseFlags{attr: time.Second, entry: time.Second},
	}
	for _, o := range strings.Split(strings.Join(opts, ","), ",") {
		if err := req.setOption(o); err != nil {
			if h.sloppy {
				continue
			}
			return nil, h, err
		}
	}
	if len(req.endpoints) == 0 {
		req.endpoints = []string{host}
	}
	return req, h, nil
}

// parseMountSource splits HOST:/VOLUME; HOST is an etcd endpoint, port
// 2379 unless given.
func parseMountSource(spec string) (endpoint, vol string, err error) {
	i := strings.LastIndex(spec, ":/")
	if i <= 0 {
		return "", "", fmt.Errorf("source %q: want HOST:/VOLUME", spec)
	}
	host, vol := spec[:i], spec[i+2:]
	if vol == "" || strings.Contains(vol, "/") {
		return "", "", fmt.Errorf("source %q: want HOST:/VOLUME", spec)
	}
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host, vol, nil
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), "2379"), vol, nil
}

func (r *mountReq) setOption(o string) error {
	key, val, hasVal := strings.Cut(o, "=")
	if key == "" || ignoredOptions[o] || strings.HasPrefix(key, "x-") || key == "comment" {
		return nil
	}
	need := func() error {
		if !hasVal || val == "" {
			return fmt.Errorf("option %s needs a value (%s=...)", key, key)
		}
		return nil
	}
	switch key {
	case "etcd":
		if err := need(); err != nil {
			return err
		}
		r.endpoints = append(r.endpoints, val)
		return nil
	case "attribute-timeout", "attr-timeout", "entry-timeout", "negative-timeout", "timeout":
		if err := need(); err != nil {
			return err
		}
		d, err := parseSeconds(val)
		if err != nil {
			return fmt.Errorf("option %s: %v", key, err)
		}
		switch key {
		case "entry-timeout":
			r.fuse.entry = d
		case "negative-timeout":
			r.fuse.negative = d
		case "timeout":
			if d == 0 {
				return fmt.Errorf("option timeout: must be positive")
			}
			r.timeout = d
		default:
			r.fuse.attr = d
		}
		return nil
	case "allow_other":
		r.fuse.allowOther = true
		return nil
	case "selinux":
		r.fuse.selinux = true
		return nil
	case "log-file", "log-level", "fsname":
		if err := need(); err != nil {
			return err
		}
		switch key {
		case "log-file":
			r.logFile = val
		case "log-level":
			if _, err := newLogger(io.Discard, val, "text"); err != nil {
				return fmt.Errorf("option log-level: %q: want debug, info, warn or error", val)
			}
			r.logLevel = val
		default:
			r.fsName = val
		}
		return nil
	case "ro":
		return fmt.Errorf("option ro: read-only mounts are not supported yet")
	}
	return fmt.Errorf("unknown option %q", o)
}

// parseSeconds takes GlusterFS-style seconds ("1", "0.5") or a Go
// duration ("500ms").
func parseSeconds(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1e6 {
			return 0, fmt.Errorf("%q: out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want seconds, e.g. 1 or 0.5", s)
	}
	return d, nil
}

// startDetached runs "gluon mount --foreground" in a new session with
// output to logf, and waits for it to report on the ready pipe.
func startDetached(req *mountReq, dir string, logf *os.File, logName string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	args := []string{"mount", "--foreground",
		"--etcd=" + strings.Join(req.endpoints, ","),
		"--timeout=" + req.timeout.String(),
		"--log-level=" + req.logLevel,
		"--log-format=" + req.logFormat,
	}
	if req.fsName != "" {
		args = append(args, "--fsname="+req.fsName)
	}
	args = append(args, req.fuse.args()...)
	args = append(args, "--", req.volume, dir)
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = "gluon" // not mount.gluon, or it would parse mount(8) arguments
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start mount process: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	reply := strings.TrimSpace(string(msg))
	if reply == "ok" {
		return cmd.Process.Release()
	}
	werr := cmd.Wait()
	if rest, ok := strings.CutPrefix(reply, "error: "); ok {
		return fmt.Errorf("%s (log: %s)", rest, logName)
	}
	return fmt.Errorf("%w: mount process exited (%v); see %s", errMountFailed, werr, logName)
}

func (a *app) installMountHelperCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "install-mount-helper [--dir DIR]",
		Short: "Install mount.gluon so that mount(8) and fstab can mount volumes",
		Long: `Symlink DIR/mount.gluon to this binary. mount(8) then runs it for
"mount -t gluon", and /etc/fstab lines of type gluon work at boot:

  etcd1:/vol0  /mnt/vol0  gluon  defaults,_netdev  0 0

The source is ETCDHOST[:PORT]:/VOLUME (port 2379 by default). Options:
etcd=HOST:PORT (repeatable), attribute-timeout=SECS, entry-timeout=SECS,
negative-timeout=SECS, allow_other, log-file=PATH, log-level=LEVEL,
timeout=SECS. _netdev, nofail, defaults, rw, auto, noauto, user and users
are accepted and ignored; anything else is an error.`,
		Example: `  sudo gluon install-mount-helper
  sudo mount -t gluon etcd1:/vol0 /mnt/vol0
  sudo mount -t gluon -o etcd=10.0.0.5:2379,attribute-timeout=0 x:/vol0 /mnt/vol0`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if strings.Contains(exe, string(filepath.Separator)+"go-build") {
				return usagef("%s is a temporary 'go run' binary; install gluon first (go install or go build)", exe)
			}
			target := filepath.Join(dir, mountHelperName)
			if st, err := os.Lstat(target); err == nil && st.Mode()&os.ModeSymlink == 0 {
				return fmt.Errorf("%s exists and is not a symlink; remove it first", target)
			}
			// Replace atomically so that a concurrent mount never misses it.
			tmp := target + ".tmp"
			os.Remove(tmp)
			if err := os.Symlink(exe, tmp); err != nil {
				return err
			}
			if err := os.Rename(tmp, target); err != nil {
				os.Remove(tmp)
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "installed %s -> %s\n", target, exe)
			return err
		}),
	}
	cmd.Flags().StringVar(&dir, "dir", "/sbin", "directory mount(8) searches for helpers")
	return cmd
}
