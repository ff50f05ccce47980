package systest

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/volume"
	protoclient "github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// The registers of the linearizability check: small blocks of one file,
// each holding a value repeated so that a torn read shows.
const (
	registers      = 4
	registerSize   = 64
	registerStride = 512
)

// regInput is a register operation: a write of value, or a read.
type regInput struct {
	reg   int
	write bool
	value uint64
}

// regOutput is what a read returned.
type regOutput struct{ value uint64 }

// registerModel is a register per block, initially 0 (never written).
// Writes whose outcome is unknown are given no return time, so they may
// take effect at any point after their call, or never be seen.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		parts := make([][]porcupine.Operation, registers)
		for _, op := range h {
			r := op.Input.(regInput).reg
			parts[r] = append(parts[r], op)
		}
		return parts
	},
	Init: func() any { return uint64(0) },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(uint64), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("write(r%d, %d)", in.reg, in.value)
		}
		return fmt.Sprintf("read(r%d) -> %d", in.reg, output.(regOutput).value)
	},
}

// history records register operations with call and return times.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// unknown counts writes whose outcome was not known.
	unknown atomic.Int64
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

// add records an operation called at call that returned at ret; a write
// that failed (e != 0) may still happen later, so it never returns.
func (h *history) add(client int, in regInput, out regOutput, call, ret int64, e syscall.Errno) {
	if e != 0 {
		if !in.write {
			return // a failed read saw nothing
		}
		h.unknown.Add(1)
		ret = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

// regData is what a write of v stores.
func regData(v uint64) []byte {
	b := make([]byte, registerSize)
	for i := 0; i < registerSize; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], v)
	}
	return b
}

// regValue decodes a read; ok is false for a torn block.
func regValue(b []byte) (uint64, bool) {
	b = append(b, make([]byte, registerSize-len(b))...) // past EOF: zeros
	v := binary.LittleEndian.Uint64(b)
	for i := 8; i < registerSize; i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != v {
			return 0, false
		}
	}
	return v, true
}

// regOp does one register operation through x and records it. It
// returns the errno and, for a successful read, whether the block was
// whole.
func regOp(ctx context.Context, h *history, x xl.Xlator, cl int, fd xl.Fd, in regInput) (syscall.Errno, bool) {
	off := int64(in.reg * registerStride)
	call := h.now()
	if in.write {
		n, e := x.Write(ctx, fd, regData(in.value), off)
		if e == 0 && n != registerSize {
			e = syscall.EIO
		}
		h.add(cl, in, regOutput{}, call, h.now(), e)
		return e, true
	}
	buf := make([]byte, registerSize)
	n, e := x.Read(ctx, fd, buf, off)
	ret := h.now()
	if e != 0 {
		return e, true
	}
	v, whole := regValue(buf[:n])
	if !whole {
		return 0, false
	}
	h.add(cl, in, regOutput{v}, call, ret, 0)
	return 0, true
}

