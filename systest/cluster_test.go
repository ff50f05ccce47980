package systest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/volume"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
	protoclient "github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

const (
	// volName is every test's volume.
	volName = "sv"
	// replicas is the replica count of every test's volume.
	replicas = 3
	// brickLease is the bricks' registration lease: a killed brick's
	// registration must lapse before its restart can register.
	brickLease = 2 * time.Second
	// waitBound only catches a hang: polls give up after it.
	waitBound = 60 * time.Second
	// pollEvery spaces the polls.
	pollEvery = 50 * time.Millisecond
)

// cluster is a replica-3 volume served by three brick processes, against
// an embedded etcd.
type cluster struct {
	t     *testing.T
	cli   *clientv3.Client
	store *volume.Store
	etcd  string   // endpoints, comma-separated, for --etcd
	dirs  []string // brick directories
	logs  []string // brick log files, one per brick, appended across restarts
	procs []*brickProc
	// clog collects the test's client graphs' logs, shown on failure.
	clog *syncBuffer
}

// brickProc is one running "gluon brick".
type brickProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, set before done closes
}

func (p *brickProc) pid() int { return p.cmd.Process.Pid }

// newCluster creates and starts the volume with the given options and
// starts its three bricks. Cleanup stops the bricks (failing the test if
// one does not exit cleanly or its race detector fired) and prints the
// tails of their logs if the test failed.
func newCluster(t *testing.T, opts map[string]string) *cluster {
	t.Helper()
	cli := etcdtest.Start(t)
	c := &cluster{
		t: t, cli: cli, store: volume.NewStore(cli),
		etcd:  strings.Join(cli.Endpoints(), ","),
		procs: make([]*brickProc, replicas),
		clog:  &syncBuffer{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	top := t.TempDir()
	v := &volume.Volume{Name: volName, Replica: replicas}
	for i := range replicas {
		d := filepath.Join(top, fmt.Sprintf("b%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		c.dirs = append(c.dirs, d)
		c.logs = append(c.logs, filepath.Join(top, fmt.Sprintf("brick%d.log", i)))
		v.Bricks = append(v.Bricks, volume.Brick{Host: "127.0.0.1", Path: d})
	}
	if err := c.store.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if _, err := c.store.SetOption(ctx, volName, k, opts[k]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.store.SetState(ctx, volName, volume.StateStarted); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.shutdown)
	for i := range replicas {
		c.start(i)
	}
	return c
}

// start runs brick i, which must not be running.
func (c *cluster) start(i int) {
	c.t.Helper()
	if c.procs[i] != nil {
		c.t.Fatalf("brick %d is already running", i)
	}
	logf, err := os.OpenFile(c.logs[i], os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== systest: starting brick %d at %s\n", i, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(gluonBin, "brick",
		"--etcd="+c.etcd,
		"--volume="+volName,
		"--index="+strconv.Itoa(i),
		"--listen=127.0.0.1:0",
		"--lease-ttl="+brickLease.String(),
		"--log-level=info",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Gone with the test binary, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start brick %d: %v", i, err)
	}
	p := &brickProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.procs[i] = p
}

// signal sends sig to brick i, which must be running. After SIGSTOP it
// waits until every thread of the brick has stopped: the signal is only
// queued, and a brick still running for a moment would answer requests
// the test means it to miss.
func (c *cluster) signal(i int, sig syscall.Signal) {
	c.t.Helper()
	p := c.procs[i]
	if p == nil {
		c.t.Fatalf("brick %d is not running", i)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("brick %d: %v: %v", i, sig, err)
	}
	if sig != syscall.SIGSTOP {
		return
	}
	start := time.Now()
	for {
		running, err := runningThreads(p.pid())
		if err != nil {
			c.t.Fatalf("brick %d: %v", i, err)
		}
		if running == 0 {
			break
		}
		if time.Since(start) > waitBound {
			c.t.Fatalf("brick %d: %d threads still running %v after SIGSTOP", i, running, waitBound)
		}
		time.Sleep(time.Millisecond)
	}
	c.t.Logf("brick %d stopped after %v", i, time.Since(start))
}

// runningThreads counts the threads of process pid that are not stopped.
func runningThreads(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of pid %d: %v", pid, err)
	}
	n := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited
		}
		// pid (comm) state ...; comm may hold anything, ")" included.
		j := bytes.LastIndexByte(b, ')')
		if j < 0 || j+2 >= len(b) {
			return 0, fmt.Errorf("%s: %q", f, b)
		}
		if st := b[j+2]; st != 'T' && st != 't' {
			n++
		}
	}
	return n, nil
}

// kill SIGKILLs the given bricks together and waits until they are gone.
func (c *cluster) kill(bricks ...int) {
	c.t.Helper()
	for _, i := range bricks {
		c.signal(i, syscall.SIGKILL)
	}
	for _, i := range bricks {
		select {
		case <-c.procs[i].done:
		case <-time.After(waitBound):
			c.t.Fatalf("brick %d still running after SIGKILL", i)
		}
		c.procs[i] = nil
	}
}

// shutdown stops every running brick with SIGTERM (SIGCONT first, in
// case it is stopped) and checks that each exits 0 with no data race
// reported; on failure it prints the tails of the logs.
func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for i, p := range c.procs {
		if p == nil {
			continue
		}
		wg.Go(func() {
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					c.t.Errorf("brick %d: %v after SIGTERM, want a clean exit", i, p.err)
				}
			case <-time.After(waitBound):
				c.t.Errorf("brick %d still running %v after SIGTERM; killing it", i, waitBound)
				p.cmd.Process.Kill()
				<-p.done
			}
		})
	}
	wg.Wait()
	for i, l := range c.logs {
		if b, err := os.ReadFile(l); err == nil && bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			c.t.Errorf("brick %d: the race detector fired; see %s", i, l)
		}
	}
	// SYSTEST_LOGS=N shows the last N lines of every log, even on success.
	lines, _ := strconv.Atoi(os.Getenv("SYSTEST_LOGS"))
	if c.t.Failed() {
		lines = max(lines, 80)
	}
	if lines <= 0 {
		return
	}
	for i, l := range c.logs {
		b, _ := os.ReadFile(l)
		c.t.Logf("brick %d log (tail):\n%s", i, tail(string(b), lines))
	}
	c.t.Logf("client log (tail):\n%s", tail(c.clog.String(), lines))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// waitOnline waits until the running bricks are registered in etcd under
