package volfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a test translator that records its construction and closing.
type node struct {
	xl.Unsupported
	name   string
	kids   []xl.Xlator
	closed *[]string
}

func (n *node) Close() error {
	*n.closed = append(*n.closed, n.name)
	if n.name == "bad-close" {
		return errors.New("close failed")
	}
	return nil
}

func testRegistry(closed *[]string) Registry {
	mk := func(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
		if err := CheckOptions(opts, []string{"name", "fail"}, []string{"name"}); err != nil {
			return nil, err
		}
		if opts["fail"] != "" {
			return nil, errors.New(opts["fail"])
		}
		return &node{name: opts["name"], kids: children, closed: closed}, nil
	}
	return Registry{"test/node": mk}
}

func parse(t *testing.T, s string) *Graph {
	t.Helper()
	g, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestBuild(t *testing.T) {
	var closed []string
	g := parse(t, `
volume a
    type test/node
    option name a
end-volume
volume b
    type test/node
    option name b
end-volume
volume c
    type test/node
    option name c
    subvolumes a b
end-volume
volume d
    type test/node
    option name d
    subvolumes c
end-volume
`)
	top, closeAll, err := Build(context.Background(), g, testRegistry(&closed))
	if err != nil {
		t.Fatal(err)
	}
	d := top.(*node)
	c := d.kids[0].(*node)
	if d.name != "d" || len(d.kids) != 1 || c.name != "c" || len(c.kids) != 2 || c.kids[0].(*node).name != "a" || c.kids[1].(*node).name != "b" {
		t.Fatalf("built graph wrong: %+v", d)
	}
	if err := closeAll(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"d", "c", "b", "a"}; !slices.Equal(closed, want) {
		t.Fatalf("closed %v, want top down %v", closed, want)
	}
	if err := closeAll(); err != nil || len(closed) != 4 {
		t.Fatalf("second closeAll = %v, closed %v", err, closed)
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct{ volfile, want string }{
		{"volume a\n type test/nope\nend-volume\n", `volfile: line 1: volume "a" (test/nope): unknown translator type`},
		{"volume a\n type test/node\n option name a\n option colour red\nend-volume\n", `line 1: volume "a" (test/node): unknown option "colour" (known: [name fail])`},
		{"volume a\n type test/node\nend-volume\n", `missing option "name"`},
		{"volume a\n type test/node\n option name a\nend-volume\nvolume b\n type test/node\n option name b\n option fail boom\n subvolumes a\nend-volume\n", `line 5: volume "b" (test/node): boom`},
	}
	for _, c := range cases {
		var closed []string
		_, _, err := Build(context.Background(), parse(t, c.volfile), testRegistry(&closed))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Build(%q) = %v, want %q", c.volfile, err, c.want)
		}
		// What was built before the failure is closed.
		if strings.Contains(c.volfile, "boom") && !slices.Equal(closed, []string{"a"}) {
			t.Errorf("after a failed build, closed %v, want [a]", closed)
		}
	}

	var closed []string
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Build(ctx, parse(t, "volume a\n type test/node\n option name a\nend-volume\n"), testRegistry(&closed)); !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context = %v", err)
	}
	if _, _, err := Build(context.Background(), &Graph{}, testRegistry(&closed)); err == nil {
		t.Error("Build of an empty graph succeeded")
	}
}

func TestBuildCloseErrors(t *testing.T) {
	var closed []string
	g := parse(t, "volume a\n type test/node\n option name bad-close\nend-volume\nvolume b\n type test/node\n option name b\n subvolumes a\nend-volume\n")
	_, closeAll, err := Build(context.Background(), g, testRegistry(&closed))
	if err != nil {
		t.Fatal(err)
	}
	if err := closeAll(); err == nil || err.Error() != "close failed" {
		t.Fatalf("closeAll = %v, want the failing Close's error", err)
	}
	if !slices.Equal(closed, []string{"b", "bad-close"}) {
		t.Fatalf("closed %v: a failing Close must not stop the others", closed)
	}
}

