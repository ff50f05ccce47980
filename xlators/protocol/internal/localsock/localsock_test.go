package localsock

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve shadows the TCP listener on addr with its local socket and echoes
// one line on each connection to either.
func serve(t *testing.T, addr string) (tcp, local net.Listener) {
	t.Helper()
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	local, err = Listen(tcp)
	if err != nil || local == nil {
		t.Fatalf("Listen(%v) = %v, %v; want a listener", tcp.Addr(), local, err)
	}
	t.Cleanup(func() { local.Close() })
	go func() {
		for {
			nc, err := local.Accept()
			if err != nil {
				return
			}
			io.Copy(nc, nc)
			nc.Close()
		}
	}()
	return tcp, local
}

func port(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }

func echo(t *testing.T, nc net.Conn) {
	t.Helper()
	defer nc.Close()
	if _, ok := nc.(*net.UnixConn); !ok {
		t.Fatalf("dialled a %T, want a unix connection", nc)
	}
	if _, err := nc.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil || string(b[:]) != "hi" {
		t.Fatalf("echo: %q, %v", b, err)
	}
}

func TestDialReachesTheServerOfTheTCPAddress(t *testing.T) {
	ctx := context.Background()
	specific, _ := serve(t, "127.0.0.1:0")
	wildcard, _ := serve(t, ":0")
	for _, addr := range []string{
		"127.0.0.1:" + port(specific),
		"127.0.0.1:" + port(wildcard),
		"localhost:" + port(wildcard),
	} {
		nc, err := Dial(ctx, addr)
		if err != nil || nc == nil {
			t.Fatalf("Dial(%s) = %v, %v; want the local socket", addr, nc, err)
		}
		echo(t, nc)
	}
}

func TestRemoteNamesALocalPeerByPid(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	local, err := Listen(tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for _, ln := range []net.Listener{tcp, local} {
		nc, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		want := nc.LocalAddr().String()
		if ln == local {
			want = "local pid " + strconv.Itoa(os.Getpid())
		}
		if got := Remote(sc); got != want {
			t.Errorf("Remote = %q, want %q", got, want)
		}
		nc.Close()
		sc.Close()
	}
}

func TestDialFallsBackToTCP(t *testing.T) {
	ctx := context.Background()
	// A TCP server without a local socket.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	// Another host's address (TEST-NET-1), and addresses that are none.
	for _, addr := range []string{"127.0.0.1:" + port(plain), "192.0.2.1:" + port(plain), "nonsense", "127.0.0.1:http"} {
		if nc, err := Dial(ctx, addr); nc != nil || err != nil {
			t.Errorf("Dial(%s) = %v, %v; want nothing, to dial TCP", addr, nc, err)
		}
	}
}

func TestListenIgnoresNonTCPListeners(t *testing.T) {
	ln, err := net.Listen("unix", "@gluon-localsock-test/"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if l, err := Listen(ln); l != nil || err != nil {
		t.Fatalf("Listen(unix) = %v, %v; want nothing", l, err)
	}
}

func TestListenRefusesATakenName(t *testing.T) {
	tcp, _ := serve(t, "127.0.0.1:0")
	if l, err := Listen(tcp); err == nil {
		l.Close()
		t.Fatal("a second local socket for one TCP listener")
	}
}

func TestDialDeclinesWhenTurnedOff(t *testing.T) {
	tcp, _ := serve(t, "127.0.0.1:0")
	t.Setenv(OffEnv, "off")
	if nc, err := Dial(context.Background(), "127.0.0.1:"+port(tcp)); nc != nil || err != nil {
		t.Fatalf("with %s=off, Dial = %v, %v; want nothing, to dial TCP", OffEnv, nc, err)
	}
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if l, err := Listen(other); l != nil || err != nil {
		t.Fatalf("with %s=off, Listen = %v, %v; want no socket", OffEnv, l, err)
	}
}

// A dual-stack wildcard listener (Go's ":port") shadows IPv4 and IPv6
// loopback dials alike, as TCP reaches it from both.
func TestDialNamesFollowTheFamily(t *testing.T) {
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	if got, want := names(v4, 7), []string{"@gluon-brick/127.0.0.1:7", "@gluon-brick/0.0.0.0:7", "@gluon-brick/[::]:7"}; !slices.Equal(got, want) {
		t.Errorf("names(%v) = %q, want %q", v4, got, want)
	}
	if got, want := names(v6, 7), []string{"@gluon-brick/[::1]:7", "@gluon-brick/[::]:7"}; !slices.Equal(got, want) {
		t.Errorf("names(%v) = %q, want %q", v6, got, want)
	}
}
