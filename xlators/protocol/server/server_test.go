package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gluon-fs/gluon/xlators/memfs"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/probe"
	"github.com/gluon-fs/gluon/xlators/protocol/internal/testlog"
	"github.com/gluon-fs/gluon/xlators/protocol/server"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const maxFrame = 1 << 20

func start(t *testing.T, top xl.Xlator) (*server.Server, string, *testlog.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger, log := testlog.New(t)
	srv := server.New(top, server.Options{Volume: "vol0", Logger: logger, MaxFrame: maxFrame})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String(), log
}

// raw is a hand-driven client connection.
type raw struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *raw {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// Bounds a test against a server that fails to answer or to hang up.
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &raw{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *raw) send(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) read() (wire.Header, []byte, error) {
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(r.br, hb[:]); err != nil {
		return wire.Header{}, nil, err
	}
	h, err := wire.ParseHeader(hb[:], wire.DefaultMaxFrame)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Len)
	_, err = io.ReadFull(r.br, p)
	return h, p, err
}

func (r *raw) hello(h wire.Hello) wire.Welcome {
	r.t.Helper()
	r.send(wire.AppendHello(nil, 1, &h))
	hd, p, err := r.read()
	if err != nil || hd.Type != wire.TypeHandshake {
		r.t.Fatalf("handshake answer: %+v, %v", hd, err)
	}
	var w wire.Welcome
	if err := wire.DecodeWelcome(p, &w); err != nil {
		r.t.Fatal(err)
	}
	return w
}

func goodHello() wire.Hello {
	return wire.Hello{Version: wire.Version, Volume: "vol0", MaxFrame: wire.DefaultMaxFrame, PingTimeout: 10 * time.Second}
}

// expectHangup checks that the server closed the connection.
func (r *raw) expectHangup() {
	r.t.Helper()
	for {
		h, _, err := r.read()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r.t.Fatal("server kept the connection open")
		}
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if h.Type != wire.TypePong {
			r.t.Fatalf("unexpected %v frame", h.Type)
		}
	}
}

func request(id uint64, f *xl.Fop) []byte {
	return append(wire.AppendRequest(nil, id, &xl.Call{}, f), f.Data...)
}

// A broken or hostile frame costs only the connection that sent it: the
// server logs why, with the peer's address, and serves everyone else.
func TestMalformedFrameDropsOnlyItsConnection(t *testing.T) {
	_, addr, log := start(t, memfs.New(memfs.Options{}))
	clog, cbuf := testlog.New(t)
	good, err := client.New(client.Options{Addr: addr, Volume: "vol0", Logger: clog})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()

	header := func(typ wire.Type, ln, dlen uint32) []byte {
		return wire.AppendHeader(nil, wire.Header{Type: typ, ID: 5, Len: ln, DataLen: dlen})
	}
	getattr := request(3, &xl.Fop{Op: xl.OpGetattr, GFID: xl.RootGFID})
	unknownOp := append([]byte{}, getattr...)
	unknownOp[wire.HeaderSize+1] = 200 // the op byte, after an empty call's mask
	garbage := append(header(wire.TypeRequest, 8, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	badMagic := append([]byte{}, getattr...)
	badMagic[0] = 'X'
	// The flag that says the data section holds xdata values (kept by
	// the request, so never read into a recycled buffer) must match the
	// metadata, both ways.
	write := request(6, &xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID}, Data: []byte("abc")})
	binary.LittleEndian.PutUint16(write[6:], wire.FlagXdataData)
	ipc := &xl.Fop{Op: xl.OpIpc, Name: "x", Xdata: xl.Xdata{"v": make([]byte, wire.OutOfLine)}}
	unflagged := append(wire.AppendRequest(nil, 7, &xl.Call{}, ipc), ipc.Xdata["v"]...)
	binary.LittleEndian.PutUint16(unflagged[6:], 0)
	cases := []struct {
		name, frame, reason string
		skipHello           bool
	}{
		{"bad magic", string(badMagic), "bad magic", false},
		{"unknown type", string(header(77, 0, 0)), "unknown frame type", false},
		{"over max frame", string(header(wire.TypeRequest, maxFrame+1, 0)), "exceeds limit", false},
		{"huge length", string(header(wire.TypeRequest, 0xffffffff, 0)), "exceeds limit", false},
		{"truncated", string(header(wire.TypeRequest, 100, 0)) + "short", "mid-frame", false},
		{"garbage payload", string(garbage), "malformed", false},
		{"unknown op", string(unknownOp), "unknown op 200", false},
		{"write data flagged as xdata", string(write), "flagged as xdata true", false},
		{"xdata section unflagged", string(unflagged), "flagged as xdata false", false},
		{"reply from a client", string(header(wire.TypeReply, 0, 0)), "unexpected reply", false},
		{"second handshake", string(wire.AppendHello(nil, 2, &wire.Hello{Version: wire.Version, Volume: "vol0"})), "unexpected handshake", false},
		{"request before handshake", string(getattr), "expected a handshake", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dial(t, addr)
			if !tc.skipHello {
				if w := r.hello(goodHello()); w.Errno != 0 {
					t.Fatalf("welcome %+v", w)
				}
			}
			r.send([]byte(tc.frame))
			if tc.name == "truncated" {
				r.nc.(*net.TCPConn).CloseWrite()
			}
			r.expectHangup()
			waitLog(t, log, "WARN", "remote="+r.nc.LocalAddr().String(), tc.reason)
			if _, e := good.Getattr(context.Background(), xl.RootGFID); e != 0 {
				t.Fatalf("the other connection failed: %v", e)
			}
		})
	}
	if cbuf.Contains("connection lost") {
		t.Error("the well-behaved client lost its connection")
	}
}

