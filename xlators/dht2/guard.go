package dht2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Guard ops, answered by a Guard: Xdata "tokens" holds big-endian uint16s.
const (
	IpcFence   xl.IpcOp = "dht2.fence"   // refuse the tokens from now on
	IpcUnfence xl.IpcOp = "dht2.unfence" // serve the tokens again
)

// fenceXattr keeps a set's fenced tokens on its root, so that they
// survive a restart.
const fenceXattr = xattrPrefix + "fenced"

// bypassKey in a request's Call Xdata lets the migrator read and clean up
// a token it fenced.
const bypassKey = "dht2.migrate"

// localKey in an unlink's Call Xdata asks the Guard to unlink the name
// only if it is local, answering errnoRemote for a stub, so that DHT2
// need not look the name up first.
const localKey = "dht2.local"

// errnoRemote is a Guard's answer to a local-only unlink of a stub. It
// never reaches applications.
const errnoRemote = syscall.EXDEV

// localOnly is ctx with localKey added to its Call.
func localOnly(ctx context.Context) context.Context {
	c := *xl.CallFrom(ctx)
	c.Xdata = maps.Clone(c.Xdata)
	if c.Xdata == nil {
		c.Xdata = xl.Xdata{}
	}
	c.Xdata[localKey] = nil
	return xl.WithCall(ctx, &c)
}

// GuardOptions configures a Guard.
type GuardOptions struct {
	Logger *slog.Logger
}

// Guard is the brick-side half of token migration ("cluster/dht2-guard",
// on each brick above its store, or above jbr-server on a replica set's
// bricks). Requests naming a GFID whose token is fenced get ErrnoMoved, so
// a client with a stale layout never applies a request to a set that gave
// the token away. Statfs, Ipc and the anchor's own name are never fenced.
// A fence is in place once the requests for its tokens that the guard
// let through before have finished: one that passed the check just
// before would otherwise land on the source after the migration copied
// what it changes (a file created then would be lost).
//
// The fences are kept in an xattr of the root below the guard, so they
// survive restarts and, above jbr-server, replicate to the set's other
// bricks. A guard rereads them every ReloadEvery. Above a replicated
// set's server (a child that is a Leader), the leader's guard is the one
// that takes requests and changes fences: a follower's guard, whose
// child cannot answer, starts with none and passes requests down to be
// refused there; once its brick leads, in a term it has not read the
// fences in, it reads them before it lets a request through, and refuses
// requests with its child's error until it has.
type Guard struct {
	xl.Funnel
	next   xl.Xlator
	lead   Leader        // next as a replicated set's server, or nil
	term   atomic.Uint64 // the term the fences were last read in; 0: none
	log    *slog.Logger
	every  time.Duration
	mu     sync.Mutex // serializes fence changes, loads and persistence
	fenced [Tokens]atomic.Bool
	any    atomic.Int32 // how many tokens are fenced: 0 skips the checks
	loaded atomic.Int64 // unix nanoseconds of the last load attempt
	runs   []byte       // the persisted fences as last read or written; g.mu

	// busy counts, by token, the requests past the fence check that have
	// not returned. A request counts itself before it checks, and a fence
	// is set before it looks at the counts, so either the request sees
	// the fence or the fence waits for the request.
	busy     [Tokens]atomic.Int32
	draining atomic.Int32  // fences waiting for busy tokens
	wakeMu   sync.Mutex    // guards wake
	wake     chan struct{} // closed when a token goes idle while a fence waits
}

// ReloadEvery is how often a Guard rereads its persisted fences.
const ReloadEvery = time.Second

// Leader is a replicated set's server below a Guard (jbr-server): who
// leads, in which term. Only a leader takes requests; its writes, the
// fences among them, reach the followers' stores beneath their guards.
type Leader interface {
	LeaderTerm() (term uint64, leading bool)
}

var _ xl.Xlator = (*Guard)(nil)

// NewGuard wraps next, loading the fences it persisted.
func NewGuard(next xl.Xlator, opts GuardOptions) (*Guard, error) {
	if next == nil {
		return nil, errors.New("dht2: guard without a child")
	}
	g := &Guard{next: next, log: opts.Logger, every: ReloadEvery}
	g.lead, _ = next.(Leader)
	if g.log == nil {
		g.log = slog.Default()
	}
	g.mu.Lock()
	g.load(context.Background())
	g.mu.Unlock()
	g.Funnel = xl.Funnel{H: g.handle}
	return g, nil
}

