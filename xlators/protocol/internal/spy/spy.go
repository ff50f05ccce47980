// Package spy is a translator for the protocol's tests: it forwards every
// op to its child and records the fds opened and released, so a test can
// check that none leaks.
package spy

import (
	"context"
	"sync"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Spy wraps a translator. Set the exported fields before use.
type Spy struct {
	xl.Base

	// Gate, if not nil, holds every Open and Opendir, whatever its ctx,
	// until Gate yields or is closed: a slow disk. Opening gets a token as
	// each one arrives.
	Gate    chan struct{}
	Opening chan struct{}

	mu       sync.Mutex
	opened   []xl.Fd
	released map[xl.Fd]int // Release and Releasedir calls per fd
}

// New returns a spy in front of child.
func New(child xl.Xlator) *Spy {
	return &Spy{Base: xl.Base{Xlator: child}, Opening: make(chan struct{}, 1024), released: map[xl.Fd]int{}}
}

func (s *Spy) wait() {
	if s.Gate != nil {
		s.Opening <- struct{}{}
		<-s.Gate
	}
}

func (s *Spy) open(fd xl.Fd, e syscall.Errno) {
	if e == 0 {
		s.mu.Lock()
		s.opened = append(s.opened, fd)
		s.mu.Unlock()
	}
}

func (s *Spy) Create(ctx context.Context, parent xl.GFID, name string, gfid xl.GFID, flags, mode uint32) (xl.Fd, xl.Attr, syscall.Errno) {
	fd, a, e := s.Base.Create(ctx, parent, name, gfid, flags, mode)
	s.open(fd, e)
	return fd, a, e
}

func (s *Spy) Open(ctx context.Context, ino xl.GFID, flags uint32) (xl.Fd, syscall.Errno) {
	s.wait()
	fd, e := s.Base.Open(ctx, ino, flags)
	s.open(fd, e)
	return fd, e
}

func (s *Spy) Opendir(ctx context.Context, ino xl.GFID) (xl.Fd, syscall.Errno) {
	s.wait()
	fd, e := s.Base.Opendir(ctx, ino)
	s.open(fd, e)
	return fd, e
}

func (s *Spy) Release(ctx context.Context, fd xl.Fd) syscall.Errno {
	s.count(fd)
	return s.Base.Release(ctx, fd)
}

func (s *Spy) Releasedir(ctx context.Context, fd xl.Fd) syscall.Errno {
	s.count(fd)
	return s.Base.Releasedir(ctx, fd)
}

func (s *Spy) count(fd xl.Fd) {
	s.mu.Lock()
	s.released[fd]++
	s.mu.Unlock()
}

// Opened returns the fds opened so far, in order.
func (s *Spy) Opened() []xl.Fd {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]xl.Fd(nil), s.opened...)
}

// Released returns how often fd was released.
func (s *Spy) Released(fd xl.Fd) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.released[fd]
}
