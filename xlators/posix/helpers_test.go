package posix

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bg = context.Background()

// logBuf collects log output so tests can assert on warnings.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type brick struct {
	*Store
	t   testing.TB
	dir string
	log *logBuf
}

func newBrick(t testing.TB) *brick {
	t.Helper()
	return openBrick(t, t.TempDir())
}

// openBrick opens a store on dir; the test closes it at cleanup.
func openBrick(t testing.TB, dir string) *brick {
	t.Helper()
	b := &brick{t: t, dir: dir, log: &logBuf{}}
	var w io.Writer = b.log
	if _, ok := t.(*testing.B); ok {
		w = io.Discard
	}
	s, err := New(dir, Options{Logger: slog.New(slog.NewTextHandler(w, nil))})
	if err != nil {
		t.Fatal(err)
	}
	b.Store = s
	t.Cleanup(func() { s.Close() })
	return b
}

// reopen closes the store and opens a new one on the same directory,
// as a brick restart does.
func (b *brick) reopen() *brick {
	b.t.Helper()
	b.Close()
	return openBrick(b.t, b.dir)
}

func ok(t testing.TB, e syscall.Errno) {
	t.Helper()
	if e != 0 {
		t.Fatalf("unexpected errno %v", e)
	}
}

func want(t testing.TB, e, w syscall.Errno) {
	t.Helper()
	if e != w {
		t.Fatalf("errno %v, want %v", e, w)
	}
}

func (b *brick) mkdir(parent xl.GFID, name string) xl.GFID {
	b.t.Helper()
	g := xl.NewGFID()
	_, e := b.Mkdir(bg, parent, name, g, 0o755)
	ok(b.t, e)
	return g
}

// create makes a file and returns its open fd.
func (b *brick) create(parent xl.GFID, name string) (xl.Fd, xl.Attr) {
	b.t.Helper()
	fd, a, e := b.Create(bg, parent, name, xl.NewGFID(), uint32(os.O_RDWR|os.O_EXCL), 0o644)
	ok(b.t, e)
	return fd, a
}

// file makes a file holding data and releases it.
func (b *brick) file(parent xl.GFID, name, data string) xl.GFID {
	b.t.Helper()
	fd, _ := b.create(parent, name)
	if data != "" {
		n, e := b.Write(bg, fd, []byte(data), 0)
		ok(b.t, e)
		if n != len(data) {
			b.t.Fatalf("wrote %d of %d", n, len(data))
		}
	}
	ok(b.t, b.Release(bg, fd))
	return fd.GFID
}

func (b *brick) read(fd xl.Fd, off int64, n int) string {
	b.t.Helper()
	buf := make([]byte, n)
	m, e := b.Read(bg, fd, buf, off)
	ok(b.t, e)
	return string(buf[:m])
}

func (b *brick) handlePath(g xl.GFID) string {
	return filepath.Join(b.dir, ".gluon", "handles", hpath(g))
}

func (b *brick) hasHandle(g xl.GFID) bool {
	_, err := os.Lstat(b.handlePath(g))
	return err == nil
}

func (b *brick) wantLogged(substr string) {
	b.t.Helper()
	if !strings.Contains(b.log.String(), substr) {
		b.t.Fatalf("log lacks %q:\n%s", substr, b.log)
	}
}

func (b *brick) readdirAll(fd xl.Fd, max int) []xl.Dirent {
	b.t.Helper()
	var all []xl.Dirent
	var off uint64
	for {
		ents, e := b.Readdir(bg, fd, off, max)
		ok(b.t, e)
		if len(ents) == 0 {
			return all
		}
		if len(ents) > max {
			b.t.Fatalf("readdir returned %d entries, max %d", len(ents), max)
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].Off
	}
}

func asUser(uid, gid uint32, groups ...uint32) context.Context {
	return xl.WithCall(bg, &xl.Call{Uid: uid, Gid: gid, Groups: groups})
}
