// Package localsock lets a protocol client on the same host as its server
// skip the TCP/IP stack: a server listening on TCP port P also listens on
// an abstract unix socket named after that port, and a client asked to
// dial host:P, where host is an address of this host, dials that socket
// first. The loopback TCP stack's send and receive paths were a fifth of
// the CPU of a brick's metadata-heavy run, and a small round trip costs
// about a third less CPU over a unix socket.
//
// Abstract unix sockets live in the network namespace, like TCP ports,
// but any local process may bind any name, and no file permissions guard
// one: the client requires the server to run as root or as its own user
// (SO_PEERCRED), and a name someone else holds leaves its clients on TCP.
// A connection made before its server opened the socket, or while the
// socket's name was taken, is a TCP one: every dial tries the socket
// again. The socket is not subject to netfilter or cgroup network rules
// that fence a brick's TCP port off from local users; where those are
// the access control, set GLUON_LOCAL_SOCKET=off for the brick.
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

// name is the abstract socket of the server on TCP address ip:port. A
// wildcard listener keeps its family's unspecified address ("0.0.0.0" or
// "::"), so that an IPv4 and an IPv6-only wildcard on one port do not
// share a name.
func name(ip netip.Addr, port int) string {
	return "@gluon-brick/" + netip.AddrPortFrom(ip.Unmap(), uint16(port)).String()
}

// Listen opens the unix listener that shadows the TCP listener ln. It
// returns nil when ln is no *net.TCPListener or $GLUON_LOCAL_SOCKET is
// "off", and an error when the name is taken.
func Listen(ln net.Listener) (net.Listener, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok || off() {
		return nil, nil
	}
	ap := tl.Addr().(*net.TCPAddr).AddrPort()
	return net.Listen("unix", name(ap.Addr(), int(ap.Port())))
}

// OffEnv is the environment variable that, set to "off", makes Listen
// open no socket and Dial decline, so that every connection the process
// serves or makes is TCP: to compare with a system whose local traffic
// crosses the loopback TCP stack, to see a single-host volume's traffic
// as a multi-host one's (tcpdump -i lo), or to keep a brick behind
// firewall rules.
const OffEnv = "GLUON_LOCAL_SOCKET"

func off() bool { return os.Getenv(OffEnv) == "off" }

// Dial connects to the unix socket of the server at the TCP address addr
// if addr is an address of this host and its server has one. It returns
// a nil net.Conn when it is not or has none, or the socket's owner is not
// trusted (then with an error saying so), or $GLUON_LOCAL_SOCKET is
// "off": the caller dials TCP instead.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	if off() {
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
	var distrust error
	for _, n := range names(ip, int(port)) {
		nc, err := d.DialContext(ctx, "unix", n)
		if err != nil {
			continue
		}
		if err := trusted(nc.(*net.UnixConn)); err != nil {
			// Perhaps a squatter: a wildcard listener may still be ours,
			// and TCP still reaches the right server.
			nc.Close()
			if distrust == nil {
				distrust = fmt.Errorf("local socket %s: %w", n[1:], err)
			}
			continue
		}
		return nc, nil
	}
	return nil, distrust
}

// names are the sockets that may shadow ip:port, in the order TCP would
// reach their listeners: ip's own, its family's wildcard, and for IPv4
// the dual-stack IPv6 wildcard (Go's ":port").
func names(ip netip.Addr, port int) []string {
	if ip.Is4() {
		return []string{name(ip, port), name(netip.IPv4Unspecified(), port), name(netip.IPv6Unspecified(), port)}
	}
	return []string{name(ip, port), name(netip.IPv6Unspecified(), port)}
}

// localIP returns the address of host, if it is one of this host's. Only
// IP literals and "localhost" are looked at: resolving other names here
// would double the DNS lookups of every dial, local or not.
func localIP(ctx context.Context, host string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		if host != "localhost" {
			return netip.Addr{}, nil
		}
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