// their current pids, so that clients and peers find them.
func (c *cluster) waitOnline(bricks ...int) {
	c.t.Helper()
	c.poll(fmt.Sprintf("bricks %v to register", bricks), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.store.Status(ctx, volName)
		if err != nil {
			return false, err.Error()
		}
		for _, i := range bricks {
			if !st[i].Online || st[i].Pid != c.procs[i].pid() {
				return false, fmt.Sprintf("brick %d: %+v", i, st[i])
			}
		}
		return true, ""
	})
}

// poll calls cond until it holds, failing the test after waitBound with
// the last reason cond gave.
func (c *cluster) poll(what string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s: %s", waitBound, what, why)
		}
		time.Sleep(pollEvery)
	}
}

// status asks for the volume's status (bricks' jbr.status), as gluon
// volume status does.
func (c *cluster) status() (*client.VolumeStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Status(ctx, c.cli, volName)
}

// statusCLI runs gluon volume status --json.
func (c *cluster) statusCLI() (*client.VolumeStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gluonBin, "volume", "status", volName, "--json", "--etcd", c.etcd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("gluon volume status: %v: %s", err, stderr.String())
	}
	var st client.VolumeStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("gluon volume status --json: %v:\n%s", err, out)
	}
	return &st, nil
}

// leader waits until a brick other than not leads in a term above after,
// as both etcd and the brick itself say, and returns it and its term. It
// asks only the leader: a brick killed moments ago may still be
// registered, and would hold up a whole-volume status.
func (c *cluster) leader(not int, after uint64) (int, uint64) {
	c.t.Helper()
	var leader int
	var term uint64
	c.poll("a leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, tm, ok, err := election.Leader(ctx, c.cli, election.Key(volName, 0))
		switch {
		case err != nil:
			return false, err.Error()
		case !ok || l == not || tm <= after:
			return false, fmt.Sprintf("etcd: leader %d (%v) term %d", l, ok, tm)
		}
		j, err := c.jbrStatus(l)
		if err != nil {
			return false, err.Error()
		}
		if j.Role != "leader" || j.Term != tm {
			return false, fmt.Sprintf("brick %d leads term %d in etcd, says %+v", l, tm, *j)
		}
		leader, term = l, tm
		return true, ""
	})
	return leader, term
}

// leaderNow returns the brick that leads now and its term, as etcd says;
// ok is false while none does.
func (c *cluster) leaderNow() (leader int, term uint64, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, tm, ok, err := election.Leader(ctx, c.cli, election.Key(volName, 0))
	return l, tm, ok && err == nil
}

