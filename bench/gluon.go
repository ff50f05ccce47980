package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Starter brings up a gluon volume with the given layout, mounted, for
// the "gluon:..." targets. It returns the mount point, the pids of the
// processes serving the volume (their CPU time and memory, and their
// descendants', are reported; best effort), and a function that unmounts
// the volume, stops the processes and removes what Start created. Start
// must clean up after itself when it fails.
type Starter interface {
	Start(ctx context.Context, spec VolumeSpec) (mnt string, pids []int, stop func() error, err error)
}

// ExecStarter is the default Starter. It runs
//
//	PATH up --dir TMP --mount TMP/mnt --bricks N [--replica R]
//
// with a fresh temporary directory TMP, waits for the line
// "mounted VOLUME at MNT" on its standard output, and stops it with
// SIGTERM (SIGKILL after StopTimeout). See UpArgs for the arguments.
type ExecStarter struct {
	Path string // gluon binary; "" means this executable (os.Executable)
	// Args returns the arguments for PATH; nil means UpArgs.
	Args         func(dir, mnt string, spec VolumeSpec) []string
	Dir          string        // parent of the temporary directory; "" means os.TempDir()
	StartTimeout time.Duration // for the mount line; 0 means 2 minutes
	StopTimeout  time.Duration // for the exit after SIGTERM; 0 means 30 s
	// Stderr receives `gluon up`'s standard error. If nil it goes to
	// TMP/up.log and its tail is quoted in errors.
	Stderr io.Writer
	Logger *slog.Logger // stdout lines after the mount line, at debug level; nil means slog.Default()
}

var mountedLine = regexp.MustCompile(`^mounted (\S+) at (.+)$`)

// UpArgs is the default argument list of ExecStarter: `up --dir DIR
// --mount MNT --bricks N`, N the volume's brick count, which alone makes
// gluon up build one replica set of N bricks, plus `--replica R` when the
// bricks are to be distributed over N/R replica sets. The brick count is
// always given, so that the layout does not depend on gluon up's defaults.
func UpArgs(dir, mnt string, spec VolumeSpec) []string {
	args := []string{"up", "--dir", dir, "--mount", mnt, "--bricks", strconv.Itoa(spec.Bricks())}
	if spec.Distribute > 1 {
		args = append(args, "--replica", strconv.Itoa(spec.Replica))
	}
	return args
}

// Start implements Starter.
func (s ExecStarter) Start(ctx context.Context, spec VolumeSpec) (mnt string, pids []int, stop func() error, err error) {
	path := s.Path
	if path == "" {
		if path, err = os.Executable(); err != nil {
			return "", nil, nil, err
		}
	}
	startTimeout, stopTimeout := s.StartTimeout, s.StopTimeout
	if startTimeout <= 0 {
		startTimeout = 2 * time.Minute
	}
	if stopTimeout <= 0 {
		stopTimeout = 30 * time.Second
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	tmp, err := os.MkdirTemp(s.Dir, "gluon-bench-gluon-")
	if err != nil {
		return "", nil, nil, err
	}
	wantMnt := filepath.Join(tmp, "mnt")
	cleanupDir := func() error {
		if err := ensureUnmounted(wantMnt); err != nil {
			return err
		}
		return os.RemoveAll(tmp)
	}
	if err := os.Mkdir(wantMnt, 0o755); err != nil {
		return "", nil, nil, errors.Join(err, cleanupDir())
	}

	stderr := s.Stderr
	var logFile *os.File
	if stderr == nil {
		if logFile, err = os.Create(filepath.Join(tmp, "up.log")); err != nil {
			return "", nil, nil, errors.Join(err, cleanupDir())
		}
		stderr = logFile
	}
	// A pipe of our own rather than StdoutPipe: the reader must outlive
	// the mount line and may be closed early if a grandchild holds it.
	pr, pw, err := os.Pipe()
	if err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return "", nil, nil, errors.Join(err, cleanupDir())
	}
	argsOf := s.Args
	if argsOf == nil {
		argsOf = UpArgs
	}
	args := argsOf(tmp, wantMnt, spec)
	cmd := exec.Command(path, args...)
	cmd.Stdout = pw
	cmd.Stderr = stderr
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		if logFile != nil {
			logFile.Close()
		}
		return "", nil, nil, errors.Join(err, cleanupDir())
	}

	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	mounted := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if m := mountedLine.FindStringSubmatch(line); m != nil && !found {
				found = true
				mounted <- m[2]
				continue
			}
			log.Debug("gluon up", "out", line)
		}
	}()

	// halt ends the process (if it still runs) and the output reader, and
	// returns how the process failed, if it did.
	halt := func() error {
		var err error
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(stopTimeout):
				_ = cmd.Process.Kill()
				<-exited
				err = fmt.Errorf("gluon up did not exit within %v of SIGTERM; killed", stopTimeout)
			}
		}
		pr.Close() // unblocks the reader if a grandchild still holds the pipe
		<-drained
		var ee *exec.ExitError
		if err == nil && waitErr != nil && !(errors.As(waitErr, &ee) && exitedBySignal(ee, syscall.SIGTERM)) {
			err = fmt.Errorf("gluon up: %w%s", waitErr, logTail(logFile))
		}
		if logFile != nil {
			logFile.Close()
		}
		return err
	}

	exitedEarly := func() error {
		// gluon exits 2 for arguments it does not accept, e.g. an older
		// binary that lacks a flag the volume layout needs.
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.ExitCode() == 2 {
			return fmt.Errorf("%s rejected the arguments %q for a %s volume (exit status 2)",
				path, strings.Join(args, " "), spec)
		}
		return fmt.Errorf("gluon up exited before mounting: %v", waitErr)
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case mnt = <-mounted:
		var once sync.Once
		var stopErr error
		stop = func() error {
			once.Do(func() { stopErr = errors.Join(halt(), cleanupDir()) })
			return stopErr
		}
		return mnt, []int{cmd.Process.Pid}, stop, nil
	case <-drained:
		// Output ends when the process exits; its exit status says more.
		select {
		case <-exited:
			err = exitedEarly()
		case <-time.After(time.Second):
			err = errors.New("gluon up closed its output without printing \"mounted VOLUME at MNT\"")
		}
	case <-exited:
		err = exitedEarly()
	case <-timer.C:
		err = fmt.Errorf("gluon up did not mount within %v", startTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	err = fmt.Errorf("%w%s", err, logTail(logFile))
	_ = halt() // its failure is err
	return "", nil, nil, errors.Join(err, cleanupDir())
}

func exitedBySignal(ee *exec.ExitError, sig syscall.Signal) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// logTail returns ": <last lines of f>" or "" if there is nothing to quote.
func logTail(f *os.File) string {
	if f == nil {
		return ""
	}
	data, err := os.ReadFile(f.Name())
	if err != nil || len(data) == 0 {
		return ""
	}
	t := &tailBuffer{max: 1024}
	t.Write(data)
	return ": " + t.String()
}

// openGluon starts a gluon volume through the Starter.
func openGluon(ctx context.Context, st Starter, spec VolumeSpec) (*target, error) {
	mnt, pids, stop, err := st.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &target{dir: mnt, pids: func() []int { return pids }, close: stop}, nil
}