func TestDefaultRegistry(t *testing.T) {
	dir := t.TempDir()
	v := testVolume(t, 1, "localhost:"+dir)
	g := BrickVolfile(v, 0)
	sub, err := g.Subgraph(g.Top().Subvolumes[0])
	if err != nil {
		t.Fatal(err)
	}
	top, closeAll, err := Build(context.Background(), sub, DefaultRegistry(Env{}))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	// The stack works: a root getattr reaches posix through access.
	a, errno := top.Getattr(context.Background(), xl.RootGFID)
	if errno != 0 || !a.IsDir() {
		t.Fatalf("Getattr(root) = %+v, %v", a, errno)
	}
	if _, errno := top.Lookup(context.Background(), xl.RootGFID, "missing"); errno != syscall.ENOENT {
		t.Fatalf("Lookup(missing) = %v, want ENOENT", errno)
	}
	if err := closeAll(); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ volfile, want string }{
		{"volume p\n type storage/posix\nend-volume\n", `missing option "directory"`},
		{"volume p\n type storage/posix\n option directory " + file + "\nend-volume\n", file},
		{"volume p\n type storage/posix\n option directory /nonexistent/brick\nend-volume\n", "/nonexistent/brick"},
		{"volume p\n type storage/posix\n option directory " + dir + "\n option o-direct on\nend-volume\n", `unknown option "o-direct"`},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume a\n type features/access\n option x y\n subvolumes p\nend-volume\n", `unknown option "x" (this translator takes none)`},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume q\n type storage/posix\n option directory " + dir + "\n subvolumes p\nend-volume\n", "takes no subvolumes, has 1"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 0\n option remote-subvolume /b\nend-volume\n", `option remote-port "0"`},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 70000\n option remote-subvolume /b\nend-volume\n", `option remote-port "70000"`},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 1\nend-volume\n", `missing option "remote-subvolume"`},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 1\n option remote-subvolume /b\n option ping-timeout soon\nend-volume\n", "option ping-timeout"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 1\n option remote-subvolume /b\n option ping-timeout 0\nend-volume\n", "option ping-timeout"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 1\n option remote-subvolume /b\n option ping-interval 5\n option ping-timeout 2\nend-volume\n", "ping timeout"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-subvolume /b\n option ping-interval 20s\nend-volume\n", "ping timeout 10s must exceed ping interval 20s"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-subvolume /b\nend-volume\n", "without remote-port, option volume must name the brick's volume"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-subvolume /b\n option volume a/b\nend-volume\n", "option volume: volume name"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-subvolume /b\n option volume v\nend-volume\n", "needs etcd"},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume f\n type features/fdl\n subvolumes p\nend-volume\n", `missing option "journal"`},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume f\n type features/fdl\n option journal " + file + "\n subvolumes p\nend-volume\n", file},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set 0\n option self 0\n option replicas 1\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", "needs etcd for its leader election"},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set 0\n option self 0\n option replicas 3\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", "wants 3 subvolumes (the local store, then the other 2 bricks of the set), has 1"},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set 0\n option self 1\n option replicas 1\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", "want 0 <= self < replicas"},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set x\n option self 0\n option replicas 1\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", `option set "x"`},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set 0\n option self 0\n option replicas 1\n option lease-ttl soon\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", "option lease-ttl"},
		// lease-duration 0 (no read leases) is valid: the build gets as far as the election.
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set 0\n option self 0\n option replicas 1\n option lease-duration 0s\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", "needs etcd for its leader election"},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume j\n type cluster/jbr-server\n option volume v\n option set 0\n option self 0\n option replicas 1\n option lease-duration soon\n option journal " + dir + "/j\n subvolumes p\nend-volume\n", "option lease-duration"},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 1\n option remote-subvolume /b\nend-volume\nvolume j\n type cluster/jbr-client\n option volume v\n subvolumes c\nend-volume\n", `missing option "set"`},
		{"volume c\n type protocol/client\n option remote-host h\n option remote-port 1\n option remote-subvolume /b\nend-volume\nvolume j\n type cluster/jbr-client\n option volume v\n option set 0\n option retry-timeout -1s\n subvolumes c\nend-volume\n", "option retry-timeout"},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume w\n type performance/write-behind\n option window-size 1MB\n subvolumes p\nend-volume\n", `option window-size "1MB"`},
		{"volume p\n type storage/posix\n option directory " + dir + "\nend-volume\nvolume w\n type performance/write-behind\n option flush-behind on\n subvolumes p\nend-volume\n", `unknown option "flush-behind"`},
	}
	for _, c := range cases {
		_, _, err := Build(context.Background(), parse(t, c.volfile), DefaultRegistry(Env{}))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Build(%q) = %v, want %q", c.volfile, err, c.want)
		}
	}

	// features/fdl journals what reaches the store, in the journal given.
	g = parse(t, "volume p\n type storage/posix\n option directory "+dir+"\nend-volume\nvolume f\n type features/fdl\n option journal "+dir+"/.gluon/journal\n option sync-directory "+dir+"\n subvolumes p\nend-volume\n")
	top, closeAll, err = Build(context.Background(), g, DefaultRegistry(Env{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, e := top.Mkdir(context.Background(), xl.RootGFID, "d", xl.NewGFID(), 0o755); e != 0 {
		t.Fatalf("Mkdir through fdl: %v", e)
	}
	if err := closeAll(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, ".gluon/journal/term-*.log")); len(segs) == 0 {
		t.Error("fdl left no journal segment")
	}

	// Without etcd, jbr-client finds the leader by asking its children.
	g = parse(t, "volume c\n type protocol/client\n option remote-host 127.0.0.1\n option remote-port 1\n option remote-subvolume /b\nend-volume\nvolume j\n type cluster/jbr-client\n option volume v\n option set 0\n option retry-timeout 1s\n subvolumes c\nend-volume\n")
	_, closeAll, err = Build(context.Background(), g, DefaultRegistry(Env{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := closeAll(); err != nil {
		t.Fatal(err)
	}

	// A client is built without its server: it connects in the background.
	g = parse(t, "volume c\n type protocol/client\n option remote-host 127.0.0.1\n option remote-port 1\n option remote-subvolume /b\n option ping-interval 500ms\n option ping-timeout 3\n option dial-timeout 1\nend-volume\n")
	_, closeAll, err = Build(context.Background(), g, DefaultRegistry(Env{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := closeAll(); err != nil {
		t.Fatal(err)
	}
}
