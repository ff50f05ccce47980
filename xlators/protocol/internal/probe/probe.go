// Package probe is a translator for the protocol's tests. It forwards
// every op to its child and answers Ipc ops of its own that show what
// reached the brick (the caller's metadata) and hold requests in flight.
package probe

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Ipc ops answered by Probe; others go to the child.
const (
	// IpcEcho returns its input.
	IpcEcho xl.IpcOp = "probe.echo"
	// IpcWhoami returns the caller's xl.Call: uid, gid, pid, seq as
	// decimal, groups as comma-separated decimal, client raw, and the
	// call's xdata under "x.<key>".
	IpcWhoami xl.IpcOp = "probe.whoami"
	// IpcBarrier blocks until in["n"] callers (decimal) wait at once, or
	// until the caller's ctx ends (EINTR).
	IpcBarrier xl.IpcOp = "probe.barrier"
	// IpcBlock blocks until the caller's ctx ends, then answers EINTR.
	IpcBlock xl.IpcOp = "probe.block"
)

// Probe wraps a translator.
type Probe struct {
	xl.Base

	// Blocked gets a token for each request that parks in IpcBlock, so a
	// test knows when it is in flight; Unblocked gets one as each leaves.
	Blocked, Unblocked chan struct{}

	mu      sync.Mutex
	waiting int
	arrived chan struct{} // closed and replaced whenever a barrier fills
}

// New returns a probe in front of child.
func New(child xl.Xlator) *Probe {
	return &Probe{
		Base:      xl.Base{Xlator: child},
		Blocked:   make(chan struct{}, 1024),
		Unblocked: make(chan struct{}, 1024),
		arrived:   make(chan struct{}),
	}
}

func (p *Probe) Ipc(ctx context.Context, op xl.IpcOp, in xl.Xdata) (xl.Xdata, syscall.Errno) {
	switch op {
	case IpcEcho:
		return in, 0
	case IpcWhoami:
		return whoami(xl.CallFrom(ctx)), 0
	case IpcBarrier:
		n, err := strconv.Atoi(string(in["n"]))
		if err != nil || n <= 0 {
			return nil, syscall.EINVAL
		}
		return nil, p.barrier(ctx, n)
	case IpcBlock:
		p.Blocked <- struct{}{}
		<-ctx.Done()
		p.Unblocked <- struct{}{}
		return nil, syscall.EINTR
	}
	return p.Base.Ipc(ctx, op, in)
}

func whoami(c *xl.Call) xl.Xdata {
	out := xl.Xdata{
		"uid":    []byte(strconv.FormatUint(uint64(c.Uid), 10)),
		"gid":    []byte(strconv.FormatUint(uint64(c.Gid), 10)),
		"pid":    []byte(strconv.FormatUint(uint64(c.Pid), 10)),
		"seq":    []byte(strconv.FormatUint(c.Seq, 10)),
		"client": slices.Clone(c.Client[:]),
	}
	var groups []byte
	for i, g := range c.Groups {
		if i > 0 {
			groups = append(groups, ',')
		}
		groups = strconv.AppendUint(groups, uint64(g), 10)
	}
	out["groups"] = groups
	for k, v := range c.Xdata {
		out["x."+k] = v
	}
	return out
}

func (p *Probe) barrier(ctx context.Context, n int) syscall.Errno {
	p.mu.Lock()
	p.waiting++
	ch := p.arrived
	if p.waiting >= n {
		p.waiting = 0
		close(p.arrived)
		p.arrived = make(chan struct{})
	}
	p.mu.Unlock()
	select {
	case <-ch:
		return 0
	case <-ctx.Done():
		p.mu.Lock()
		if p.arrived == ch {
			p.waiting--
		}
		p.mu.Unlock()
		return syscall.EINTR
	}
}
