// Package localsock lets a protocol client on the same host as its server
// skip the TCP/IP stack: a server listening on TCP port P also listens on
// an abstract unix socket named after that port, and a client asked to
// dial host:P, where host is an address of this host, dials that socket
// first. The loopback TCP stack's send and receive paths were a fifth of
// the CPU of a brick's metadata-heavy run, and a small round trip costs
// about a third less CPU over a unix socket.
//
// Abstract unix sockets live in the network namespace, like TCP ports,
// and a name is bound only by a server holding its TCP port, which no
// other socket can hold meanwhile: a client reaches the server it would
// have reached over TCP. Since any local user may bind an abstract name
// (no file permissions guard it), the client also requires the server to
// run as root or as its own user (SO_PEERCRED). A connection made before
// its server opened the socket, or while the socket's name was taken, is
// a TCP one: every dial tries the socket again.
package localsock

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// name is the abstract socket of the server on TCP address ip:port; an
// unspecified ip (a wildcard listener) is written "*".
func name(ip netip.Addr, port int) string {
	host := "*"
	if ip.IsValid() && !ip.IsUnspecified() {
		host = ip.Unmap().String()
	}
	return "@gluon-brick/" + net.JoinHostPort(host, strconv.Itoa(port))
}

// Listen opens the unix listener that shadows the TCP listener ln. It
// returns nil when ln is no *net.TCPListener, and an error when the name
// is taken.
func Listen(ln net.Listener) (net.Listener, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, nil
	}
	ap := tl.Addr().(*net.TCPAddr).AddrPort()
	return net.Listen("unix", name(ap.Addr(), int(ap.Port())))
}

// OffEnv is the environment variable that, set to "off", makes Dial
// decline, so that every connection is TCP: to compare with a system
// whose local traffic crosses the loopback TCP stack, or to see a
// single-host volume's traffic as a multi-host one's (tcpdump -i lo).
const OffEnv = "GLUON_LOCAL_SOCKET"

// Dial connects to the unix socket of the server at the TCP address addr
// if addr is an address of this host and its server has one. It returns
// a nil net.Conn when it is not or has none, or the socket's owner is not
// trusted (then with an error saying so), or $GLUON_LOCAL_SOCKET is
// "off": the caller dials TCP instead.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	if os.Getenv(OffEnv) == "off" {
		return nil, nil
	}
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return nil, nil
	}
	ip, err := localIP(ctx, host)
	if err != nil || !ip.IsValid() {
		return nil, nil
	}
	var d net.Dialer
	for _, n := range []string{name(ip, int(port)), name(netip.Addr{}, int(port))} {
		nc, err := d.DialContext(ctx, "unix", n)
		if err != nil {
			continue
		}
		if err := trusted(nc.(*net.UnixConn)); err != nil {
			// TCP still reaches the right server.
			nc.Close()
			return nil, fmt.Errorf("local socket %s: %w", n[1:], err)
		}
		return nc, nil
	}
	return nil, nil
}

// localIP returns the address of host, if it is one of this host's.
func localIP(ctx context.Context, host string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return netip.Addr{}, err
		}
		// TCP would try the first one first.
		ip = ips[0]
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return ip, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return ip, nil
		}
	}
	return netip.Addr{}, nil
}

// trusted checks that the server runs as root or as us.
func trusted(nc *net.UnixConn) error {
	cred, err := peer(nc)
	if err != nil {
		return err
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("served by uid %d, neither root nor us", cred.Uid)
	}
	return nil
}

// Remote names the peer of a server's connection for its logs: its
// address, or for a local socket, whose peer has none, its pid.
func Remote(nc net.Conn) string {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return nc.RemoteAddr().String()
	}
	cred, err := peer(uc)
	if err != nil {
		return "local"
	}
	return "local pid " + strconv.Itoa(int(cred.Pid))
}

// peer returns the credentials of nc's peer process.
func peer(nc *net.UnixConn) (*unix.Ucred, error) {
	rc, err := nc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}