func waitLog(t *testing.T, log *testlog.Buffer, parts ...string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !log.Contains(parts...); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", parts)
		}
	}
}

func TestHandshakeRejections(t *testing.T) {
	_, addr, log := start(t, memfs.New(memfs.Options{}))
	wrongVolume := goodHello()
	wrongVolume.Volume = "other"
	newer := goodHello()
	newer.Version = wire.Version + 1
	tiny := goodHello()
	tiny.MaxFrame = 100
	for name, tc := range map[string]struct {
		h      wire.Hello
		errno  syscall.Errno
		reason string
	}{
		"volume":    {wrongVolume, syscall.ENOENT, "is not served here"},
		"version":   {newer, syscall.EPROTONOSUPPORT, fmt.Sprintf("version %d not supported", wire.Version+1)},
		"max frame": {tiny, syscall.EINVAL, "below the minimum"},
	} {
		t.Run(name, func(t *testing.T) {
			r := dial(t, addr)
			w := r.hello(tc.h)
			if w.Errno != tc.errno || !strings.Contains(w.Reason, tc.reason) {
				t.Fatalf("welcome %+v, want errno %v, reason %q", w, tc.errno, tc.reason)
			}
			r.expectHangup()
			waitLog(t, log, "WARN", "handshake rejected", tc.reason, "remote="+r.nc.LocalAddr().String())
		})
	}

	// A client of another version may lay out its hello differently; the
	// header's version alone earns it a clear answer.
	r := dial(t, addr)
	h := goodHello()
	frame := wire.AppendHello(nil, 1, &h)
	frame[4] = wire.Version + 1
	r.send(frame)
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(r.br, hb[:]); err != nil {
		t.Fatal(err)
	}
	hd, err := wire.ParseHeader(hb[:], wire.MinMaxFrame)
	if err != nil || hd.Type != wire.TypeHandshake {
		t.Fatalf("answer header %+v, %v", hd, err)
	}
	p := make([]byte, hd.Len)
	io.ReadFull(r.br, p)
	var w wire.Welcome
	if err := wire.DecodeWelcome(p, &w); err != nil || w.Errno != syscall.EPROTONOSUPPORT {
		t.Fatalf("welcome %+v, %v", w, err)
	}
}