// load reads the persisted fences; g.mu is held. Failing, it keeps what it
// knows.
func (g *Guard) load(ctx context.Context) syscall.Errno {
	g.loaded.Store(time.Now().UnixNano())
	v, e := g.next.Getxattr(asRoot(ctx), xl.RootGFID, fenceXattr)
	switch {
	case e == syscall.ENODATA:
		v = nil
	case e != 0:
		return e
	}
	if bytes.Equal(v, g.runs) {
		return 0 // unchanged: no walk over the token space each reload
	}
	g.runs = v
	want := new([Tokens]bool)
	for _, t := range decodeRuns(v) {
		want[t] = true
	}
	g.set(want)
	return 0
}

// set makes want the fences; g.mu is held.
func (g *Guard) set(want *[Tokens]bool) {
	for t := range want {
		if g.fenced[t].Swap(want[t]) != want[t] {
			if want[t] {
				g.any.Add(1)
			} else {
				g.any.Add(-1)
			}
		}
	}
}

// current makes sure that, if the child leads a replicated set, the
// fences were read in its current term.
func (g *Guard) current(ctx context.Context) syscall.Errno {
	if g.lead == nil {
		return 0
	}
	term, leading := g.lead.LeaderTerm()
	if !leading || g.term.Load() == term {
		return 0 // a follower's child refuses requests itself
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.term.Load() == term {
		return 0
	}
	if e := g.load(ctx); e != 0 {
		g.log.Warn("dht2: guard: reading the fences as a new leader", "term", term, "errno", e)
		return e
	}
	g.term.Store(term)
	return 0
}

// maybeLoad rereads the fences if they are older than g.every and no other
// request is rereading them.
func (g *Guard) maybeLoad(ctx context.Context) {
	if time.Now().UnixNano()-g.loaded.Load() < int64(g.every) || !g.mu.TryLock() {
		return
	}
	defer g.mu.Unlock()
	if time.Now().UnixNano()-g.loaded.Load() >= int64(g.every) {
		g.load(ctx)
	}
}

// Fenced reports whether token t is refused.
func (g *Guard) Fenced(t uint16) bool { return g.fenced[t].Load() }

func (g *Guard) handle(ctx context.Context, f *xl.Fop) *xl.Result {
	fence := f.Op == xl.OpIpc && (f.Name == string(IpcFence) || f.Name == string(IpcUnfence))
	resolve := f.Op == xl.OpIpc && f.Name == string(IpcResolve)
	if f.Op != xl.OpIpc || fence || resolve {
		// Other Ipc passes: a client asks a follower who leads.
		if e := g.current(ctx); e != 0 {
			return &xl.Result{Errno: e}
		}
	}
	if fence {
		toks, on := decodeTokens(f.Xdata["tokens"]), f.Name == string(IpcFence)
		e := g.setFence(ctx, toks, on)
		if e == 0 && on {
			e = g.drain(ctx, toks)
		}
		return &xl.Result{Errno: e}
	}
	g.maybeLoad(ctx)
	if resolve {
		return g.resolve(ctx, f.Xdata)
	}
	ts, n := fenceable(ctx, f)
	for _, t := range ts[:n] {
		g.busy[t].Add(1)
	}
	defer g.idle(ts, n)
	if g.any.Load() > 0 && g.refuses(ts[:n]) {
		return &xl.Result{Errno: ErrnoMoved}
	}
	if f.Op == xl.OpUnlink {
		if _, ok := xl.CallFrom(ctx).Xdata[localKey]; ok {
			a, e := g.next.Lookup(ctx, f.GFID, f.Name)
			if e == 0 && TokenOf(a.GFID) != TokenOf(f.GFID) {
				e = errnoRemote
			}
			if e != 0 {
				return &xl.Result{Errno: e}
			}
		}
	}
	return xl.Dispatch(ctx, g.next, f)
}

// fenceable returns the tokens whose fence refuses f: ts[:n].
func fenceable(ctx context.Context, f *xl.Fop) (ts [4]uint16, n int) {
	switch f.Op {
	case xl.OpStatfs, xl.OpIpc, xl.OpRelease, xl.OpReleasedir: // closing is cleanup
		return ts, 0
	}
	if _, ok := xl.CallFrom(ctx).Xdata[bypassKey]; ok {
		return ts, 0
	}
	if f.GFID == xl.RootGFID && f.Name == AnchorName {
		return ts, 0
	}
	for _, id := range [...]xl.GFID{f.Target(), f.GFID2} {
		if !id.IsZero() && !inAnchorFamily(id) {
			ts[n], n = TokenOf(id), n+1
		}
	}
	// An entry in the anchor names its inode first.
	if inAnchorFamily(f.GFID) || inAnchorFamily(f.GFID2) {
		for _, name := range [...]string{f.Name, f.Name2} {
			if id, _, _, ok := parseKey(name); ok {
				ts[n], n = TokenOf(id), n+1
			}
		}
	}
	return ts, n
}

func (g *Guard) refuses(ts []uint16) bool {
	for _, t := range ts {
		if g.fenced[t].Load() {
			return true
		}
	}
	return false
}

// idle ends a request that fenceable counted busy on ts[:n].
func (g *Guard) idle(ts [4]uint16, n int) {
	for _, t := range ts[:n] {
		if g.busy[t].Add(-1) == 0 && g.draining.Load() > 0 {
			g.wakeMu.Lock()
			if g.wake != nil {
				close(g.wake)
				g.wake = nil
			}
			g.wakeMu.Unlock()
		}
	}
}

// drain waits until no request counted busy on toks is left.
func (g *Guard) drain(ctx context.Context, toks []uint16) syscall.Errno {
	g.draining.Add(1)
	defer g.draining.Add(-1)
	for {
		// Taken before the counts are read: a request that goes idle
		// after the reading closes it.
		g.wakeMu.Lock()
		if g.wake == nil {
			g.wake = make(chan struct{})
		}
		wake := g.wake
		g.wakeMu.Unlock()
		if !slices.ContainsFunc(toks, func(t uint16) bool { return g.busy[t].Load() > 0 }) {
			return 0
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
}

func (g *Guard) setFence(ctx context.Context, toks []uint16, on bool) syscall.Errno {
	g.mu.Lock()
	defer g.mu.Unlock()
	want := new([Tokens]bool)
	for t := range want {
		want[t] = g.fenced[t].Load()
	}
	changed := false
	for _, t := range toks {
		if want[t] != on {
			want[t], changed = on, true
		}
	}
	if !changed {
		return 0
	}
	var runs []byte // start, end (inclusive) pairs of fenced tokens
	for t := 0; t < Tokens; t++ {
		if !want[t] {
			continue
		}
		r := t
		for r+1 < Tokens && want[r+1] {
			r++
		}
		runs = binary.BigEndian.AppendUint16(runs, uint16(t))
		runs = binary.BigEndian.AppendUint16(runs, uint16(r))
		t = r
	}
	// Persisted first: a fence the child refuses (a follower's) is not
	// one this guard keeps.
	root := asRoot(ctx)
	var e syscall.Errno
	if len(runs) == 0 {
		e = g.next.Removexattr(root, xl.RootGFID, fenceXattr)
		if e == syscall.ENODATA {
			e = 0
		}
	} else {
		e = g.next.Setxattr(root, xl.RootGFID, fenceXattr, runs, 0)
	}
	if e != 0 {
		g.log.Error("dht2: guard: persisting fences", "errno", e)
		return e
	}
	g.runs = runs
	g.set(want)
	return 0
}

// decodeRuns reads the persisted fences.
func decodeRuns(b []byte) []uint16 {
	var ts []uint16
	for i := 0; i+3 < len(b); i += 4 {
		for t := int(binary.BigEndian.Uint16(b[i:])); t <= int(binary.BigEndian.Uint16(b[i+2:])); t++ {
			ts = append(ts, uint16(t))
		}
	}
	return ts
}

func encodeTokens(ts []uint16) []byte {
	b := make([]byte, 0, 2*len(ts))
	for _, t := range ts {
		b = binary.BigEndian.AppendUint16(b, t)
	}
	return b
}

func decodeTokens(b []byte) []uint16 {
	ts := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		ts = append(ts, binary.BigEndian.Uint16(b[i:]))
	}
	return ts
}
