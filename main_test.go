package main

// End-to-end tests: the real gluon binary, run as a user would, against a
// real embedded etcd, real brick processes and real FUSE mounts.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/conformance"
	"github.com/gluon-fs/gluon/internal/etcdtest"
)

// gluonBin is the binary under test, built by TestMain.
var gluonBin string

func TestMain(m *testing.M) {
	conformance.MaybeRunChild() // first: the suite re-executes this binary as other users
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gluon-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Searchable by the unprivileged users some tests act as.
	os.Chmod(dir, 0o755)
	gluonBin = filepath.Join(dir, "gluon")
	args := []string{"build", "-o", gluonBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building gluon: %v\n", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// result is one finished gluon invocation.
type result struct {
	stdout, stderr string
	code           int
}

// gluon runs the binary with args and waits for it.
func gluon(t *testing.T, args ...string) result {
	t.Helper()
	return runAs(t, gluonBin, args...)
}

func runAs(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %q: %v", bin, args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"bogus"},
		{"upp"},
		{"--bogus-flag"},
		{"up", "extra"},
		{"up", "--bricks", "0"},
		{"up", "--bricks", "-1"},
		{"up", "--replica", "0"},
		{"up", "--bricks", "4", "--replica", "3"},
		{"up", "--bricks", "6", "--distribute", "2"},
		{"up", "--distribute", "0"},
		{"volume", "set", "v0", "jbr.colour", "red"},
		{"volume", "set", "v0", "jbr.quorum"},
		{"volume", "status", "v0", "--yaml"},
		{"recon", "bogus"},
		{"recon", "dump"},
		{"recon", "dump", "/a", "/b"},
		{"recon", "dump", "/a", "--term", "0"},
		{"recon", "dump", "/a", "--term", "x"},
		{"up", "--volume", "bad/name"},
		{"up", "--attr-timeout", "-1s"},
		{"up", "--pprof", "0.0.0.0:6060"},
		{"up", "--metrics", "localhost:notaport"},
		{"brick"},
		{"brick", "--volume", "v"},
		{"brick", "--volume", "v", "--index", "x"},
		{"brick", "--volume", "v", "--index", "-1"},
		{"brick", "--volume", "v", "--index", "0", "extra"},
		{"mount"},
		{"mount", "vol0"},
		{"mount", "vol0", "/mnt", "extra"},
		{"mount", "--timeout", "0s", "vol0", "/mnt"},
		{"volume", "bogus"},
		{"volume", "create"},
		{"volume", "create", "v0"},
		{"volume", "create", "v0", "replica"},
		{"volume", "create", "v0", "replica", "0", "h:/b"},
		{"volume", "create", "v0", "replica", "3", "h1:/b", "h2:/b"},
		{"volume", "create", "v0", "replica", "two", "h1:/b", "h2:/b"},
		{"volume", "create", "v0", "h1"},
		{"volume", "create", "v0", "h1:relative/path"},
		{"volume", "create", "v0", ":/b"},
		{"volume", "create", "v0", "h1:/"},
		{"volume", "create", "v0", "h1:/b", "h1:/b"},
		{"volume", "create", "bad name", "h1:/b"},
		{"volume", "start"},
		{"volume", "start", "v0", "v1"},
		{"volume", "stop", "no/such"},
		{"volume", "delete"},
		{"volume", "status"},
		{"volume", "info", "a", "b"},
		{"volume", "list", "x"},
		{"volfile"},
		{"volfile", "v0", "--brick", "0", "--client"},
		{"volfile", "v0", "--brick", "-2"},
		{"version", "extra"},
		{"install-mount-helper", "extra"},
		{"--log-level", "loud", "version"},
		{"--log-format", "xml", "version"},
	} {
		r := gluon(t, args...)
		if r.code != 2 {
			t.Errorf("gluon %q: exit %d, want 2; stderr %q", args, r.code, r.stderr)
			continue
		}
		if r.stdout != "" {
			t.Errorf("gluon %q: stdout %q, want none", args, r.stdout)
		}
		if !strings.HasPrefix(r.stderr, "gluon: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("gluon %q: stderr %q, want one line starting with \"gluon: \"", args, r.stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"up", "--help"}, {"volume"}, {"volume", "create", "--help"}, {"brick", "-h"},
	} {
		r := gluon(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("gluon %q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := gluon(t, "up", "--help"); !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("gluon up --help has no examples:\n%s", r.stdout)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := gluon(t, "version")
	if r.code != 0 || !regexp.MustCompile(`^gluon \S+ go\S+ \w+/\w+\n$`).MatchString(r.stdout) {
		t.Errorf("gluon version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestBrickNoEtcd: a brick without etcd fails fast and says why.
func TestBrickNoEtcd(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := gluon(t, "brick", "--etcd", freeAddr(t), "--volume", "v0", "--index", "0")
	if r.code != 1 {
		t.Errorf("exit %d, want 1; stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "gluon: ") || !strings.Contains(r.stderr, "etcd") {
		t.Errorf("stderr %q does not blame etcd", r.stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v to give up", d)
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// upProc is a running "gluon up".
type upProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	mnt    string
	etcd   string
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

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

var etcdLine = regexp.MustCompile(`(?m)^etcd at (\S+)$`)

// startUp runs gluon up with args and waits for its "mounted" line.
func startUp(t *testing.T, args ...string) *upProc {
	t.Helper()
	u, ok := launchUp(t, args...)
	if !ok {
		t.Fatalf("gluon up exited %d before mounting; stderr:\n%s", u.code, u.stderr.String())
	}
	return u
}

// launchUp runs gluon up with args (plus a private etcd port) and waits
// until it has mounted (true) or exited (false). Cleanup stops it if the
// test has not.
func launchUp(t *testing.T, args ...string) (*upProc, bool) {
	t.Helper()
	args = append([]string{"up", "--etcd-listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command(gluonBin, args...)
	u := &upProc{t: t, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = u.stderr
	// A pipe of our own rather than StdoutPipe, so that Wait does not
	// close it under the reader.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		t.Fatal(err)
	}
	// The first stdout line is the readiness report; the rest is drained
	// until the pipe closes at exit.
	first := make(chan string, 1)
	go func() {
		defer stdout.Close()
		defer close(first)
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		for sc.Scan() {
		}
	}()
	go func() {
		cmd.Wait()
		u.code = cmd.ProcessState.ExitCode()
		close(u.done)
	}()
	t.Cleanup(func() {
		select {
		case <-u.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-u.done:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				<-u.done
			}
		}
		if t.Failed() {
			t.Logf("gluon up stderr:\n%s", u.stderr.String())
		}
	})
	select {
	case line, ok := <-first:
		if !ok {
			<-u.done
			return u, false
		}
		m := regexp.MustCompile(`^mounted (\S+) at (.+)$`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("gluon up: first stdout line %q, want \"mounted VOLUME at DIR\"", line)
		}
		u.mnt = m[2]
	case <-time.After(2 * time.Minute):
		t.Fatalf("gluon up: not mounted after 2 minutes; stderr:\n%s", u.stderr.String())
	}
	m := etcdLine.FindStringSubmatch(u.stderr.String())
	if m == nil {
		t.Fatalf("gluon up: no \"etcd at URL\" on stderr:\n%s", u.stderr.String())
	}
	u.etcd = m[1]
	return u, true
}

// stop sends SIGTERM and returns the exit status.
func (u *upProc) stop() int {
	u.t.Helper()
	u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(time.Minute):
		u.t.Fatalf("gluon up still running a minute after SIGTERM; stderr:\n%s", u.stderr.String())
	}
	return u.code
}

// mounted reports whether dir appears in /proc/mounts.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// brickPids reads the brick pids from gluon volume status.
func brickPids(t *testing.T, etcd, vol string) []int {
	t.Helper()
	r := gluon(t, "volume", "status", vol, "--etcd", etcd)
	if r.code != 0 {
		t.Fatalf("volume status: exit %d: %s", r.code, r.stderr)
	}
	var pids []int
	for _, m := range regexp.MustCompile(`(?m)^\d+ \S+\s+Y\s+\S+\s+(\d+)`).FindAllStringSubmatch(r.stdout, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWhy(t, what, func() (bool, string) { return cond(), "" })
}

// waitForWhy is waitFor for a cond that says why it does not hold yet.
func waitForWhy(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statusJSON is what gluon volume status --json prints, as far as the
// tests look.
type statusJSON struct {
	Sets []struct {
		Leader int    `json:"leader"`
		Term   uint64 `json:"term"`
		Bricks []struct {
			Online bool `json:"online"`
			Pid    int  `json:"pid"`
			Lag    int  `json:"lag"`
			JBR    *struct {
				Role      string `json:"role"`
				Term      uint64 `json:"term"`
				LastIndex uint64 `json:"last_index"`
				Commit    uint64 `json:"commit"`
				Applied   uint64 `json:"applied"`
			} `json:"jbr"`
		} `json:"bricks"`
	} `json:"sets"`
}

// volumeStatus runs gluon volume status --json until it answers (etcd
// may stall for a moment on a loaded machine) and returns its status.
func volumeStatus(t *testing.T, etcd, vol string) statusJSON {
	t.Helper()
	var st statusJSON
	waitForWhy(t, "gluon volume status --json", func() (bool, string) {
		r := gluon(t, "volume", "status", vol, "--json", "--etcd", etcd)
		if r.code != 0 {
			return false, fmt.Sprintf("exit %d: %s", r.code, r.stderr)
		}
		st = statusJSON{}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Sets) != 1 {
			t.Fatalf("volume status --json: %v, %d sets:\n%s", err, len(st.Sets), r.stdout)
		}
		return true, ""
	})
	return st
}

// sameInBricks reports whether name holds want in every brick directory.
func sameInBricks(bricks []string, name, want string) bool {
	for _, b := range bricks {
		if got, err := os.ReadFile(filepath.Join(b, name)); err != nil || string(got) != want {
			return false
		}
	}
	return true
}

func brickDirs(dir string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, filepath.Join(dir, "bricks", fmt.Sprintf("b%d", i)))
	}
	return out
}

// TestUp is the main job: gluon up mounts a volume replicated three ways
// whose files land, identical, in all three brick directories; volume
// status shows the leader and every brick's journal position; recon dump
// reads a brick's journal; SIGTERM takes everything down cleanly; and a
// second run on the same --dir brings the data back.
func TestUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := startUp(t, "--dir", dir)
	if want := filepath.Join(dir, "mnt"); u.mnt != want {
		t.Errorf("mounted at %q, want %q", u.mnt, want)
	}
	if !mounted(t, u.mnt) {
		t.Fatalf("%s not in /proc/mounts", u.mnt)
	}
	if err := os.WriteFile(filepath.Join(u.mnt, "hello.txt"), []byte("hello, gluon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(u.mnt, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.mnt, "a", "b", "c"), []byte("deep"), 0o600); err != nil {
		t.Fatal(err)
	}
	bricks := brickDirs(dir, 3)
	waitFor(t, "the files to reach all three bricks", func() bool {
		return sameInBricks(bricks, "hello.txt", "hello, gluon\n") && sameInBricks(bricks, "a/b/c", "deep")
	})

	pids := brickPids(t, u.etcd, "gv0")
	if len(pids) != 3 {
		t.Fatalf("volume status shows %d online bricks, want 3", len(pids))
	}
	// An election (an etcd stall on a loaded machine can expire the
	// leases) passes through states where the bricks disagree on the
	// term; the status must settle on one leader that every brick follows.
	var text string
	waitForWhy(t, "every brick to apply what the leader committed, and the status to agree", func() (bool, string) {
		set := volumeStatus(t, u.etcd, "gv0").Sets[0]
		if set.Leader < 0 || set.Leader > 2 || set.Term == 0 {
			return false, fmt.Sprintf("status: leader %d, term %d", set.Leader, set.Term)
		}
		for i, b := range set.Bricks {
			role := "follower"
			if i == set.Leader {
				role = "leader"
			}
			// Waiting cannot excuse two leaders in one term.
			if i != set.Leader && b.JBR != nil && b.JBR.Role == "leader" && b.JBR.Term == set.Term {
				t.Fatalf("bricks %d and %d both lead term %d", i, set.Leader, set.Term)
			}
			// Two creates, two mkdirs and two writes at least.
			if !b.Online || b.JBR == nil || b.Lag != 0 || b.JBR.Role != role || b.JBR.Term != set.Term || b.JBR.LastIndex < 6 || b.JBR.Applied != b.JBR.Commit {
				return false, fmt.Sprintf("brick %d: online %v, lag %d, %+v; want %s in term %d", i, b.Online, b.Lag, b.JBR, role, set.Term)
			}
		}
		// The table says the same, unless the set elected again meanwhile.
		text = gluon(t, "volume", "status", "gv0", "--etcd", u.etcd).stdout
		want := fmt.Sprintf("Replica set 0: leader brick %d, term %d\n", set.Leader, set.Term)
		return strings.Contains(text, want), fmt.Sprintf("volume status lacks %q:\n%s", want, text)
	})
	if !regexp.MustCompile(`(?m)^\d \S+/bricks/b\d\s+Y\s+\S+\s+\d+\s+leader\s+\d+\s+\d+\s+\d+\s+\d+\s+0$`).MatchString(text) {
		t.Errorf("volume status lacks a leader row:\n%s", text)
	}
	if r := gluon(t, "volfile", "gv0", "--etcd", u.etcd); r.code != 0 || !strings.Contains(r.stdout, "type cluster/jbr-client") {
		t.Errorf("volfile --client: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := gluon(t, "volfile", "gv0", "--brick", "0", "--etcd", u.etcd); r.code != 0 || !strings.Contains(r.stdout, "type cluster/jbr-server") || !strings.Contains(r.stdout, bricks[0]) {
		t.Errorf("volfile --brick 0: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}

	if code := u.stop(); code != 0 {
		t.Fatalf("gluon up exited %d after SIGTERM; stderr:\n%s", code, u.stderr.String())
	}
	if mounted(t, u.mnt) {
		t.Errorf("%s still mounted after gluon up exited", u.mnt)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("brick pid %d still running after gluon up exited", pid)
		}
	}

	// Every brick's journal holds the writes; a clean stop synced them.
	for _, b := range bricks {
		r := gluon(t, "recon", "dump", b)
		if r.code != 0 || !regexp.MustCompile(`(?m)^\d+\s+\d+\s+\d+/\d+\s+Create\s+\S+\s+name="hello.txt" .* synced$`).MatchString(r.stdout) {
			t.Errorf("recon dump %s: exit %d, stderr %q, stdout:\n%s", b, r.code, r.stderr, r.stdout)
		}
	}
	type dumpJSON struct {
		Info struct {
			LastIndex uint64 `json:"last_index"`
		} `json:"info"`
		Entries []struct {
			Term  uint64 `json:"term"`
			Op    string `json:"op"`
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"entries"`
	}
	dumpOf := func(args ...string) dumpJSON {
		t.Helper()
		r := gluon(t, append([]string{"recon", "dump", bricks[1], "--json"}, args...)...)
		var d dumpJSON
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 {
			t.Fatalf("recon dump --json %q: exit %d, %v:\n%s", args, r.code, err, r.stdout)
		}
		return d
	}
	// The writes may span terms (a loaded machine's etcd stall can make
	// the set elect again); --term shows the one hello.txt was made in.
	var names []string
	var term uint64
	for _, e := range dumpOf().Entries {
		if e.State != "synced" {
			t.Errorf("recon dump: entry %+v", e)
		}
		if e.Name != "" {
			names = append(names, e.Op+" "+e.Name)
		}
		if e.Op == "Create" && e.Name == "hello.txt" {
			term = e.Term
		}
	}
	if want := []string{"Create hello.txt", "Mkdir a", "Mkdir b", "Create c"}; !slices.Equal(names, want) {
		t.Errorf("recon dump --json: named entries %q, want %q", names, want)
	}
	dump := dumpOf("--term", strconv.FormatUint(term, 10))
	hello := false
	for _, e := range dump.Entries {
		if e.Term != term || e.State != "synced" {
			t.Errorf("recon dump --term %d: entry %+v", term, e)
		}
		hello = hello || e.Name == "hello.txt"
	}
	if n := len(dump.Entries); !hello || uint64(n) > dump.Info.LastIndex {
		t.Errorf("recon dump --json --term %d: %d entries (hello.txt among them: %v), journal up to %d", term, n, hello, dump.Info.LastIndex)
	}

	u2 := startUp(t, "--dir", dir)
	if b, err := os.ReadFile(filepath.Join(u2.mnt, "a", "b", "c")); err != nil || string(b) != "deep" {
		t.Errorf("after restart, a/b/c: %q, %v", b, err)
	}
	if code := u2.stop(); code != 0 {
		t.Errorf("second gluon up exited %d", code)
	}
}

// TestUpTempDir: without --dir, gluon up cleans up after itself. It also
// serves metrics, its translators' among them, and pprof when asked.
func TestUpTempDir(t *testing.T) {
	t.Parallel()
	mnt := filepath.Join(t.TempDir(), "m")
	u := startUp(t, "--mount", mnt, "--metrics", "127.0.0.1:0", "--pprof", "127.0.0.1:0")
	if u.mnt != mnt {
		t.Errorf("mounted at %q, want %q", u.mnt, mnt)
	}
	for _, c := range []struct{ server, path, want string }{
		{"metrics", "/metrics", `gluon_build_info{goversion="go`},
		{"metrics", "/metrics", "process_resident_memory_bytes"},
		{"metrics", "/metrics", "go_goroutines"},
		{"pprof", "/debug/pprof/", "goroutine"},
	} {
		m := regexp.MustCompile(`msg="serving ` + c.server + `" addr=(\S+)`).FindStringSubmatch(u.stderr.String())
		if m == nil {
			t.Errorf("no %s address logged", c.server)
			continue
		}
		resp, err := http.Get("http://" + m[1] + c.path)
		if err != nil {
			t.Error(err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s%s: %s, body lacks %q", m[1], c.path, resp.Status, c.want)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	r := gluon(t, "volume", "info", "gv0", "--etcd", u.etcd)
	m := regexp.MustCompile(`(?m)^Brick0: 127\.0\.0\.1:(/.*)/bricks/b0$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("volume info: no brick under a state directory:\n%s", r.stdout)
	}
	state := m[1]
	if _, err := os.Stat(state); err != nil {
		t.Fatal(err)
	}
	if code := u.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if mounted(t, mnt) {
		t.Errorf("%s still mounted", mnt)
	}
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() {
		t.Errorf("mount point removed: %v", err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("temporary state directory %s left behind (%v)", state, err)
	}
}

// TestUpSingleBrick: gluon up --replica 1 runs one brick, with no
// replication and no journal.
func TestUpSingleBrick(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := startUp(t, "--dir", dir, "--replica", "1")
	if err := os.WriteFile(filepath.Join(u.mnt, "r"), []byte("single"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bricks", "b0", "r")); err != nil || string(b) != "single" {
		t.Errorf("brick copy: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bricks", "b1")); !os.IsNotExist(err) {
		t.Errorf("a second brick directory: %v", err)
	}
	r := gluon(t, "volume", "status", "gv0", "--etcd", u.etcd)
	if r.code != 0 || strings.Contains(r.stdout, "Replica set") || len(brickPids(t, u.etcd, "gv0")) != 1 {
		t.Errorf("volume status: exit %d:\n%s", r.code, r.stdout)
	}
	if code := u.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if r := gluon(t, "recon", "dump", filepath.Join(dir, "bricks", "b0")); r.code != 1 || !strings.Contains(r.stderr, "no journal") {
		t.Errorf("recon dump of a single brick: exit %d, stderr %q", r.code, r.stderr)
	}
	// The same --dir with another layout is refused, not reshaped.
	if u, ok := launchUp(t, "--dir", dir); ok || u.code != 1 || !strings.Contains(u.stderr.String(), "has 1 bricks in replica sets of 1") {
		t.Errorf("gluon up on a single-brick --dir without --replica 1: mounted %v, exit %d, stderr:\n%s", ok, u.code, u.stderr.String())
	}
}

// TestUpBrickDies: a brick dying is logged loudly; when it is the leader
// the other two elect a new one and the mount keeps working; gluon up
// still shuts down cleanly.
func TestUpBrickDies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := startUp(t, "--dir", dir)
	var st statusJSON
	var leader int
	// Mounted, the volume may still be electing (or electing again after
	// an etcd stall on a loaded machine).
	waitForWhy(t, "an online leader", func() (bool, string) {
		st = volumeStatus(t, u.etcd, "gv0")
		leader = st.Sets[0].Leader
		return leader >= 0 && st.Sets[0].Bricks[leader].Online, fmt.Sprintf("%+v", st)
	})
	syscall.Kill(st.Sets[0].Bricks[leader].Pid, syscall.SIGKILL)
	waitFor(t, "brick death to be logged", func() bool {
		return strings.Contains(u.stderr.String(), "BRICK PROCESS DIED")
	})
	// The write waits out the failover (about the lease TTL).
	if err := os.WriteFile(filepath.Join(u.mnt, "after"), []byte("failover"), 0o644); err != nil {
		t.Fatalf("write after the leader died: %v", err)
	}
	var live []string
	for i, b := range brickDirs(dir, 3) {
		if i != leader {
			live = append(live, b)
		}
	}
	waitFor(t, "the write to reach the two live bricks", func() bool { return sameInBricks(live, "after", "failover") })
	if code := u.stop(); code != 0 {
		t.Errorf("exit %d after a brick died", code)
	}
	if mounted(t, u.mnt) {
		t.Errorf("%s still mounted", u.mnt)
	}
}

// TestMount: a second client mounts the running volume in the background
// (gluon mount) and through mount(8)'s helper (mount.gluon); both see the
// first client's files, and umount ends them.
func TestMount(t *testing.T) {
	t.Parallel()
	u := startUp(t, "--dir", t.TempDir(), "--entry-timeout", "0", "--attr-timeout", "0")
	if err := os.WriteFile(filepath.Join(u.mnt, "from-up"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()

	mnt2 := filepath.Join(tmp, "m2")
	os.Mkdir(mnt2, 0o755)
	log2 := filepath.Join(tmp, "m2.log")
	r := gluon(t, "mount", "--etcd", u.etcd, "--log-file", log2, "--attr-timeout", "0", "--entry-timeout", "0", "gv0", mnt2)
	if r.code != 0 || r.stdout != fmt.Sprintf("mounted gv0 at %s\n", mnt2) {
		t.Fatalf("gluon mount: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	t.Cleanup(func() { unmount(t, mnt2) })
	if b, err := os.ReadFile(filepath.Join(mnt2, "from-up")); err != nil || string(b) != "1" {
		t.Errorf("second mount reads from-up: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt2, "from-mount"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(u.mnt, "from-mount")); err != nil || string(b) != "2" {
		t.Errorf("first mount reads from-mount: %q, %v", b, err)
	}

	helper := filepath.Join(tmp, "mount.gluon")
	if err := os.Symlink(gluonBin, helper); err != nil {
		t.Fatal(err)
	}
	mnt3 := filepath.Join(tmp, "m3")
	os.Mkdir(mnt3, 0o755)
	src := strings.TrimPrefix(u.etcd, "http://") + ":/gv0"
	r = runAs(t, helper, src, mnt3, "-o", "rw,_netdev,attribute-timeout=0,log-file="+filepath.Join(tmp, "m3.log"))
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("mount.gluon: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	t.Cleanup(func() { unmount(t, mnt3) })
	if b, err := os.ReadFile(filepath.Join(mnt3, "from-mount")); err != nil || string(b) != "2" {
		t.Errorf("helper mount reads from-mount: %q, %v", b, err)
	}
	if !strings.Contains(procMountsLine(t, mnt3), src) {
		t.Errorf("/proc/mounts does not name the source %s: %q", src, procMountsLine(t, mnt3))
	}

	// mount(8) conventions: 1 for bad usage, 32 for a failed mount.
	if r := runAs(t, helper, src, mnt3, "-o", "bogus"); r.code != 1 || !strings.Contains(r.stderr, "bogus") {
		t.Errorf("mount.gluon -o bogus: exit %d, stderr %q", r.code, r.stderr)
	}
	mnt4 := filepath.Join(tmp, "m4")
	os.Mkdir(mnt4, 0o755)
	if r := runAs(t, helper, strings.TrimSuffix(src, "gv0")+"nosuch", mnt4, "-o", "timeout=5,log-file="+filepath.Join(tmp, "m4.log")); r.code != 32 || !strings.Contains(r.stderr, "nosuch") {
		t.Errorf("mount.gluon of a missing volume: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := gluon(t, "mount", "--etcd", u.etcd, "--foreground", "nosuch", mnt4); r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("gluon mount of a missing volume: exit %d, stderr %q", r.code, r.stderr)
	}

	for _, m := range []string{mnt2, mnt3} {
		if err := syscall.Unmount(m, 0); err != nil {
			t.Fatalf("umount %s: %v", m, err)
		}
		waitFor(t, "the mount process for "+m+" to exit", func() bool { return len(mountProcs(m)) == 0 })
	}
	if code := u.stop(); code != 0 {
		t.Errorf("gluon up exit %d", code)
	}
}

func procMountsLine(t *testing.T, dir string) string {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return line
		}
	}
	return ""
}

// mountProcs returns the pids of background mount processes serving dir.
func mountProcs(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && args[1] == "mount" && args[len(args)-2] == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// unmount is cleanup for a test that failed before unmounting.
func unmount(t *testing.T, dir string) {
	if mounted(t, dir) {
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	for _, pid := range mountProcs(dir) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
}

func TestInstallMountHelper(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for range 2 { // the second run replaces the link
		r := gluon(t, "install-mount-helper", "--dir", dir)
		if r.code != 0 || !strings.Contains(r.stdout, "mount.gluon -> "+gluonBin) {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "mount.gluon")); err != nil || target != gluonBin {
		t.Errorf("mount.gluon -> %q, %v", target, err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "mount.gluon"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := gluon(t, "install-mount-helper", "--dir", other); r.code != 1 || !strings.Contains(r.stderr, "not a symlink") {
		t.Errorf("over a regular file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestVolumeCLI drives the volume commands against an embedded etcd.
func TestVolumeCLI(t *testing.T) {
	t.Parallel()
	etcd := startEtcd(t)
	run := func(want int, args ...string) result {
		t.Helper()
		r := gluon(t, append(args, "--etcd", etcd)...)
		if r.code != want {
			t.Fatalf("gluon %q: exit %d, want %d; stdout %q, stderr %q", args, r.code, want, r.stdout, r.stderr)
		}
		return r
	}
	if r := run(0, "volume", "list"); r.stdout != "" {
		t.Errorf("list on empty etcd: %q", r.stdout)
	}
	if r := run(0, "volume", "create", "vol0", "host1:/data/b0"); !strings.HasPrefix(r.stdout, "created volume vol0 (") {
		t.Errorf("create: %q", r.stdout)
	}
	run(0, "volume", "create", "vol1", "replica", "2", "host1:/data/b1", "host2:/data/b1")
	if r := run(1, "volume", "create", "vol0", "host3:/x"); !strings.Contains(r.stderr, "exists") {
		t.Errorf("duplicate create: %q", r.stderr)
	}
	if r := run(1, "volume", "create", "vol2", "host1:/data/b0"); !strings.Contains(r.stderr, "vol0") {
		t.Errorf("create reusing a brick: %q", r.stderr)
	}
	if r := run(0, "volume", "list"); r.stdout != "vol0\nvol1\n" {
		t.Errorf("list: %q", r.stdout)
	}
	r := run(0, "volume", "info", "vol1")
	for _, want := range []string{"Volume Name: vol1", "Status: created", "Type: Replicate", "Number of Bricks: 1 x 2 = 2", "Brick1: host2:/data/b1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("info vol1 lacks %q:\n%s", want, r.stdout)
		}
	}
	// Options: checked against the volume, bad ones refused as usage errors.
	if r := run(0, "volume", "set", "vol1", "jbr.consistency", "lease"); r.stdout != "volume vol1: set jbr.consistency to lease\n" {
		t.Errorf("set: %q", r.stdout)
	}
	for _, c := range []struct{ key, val, want string }{
		{"jbr.quorum", "1", "volume vol1 has 2 replicas: the quorum must be 2"},
		{"jbr.lease-ttl", "500ms", "want 1s to 1m"},
		{"jbr.consistency", "strong", "want linearizable, lease or follower"},
		{"jbr.retry-timeout", "soon", "want seconds or a duration"},
	} {
		r := run(2, "volume", "set", "vol1", c.key, c.val)
		if !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("set %s %s: stderr %q, want one line saying %q", c.key, c.val, r.stderr, c.want)
		}
	}
	if r := run(1, "volume", "set", "nosuch", "jbr.quorum", "2"); !strings.Contains(r.stderr, "nosuch does not exist") {
		t.Errorf("set on a missing volume: %q", r.stderr)
	}
	if r := run(0, "volume", "info", "vol1"); !strings.Contains(r.stdout, "Options Reconfigured:\njbr.consistency: lease\n") {
		t.Errorf("info after set:\n%s", r.stdout)
	}
	if r := run(0, "volume", "info"); !strings.Contains(r.stdout, "Volume Name: vol0") || !strings.Contains(r.stdout, "Volume Name: vol1") {
		t.Errorf("info: %q", r.stdout)
	}
	if r := run(0, "volume", "start", "vol0"); r.stdout != "started volume vol0\n" {
		t.Errorf("start: %q", r.stdout)
	}
	if r := run(0, "volume", "info", "vol0"); !strings.Contains(r.stdout, "Status: started") {
		t.Errorf("info after start: %q", r.stdout)
	}
	r = run(0, "volume", "status", "vol0")
	if !strings.Contains(r.stdout, "Volume vol0 is started") || !regexp.MustCompile(`0 host1:/data/b0\s+N\s+-\s+-`).MatchString(r.stdout) {
		t.Errorf("status: %q", r.stdout)
	}
	run(0, "volume", "stop", "vol0")
	if r := run(0, "volume", "delete", "vol0"); r.stdout != "deleted volume vol0\n" {
		t.Errorf("delete: %q", r.stdout)
	}
	for _, args := range [][]string{
		{"volume", "info", "vol0"},
		{"volume", "status", "vol0"},
		{"volume", "start", "vol0"},
		{"volume", "delete", "vol0"},
		{"volfile", "vol0"},
	} {
		if r := run(1, args...); !strings.Contains(r.stderr, "vol0") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("gluon %q on a deleted volume: %q", args, r.stderr)
		}
	}
	if r := run(0, "volume", "list"); r.stdout != "vol1\n" {
		t.Errorf("list after delete: %q", r.stdout)
	}
	if r := run(2, "volfile", "vol1", "--brick", "2"); !strings.Contains(r.stderr, "bricks 0 to 1") {
		t.Errorf("volfile --brick 2: %q", r.stderr)
	}
	if r := run(0, "volfile", "vol1", "--brick", "1"); !strings.Contains(r.stdout, "/data/b1") {
		t.Errorf("volfile --brick 1: %q", r.stdout)
	}
	// $GLUON_ETCD stands in for --etcd.
	cmd := exec.Command(gluonBin, "volume", "list")
	cmd.Env = append(os.Environ(), "GLUON_ETCD="+etcd)
	if out, err := cmd.Output(); err != nil || string(out) != "vol1\n" {
		t.Errorf("GLUON_ETCD volume list: %q, %v", out, err)
	}
}

// startEtcd runs an in-process etcd for the test and returns its URL.
func startEtcd(t *testing.T) string {
	return etcdtest.Start(t).Endpoints()[0]
}