// TestStaleLeader: the leader is SIGSTOPped past its lease, so another
// brick is elected, while two client graphs (three callers each) keep
// writing and reading small blocks; then the old leader is SIGCONTed.
// Requests reach it while it sleeps, straight through a protocol client
// of its own and from the client graphs that still routed to it, and it
// wakes up to them believing it leads. It must acknowledge none of them:
// every request sent straight to it after it was deposed fails, and the
// whole history of both graphs is linearizable per block (porcupine, a
// register model, writes of unknown outcome left open). The replicas
// then converge.
func TestStaleLeader(t *testing.T) {
	c := newCluster(t, map[string]string{
		volume.OptLeaseTTL: "1s", volume.OptRetryTimeout: "20s", volume.OptRequestTimeout: "2s",
		// Write-behind acknowledges a write before it leaves its client
		// graph, so the other graph may read the old value after that:
		// it gives close-to-open consistency, not linearizability across
		// clients, as in GlusterFS. This test checks the replicas.
		volume.OptWriteBehind: "off",
	})
	graphs := []*client.Volume{c.open(), c.open()}
	fd := newCaller(graphs[0].Top).create(t, "registers", syscall.O_RDWR)

	h := &history{start: time.Now()}
	var values atomic.Uint64       // every write stores a new value
	var acked, writes atomic.Int64 // successful operations, and writes, of the workers
	var torn atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const perGraph = 3
	for g, v := range graphs {
		for k := range perGraph {
			cl := g*perGraph + k
			w := newCaller(v.Top) // its own client id: ordered only after its own requests
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(cl), 1))
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Duration(r.IntN(10)) * time.Millisecond):
					}
					in := regInput{reg: r.IntN(registers)}
					if in.write = r.IntN(2) == 0; in.write {
						in.value = values.Add(1)
					}
					// A request stuck at the sleeping leader is given up on
					// (unknown outcome) so that the caller goes on.
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					e, whole := regOp(w.ctx(ctx), h, w.top, cl, fd, in)
					cancel()
					if !whole {
						torn.Add(1)
					}
					if e == 0 {
						acked.Add(1)
						if in.write {
							writes.Add(1)
						}
					}
				}
			})
		}
	}
	stopWorkers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWorkers()
	// progress waits for n more acknowledged operations, a third of them
	// writes.
	progress := func(what string, n int64) {
		t.Helper()
		base, wbase := acked.Load(), writes.Load()
		c.poll(what, func() (bool, string) {
			ops, ws := acked.Load()-base, writes.Load()-wbase
			return ops >= n && ws >= n/3, fmt.Sprintf("%d operations acknowledged, %d of them writes", ops, ws)
		})
	}
	progress("operations before the leader stops", 100)

	// A protocol client straight to the leader, connected now and patient
	// enough (ping timeout) to wait out the stop. The brick stopped must
	// be the one leading then: if an election moved the lead meanwhile (an
	// etcd stall on a loaded machine), it is woken and the new leader
	// taken instead.
	var (
		old     int
		term    uint64
		direct  *protoclient.Client
		probe   *caller
		stopped time.Time
	)
	for attempt := 1; ; attempt++ {
		old, term = c.leader(-1, 0)
		addr := c.addr(old)
		var err error
		direct, err = protoclient.New(protoclient.Options{
			Addr: addr, Volume: c.dirs[old], PingInterval: time.Second, PingTimeout: time.Minute,
			Logger: slog.New(slog.NewTextHandler(c.clog, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		probe = newCaller(direct)
		_, e := direct.Getattr(probe.ctx(context.Background()), xl.RootGFID)
		if e == 0 {
			stopped = time.Now()
			c.signal(old, syscall.SIGSTOP)
			if c.still(old, term) {
				break
			}
			c.signal(old, syscall.SIGCONT)
		}
		direct.Close()
		if attempt == 5 {
			t.Fatalf("direct client to brick %d at %s: %v; or it lost the lead before it was stopped", old, addr, e)
		}
		t.Logf("brick %d: getattr %v, or it lost the lead (term %d) before it was stopped; again", old, e, term)
	}
	defer direct.Close()
	leader, _ := c.leader(old, term)
	t.Logf("stopped leader brick %d; brick %d leads after %v", old, leader, time.Since(stopped).Round(time.Millisecond))

	// Deposed now, the sleeping brick is sent writes and reads of every
	// register; they wait in its socket. More follow once it wakes.
	type probeResult struct {
		in regInput
		e  syscall.Errno
	}
	var probes sync.WaitGroup
	results := make(chan probeResult, 4*registers)
	const probeClient = 2 * perGraph
	sendProbes := func() {
		for r := range registers {
			for _, write := range []bool{true, false} {
				in := regInput{reg: r, write: write}
				if write {
					in.value = values.Add(1)
				}
				probes.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), waitBound)
					defer cancel()
					e, _ := regOp(probe.ctx(ctx), h, direct, probeClient, fd, in)
					results <- probeResult{in, e}
				})
			}
		}
	}
	sendProbes()
	progress("operations while the old leader sleeps", 100)
	c.signal(old, syscall.SIGCONT)
	t.Logf("old leader brick %d woken after %v", old, time.Since(stopped).Round(time.Millisecond))
	sendProbes()
	probes.Wait()
	close(results)
	for p := range results {
		if p.e == 0 {
			t.Errorf("deposed brick %d acknowledged %+v", old, p.in)
		} else {
			t.Logf("deposed brick %d: %+v: %v", old, p.in, p.e)
		}
	}
	progress("operations after the old leader woke", 100)
	stopWorkers()

	c.converge()
	// The final value of every register, read once everything settled.
	final := newCaller(graphs[1].Top)
	for r := range registers {
		if e, _ := regOp(final.ctx(context.Background()), h, final.top, probeClient+1, fd, regInput{reg: r}); e != 0 {
			t.Errorf("final read of register %d: %v", r, e)
		}
	}
	if n := torn.Load(); n > 0 {
		t.Errorf("%d reads returned a torn block", n)
	}

	res, info := porcupine.CheckOperationsVerbose(registerModel, h.ops, time.Minute)
	t.Logf("history: %d operations, %d writes of unknown outcome; linearizability check: %s", len(h.ops), h.unknown.Load(), res)
	if res != porcupine.Ok {
		dir, err := os.MkdirTemp("", "systest-porcupine-")
		if err == nil {
			path := filepath.Join(dir, "history.html")
			if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
				t.Logf("visualization: %s", path)
			}
		}
		t.Errorf("the history is not linearizable (%s)", res)
	}
}
