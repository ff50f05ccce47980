package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/internal/sysmon"
)

// brickStopTimeout is how long a brick gets to exit after SIGTERM before
// it is killed.
const brickStopTimeout = 10 * time.Second

// brickProc is one brick daemon that gluon up started and supervises.
type brickProc struct {
	index int
	cmd   *exec.Cmd
	out   *prefixWriter
	done  chan struct{} // closed when the process has exited
	err   error         // its exit status; set before done is closed
}

// brickProcs supervises gluon up's brick daemons.
type brickProcs struct {
	log      *slog.Logger
	procs    []*brickProc
	stopping atomic.Bool
	// died is called (once per brick, from the brick's wait goroutine)
	// when a brick exits while it should be running.
	died func(index int, err error)
	// gomaxprocs, if positive, is each brick's GOMAXPROCS (see cpuShare).
	gomaxprocs int
}

// cpuShare is the GOMAXPROCS for each of n Go processes sharing this
// machine, unless the user set GOMAXPROCS (then 0: inherit it). Each Go
// runtime otherwise assumes the whole machine: with gluon up's bricks
// and client on a few cores, their idle threads spin looking for work
// and every hand-off between goroutines wakes another thread, which
// costs more CPU than the requests themselves. A brick takes a second P
// while it reads the attributes of a large directory listing, where one
// keeps a core busy (sysmon.NarrowEnv); one the user narrowed is not
// widened.
func cpuShare(n int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return max(1, runtime.NumCPU()/n)
}

// start runs "gluon brick" for brick index of vol, its output copied to
// out with a "brickN: " prefix on every line; JSON lines are copied as they
// are, since they name their brick and must stay parseable.
func (p *brickProcs) start(index int, etcdURL, vol, logLevel, logFormat string, out io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	w := &prefixWriter{w: out}
	if logFormat != "json" {
		w.prefix = "brick" + strconv.Itoa(index) + ": "
	}
	cmd := exec.Command(exe, "brick",
		"--etcd="+etcdURL,
		"--volume="+vol,
		"--index="+strconv.Itoa(index),
		"--listen=127.0.0.1:0",
		"--log-level="+logLevel,
		"--log-format="+logFormat,
	)
	cmd.Args[0] = "gluon"
	if p.gomaxprocs > 0 {
		cmd.Env = append(os.Environ(), sysmon.NarrowEnv(p.gomaxprocs)...)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Out of the terminal's process group: ^C reaches only us, and we
		// stop the bricks after unmounting.
		Setpgid: true,
		// If we die without stopping them, they go too.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start brick %d: %w", index, err)
	}
	bp := &brickProc{index: index, cmd: cmd, out: w, done: make(chan struct{})}
	p.procs = append(p.procs, bp)
	p.log.Info("started brick", "brick", index, "pid", cmd.Process.Pid)
	go func() {
		bp.err = cmd.Wait()
		w.Flush()
		close(bp.done)
		if !p.stopping.Load() {
			p.log.Error("BRICK PROCESS DIED: the volume is unavailable until it is restarted",
				"brick", index, "pid", cmd.Process.Pid, "status", exitStatus(bp.err))
			if p.died != nil {
				p.died(index, bp.err)
			}
		}
	}()
	return nil
}

// stop stops every brick: SIGTERM, then SIGKILL for any still running
// after brickStopTimeout.
func (p *brickProcs) stop() {
	p.stopping.Store(true)
	var wg sync.WaitGroup
	for _, bp := range p.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-bp.done:
				return
			default:
			}
			bp.cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(brickStopTimeout)
			defer t.Stop()
			select {
			case <-bp.done:
			case <-t.C:
				p.log.Warn("brick did not stop; killing it", "brick", bp.index, "pid", bp.cmd.Process.Pid)
				bp.cmd.Process.Kill()
				<-bp.done
			}
			if bp.err != nil {
				p.log.Warn("brick exited", "brick", bp.index, "status", exitStatus(bp.err))
			}
		}()
	}
	wg.Wait()
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