// still reports whether leader still leads in term. A test whose steps
// assume one leader checks it after them: on a loaded machine an etcd
// stall can expire every brick's 1 s lease at once, and the set elects
// again although nothing failed.
func (c *cluster) still(leader int, term uint64) bool {
	l, tm, ok := c.leaderNow()
	return ok && l == leader && tm == term
}

// addr returns the address brick i is registered at, waiting while its
// registration is being renewed (an etcd stall can expire it).
func (c *cluster) addr(i int) string {
	c.t.Helper()
	var a string
	c.poll(fmt.Sprintf("brick %d's registration", i), func() (bool, string) {
		var err error
		if a, err = c.registration(i); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return a
}

func (c *cluster) registration(i int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.store.Status(ctx, volName)
	if err != nil {
		return "", err
	}
	if !st[i].Online {
		return "", fmt.Errorf("brick %d is not registered", i)
	}
	return st[i].Addr, nil
}

// jbrStatusWait asks brick i for its replication state until it answers.
func (c *cluster) jbrStatusWait(i int) *jbrserver.Status {
	c.t.Helper()
	var s *jbrserver.Status
	c.poll(fmt.Sprintf("brick %d's jbr.status", i), func() (bool, string) {
		var err error
		if s, err = c.jbrStatus(i); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return s
}

// jbrStatus asks brick i for its replication state.
func (c *cluster) jbrStatus(i int) (*jbrserver.Status, error) {
	addr, err := c.registration(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := protoclient.New(protoclient.Options{
		Addr: addr, Volume: c.dirs[i], DialTimeout: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	out, e := pc.Ipc(xl.WithCall(ctx, &xl.Call{}), jbrserver.IpcStatus, nil)
	if e != 0 {
		return nil, fmt.Errorf("brick %d: jbr.status: %v", i, e)
	}
	var s jbrserver.Status
	if err := json.Unmarshal(out["status"], &s); err != nil {
		return nil, fmt.Errorf("brick %d: jbr.status: %v", i, err)
	}
	return &s, nil
}

// converge waits until all three bricks run, agree on the leader's term
// and journal positions, have applied everything committed (as gluon
// volume status --json reports), and hold identical trees.
func (c *cluster) converge() {
	c.t.Helper()
	for i, p := range c.procs {
		if p == nil {
			c.t.Fatalf("converge: brick %d is not running", i)
		}
	}
	c.poll("the replicas' journals to converge", func() (bool, string) {
		st, err := c.status()
		if err != nil {
			return false, err.Error()
		}
		return sameJournals(st)
	})
	var st *client.VolumeStatus
	c.poll("gluon volume status --json to show converged replicas", func() (bool, string) {
		var err error
		if st, err = c.statusCLI(); err != nil {
			return false, err.Error()
		}
		return sameJournals(st)
	})
	s := st.Sets[0]
	j := s.Bricks[s.Leader].JBR
	c.t.Logf("converged: leader brick %d, term %d, last index %d, commit %d", s.Leader, s.Term, j.LastIndex, j.Commit)
	c.poll("the replicas' trees to be identical", func() (bool, string) {
		return sameTrees(c.dirs)
	})
}

// sameJournals reports whether every brick of st is online, in the
// leader's term, at the leader's last index and commit, and applied up
// to it.
func sameJournals(st *client.VolumeStatus) (bool, string) {
	s := st.Sets[0]
	if s.Leader < 0 || s.Bricks[s.Leader].JBR == nil {
		return false, fmt.Sprintf("no leader known: %+v", s)
	}
	l := s.Bricks[s.Leader].JBR
	if l.Role != "leader" || l.Commit != l.LastIndex {
		return false, fmt.Sprintf("leader brick %d: %+v", s.Leader, *l)
	}
	for _, b := range s.Bricks {
		j := b.JBR
		switch {
		case !b.Online || j == nil:
			return false, fmt.Sprintf("brick %d: online %v, %s", b.Index, b.Online, b.Error)
		case j.Term != s.Term || j.LastIndex != l.LastIndex || j.LastTerm != l.LastTerm ||
			j.Commit != l.Commit || j.Applied != l.Commit || b.Lag != 0:
			return false, fmt.Sprintf("brick %d: %+v lag %d; leader brick %d: %+v", b.Index, *j, b.Lag, s.Leader, *l)
		}
	}
	return true, ""
}

// object is what a brick holds under one name: enough to tell replicas
// apart.
type object struct {
	mode fs.FileMode
	size int64
	sum  [32]byte // of a regular file's data
	link string
	gfid string
}

// tree lists a brick's namespace, without its private .gluon directory.
func tree(dir string) (map[string]object, error) {
	out := map[string]object{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".gluon" {
			return filepath.SkipDir
		}
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		o := object{mode: fi.Mode(), size: fi.Size()}
		if fi.IsDir() {
			o.size = 0 // directory sizes depend on the filesystem's history
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			o.sum = sha256.Sum256(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			if o.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		// Only the gfid's 16 bytes: the flag byte after them is each
		// brick's own hint of client xattrs, which may be set in vain
		// on one replica and not another.
		buf := make([]byte, 64)
		if n, err := unix.Lgetxattr(p, "trusted.gluon.gfid", buf); err == nil {
			o.gfid = fmt.Sprintf("%x", buf[:min(n, len(xl.GFID{}))])
		}
		out[rel] = o
		return nil
	})
	return out, err
}

// sameTrees reports whether every brick directory holds the same names,
// types, modes, sizes, data and GFIDs.
func sameTrees(dirs []string) (bool, string) {
	first, err := tree(dirs[0])
	if err != nil {
		return false, err.Error()
	}
	for i, d := range dirs[1:] {
		other, err := tree(d)
		if err != nil {
			return false, err.Error()
		}
		var diffs []string
		names := slices.Sorted(maps.Keys(first))
		for name := range other {
			if _, ok := first[name]; !ok {
				names = append(names, name)
			}
		}
		for _, name := range names {
			a, aok := first[name]
			b, bok := other[name]
			switch {
			case !aok:
				diffs = append(diffs, fmt.Sprintf("%s: only on brick %d", name, i+1))
			case !bok:
				diffs = append(diffs, fmt.Sprintf("%s: only on brick 0", name))
			case a != b:
				diffs = append(diffs, fmt.Sprintf("%s: brick 0 %+v, brick %d %+v", name, a, i+1, b))
			}
		}
		if len(diffs) > 0 {
			return false, fmt.Sprintf("%d differences: %s", len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "; "))
		}
	}
	return true, ""
}

// open opens the volume through a new client graph in this process, as a
// mount does. Cleanup closes it.
func (c *cluster) open() *client.Volume {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	log := slog.New(slog.NewTextHandler(c.clog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	v, err := client.Open(ctx, c.cli, volName, client.Options{Logger: log})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { v.Close() })
	return v
}

// caller issues requests as one mount does: its own client id, and a
// new sequence number for each request (the bricks deduplicate retries
// by the pair).
type caller struct {
	top xl.Xlator
	id  [16]byte
	seq atomic.Uint64
}

func newCaller(top xl.Xlator) *caller {
	c := &caller{top: top}
	rand.Read(c.id[:])
	return c
}

// ctx returns ctx carrying a new request's identity.
func (c *caller) ctx(ctx context.Context) context.Context {
	return xl.WithCall(ctx, &xl.Call{Client: c.id, Seq: c.seq.Add(1)})
}

// create makes a file in the root and returns its fd.
func (c *caller) create(t *testing.T, name string, flags uint32) xl.Fd {
	t.Helper()
	fd, _, e := c.top.Create(c.ctx(context.Background()), xl.RootGFID, name, xl.NewGFID(), flags, 0o644)
	if e != 0 {
		t.Fatalf("create %s: %v", name, e)
	}
	return fd
}

// readFile reads file name of directory dir through the client graph;
// the error names the step that failed.
func (c *caller) readFile(dir xl.GFID, name string) ([]byte, error) {
	ctx := context.Background()
	a, e := c.top.Lookup(c.ctx(ctx), dir, name)
	if e != 0 {
		return nil, fmt.Errorf("lookup %s: %w", name, e)
	}
	fd, e := c.top.Open(c.ctx(ctx), a.GFID, syscall.O_RDONLY)
	if e != 0 {
		return nil, fmt.Errorf("open %s: %w", name, e)
	}
	defer c.top.Release(c.ctx(ctx), fd)
	got, e := c.readAll(fd)
	if e != 0 {
		return nil, fmt.Errorf("read %s: %w", name, e)
	}
	return got, nil
}

// readAll reads a whole file through the client graph.
func (c *caller) readAll(fd xl.Fd) ([]byte, syscall.Errno) {
	var out []byte
	buf := make([]byte, 128<<10)
	for {
		n, e := c.top.Read(c.ctx(context.Background()), fd, buf, int64(len(out)))
		if e != 0 {
			return nil, e
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			return out, 0
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// errnoIn reports whether e is one of want.
func errnoIn(e syscall.Errno, want ...syscall.Errno) bool {
	return slices.Contains(want, e)
}
