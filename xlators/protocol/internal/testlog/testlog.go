// Package testlog captures a test's slog output, so the test can check
// what was logged and show it when the test fails.
package testlog

import (
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Buffer holds everything logged so far.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ContainsLocalPeer is Contains for a line that also names its peer as
// this test process over loopback: by a 127.0.0.1 address over TCP, or by
// this process's pid over the local socket (package localsock), whichever
// the connection used.
func (b *Buffer) ContainsLocalPeer(parts ...string) bool {
	return b.Contains(append(parts, "remote=127.0.0.1:")...) ||
		b.Contains(append(parts, `remote="local pid `+strconv.Itoa(os.Getpid())+`"`)...)
}

// Contains reports whether one logged line holds every one of parts.
func (b *Buffer) Contains(parts ...string) bool {
	for line := range strings.SplitSeq(b.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// New returns a debug-level logger writing to a Buffer that is printed if
// t fails.
func New(t testing.TB) (*slog.Logger, *Buffer) {
	b := &Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", b)
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}