// Replies go out as requests finish, not in arrival order: a request
// parked in the leaf does not hold back the one behind it.
func TestRepliesOutOfOrder(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	_, addr, _ := start(t, pb)
	r := dial(t, addr)
	r.hello(goodHello())
	var batch []byte
	batch = append(batch, request(1, &xl.Fop{Op: xl.OpIpc, Name: string(probe.IpcBlock)})...)
	batch = append(batch, request(2, &xl.Fop{Op: xl.OpGetattr, GFID: xl.RootGFID})...)
	batch = append(batch, wire.AppendHeader(nil, wire.Header{Type: wire.TypePing})...)
	r.send(batch)
	<-pb.Blocked
	gotReply, gotPong := false, false
	for !gotReply || !gotPong {
		h, p, err := r.read()
		if err != nil {
			t.Fatal(err)
		}
		switch h.Type {
		case wire.TypePong:
			gotPong = true
		case wire.TypeReply:
			if h.ID != 2 {
				t.Fatalf("reply to %d before the getattr's", h.ID)
			}
			var res xl.Result
			if err := wire.DecodeResult(p[:h.MetaLen()], p[h.MetaLen():], &res); err != nil || res.Errno != 0 || res.Attr.GFID != xl.RootGFID {
				t.Fatalf("getattr reply %+v, %v", res, err)
			}
			gotReply = true
		}
	}
}

func TestSilentClientIsDropped(t *testing.T) {
	_, addr, log := start(t, memfs.New(memfs.Options{}))
	r := dial(t, addr)
	h := goodHello()
	h.PingTimeout = 50 * time.Millisecond
	r.hello(h)
	r.expectHangup()
	waitLog(t, log, "WARN", "went silent", "remote="+r.nc.LocalAddr().String())
}

func TestCloseCancelsInFlightRequests(t *testing.T) {
	pb := probe.New(memfs.New(memfs.Options{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(pb, server.Options{Volume: "vol0"})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	r := dial(t, ln.Addr().String())
	r.hello(goodHello())
	r.send(request(1, &xl.Fop{Op: xl.OpIpc, Name: string(probe.IpcBlock)}))
	<-pb.Blocked
	// Close returns only once the parked handler saw its ctx cancelled.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v, want nil after Close", err)
	}
	r.expectHangup()

	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln2); err != nil {
		t.Fatalf("Serve after Close = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", ln2.Addr().String()); err == nil {
		t.Error("Serve after Close left the listener open")
	}
}

// The limits in the header hold even for lengths that would not fit the
// server's memory.
func TestHugeDataLengthIsRefused(t *testing.T) {
	_, addr, log := start(t, memfs.New(memfs.Options{}))
	r := dial(t, addr)
	r.hello(goodHello())
	b := wire.AppendHeader(nil, wire.Header{Type: wire.TypeRequest, ID: 1, Len: 10})
	binary.LittleEndian.PutUint32(b[20:], 0xfffffff0)
	r.send(b)
	r.expectHangup()
	waitLog(t, log, "WARN", "data section")
}

// A reply bigger than the client said it accepts becomes EIO instead of
// a frame the client would have to drop its connection over.
func TestReplyTooLargeForClient(t *testing.T) {
	fs := memfs.New(memfs.Options{})
	_, addr, log := start(t, fs)
	ctx := context.Background()
	g := xl.NewGFID()
	fd, _, e := fs.Create(ctx, xl.RootGFID, "f", g, syscall.O_RDWR, 0o644)
	if e != 0 {
		t.Fatal(e)
	}
	fs.Write(ctx, fd, make([]byte, 2*wire.MinMaxFrame), 0)

	r := dial(t, addr)
	h := goodHello()
	h.MaxFrame = wire.MinMaxFrame
	r.hello(h)
	r.send(request(1, &xl.Fop{Op: xl.OpRead, Fd: fd, Len: 2 * wire.MinMaxFrame}))
	r.send(request(2, &xl.Fop{Op: xl.OpRead, Fd: fd, Len: 100}))
	got := map[uint64]xl.Result{}
	for len(got) < 2 {
		hd, p, err := r.read()
		if err != nil {
			t.Fatal(err)
		}
		var res xl.Result
		if err := wire.DecodeResult(p[:hd.MetaLen()], p[hd.MetaLen():], &res); err != nil {
			t.Fatal(err)
		}
		got[hd.ID] = res
	}
	if big := got[1]; big.Errno != syscall.EIO || len(big.Data) != 0 {
		t.Errorf("oversized reply: %v with %d bytes, want EIO", big.Errno, len(big.Data))
	}
	if small := got[2]; small.Errno != 0 || len(small.Data) != 100 {
		t.Errorf("small reply: %v with %d bytes", small.Errno, len(small.Data))
	}
	waitLog(t, log, "WARN", "reply too large")
}
