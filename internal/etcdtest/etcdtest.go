// Package etcdtest runs an in-process, single-member etcd server: Start for
// tests, StartServer for a development cluster (gluon up). Both listen on
// free loopback ports, so concurrent runs never clash.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// readyTimeout bounds how long a fresh member may take to elect itself.
const readyTimeout = 30 * time.Second

// Embedded is a running in-process etcd member.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
}

// StartServer starts an etcd member that keeps its data in dir (created if
// missing; an existing data directory is reopened) and serves clients on a
// free 127.0.0.1 port, reported by Endpoints. etcd's own log goes to
// dir/etcd.log at warn level.
func StartServer(dir string) (*Embedded, error) {
	return start(dir, "warn", []string{filepath.Join(dir, "etcd.log")}, false)
}

// start starts a member; noFsync is for throwaway members only.
func start(dir, level string, logOutputs []string, noFsync bool) (*Embedded, error) {
	if dir == "" {
		return nil, errors.New("etcd: empty data directory")
	}
	cfg := embed.NewConfig()
	cfg.Name = "gluon"
	cfg.Dir = dir
	cfg.LogLevel = level
	cfg.LogOutputs = logOutputs
	cfg.UnsafeNoFsync = noFsync
	// Port 0: the kernel picks free ports. A single member never dials its
	// own peer URL, so advertising port 0 there is harmless.
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{loop}
	cfg.AdvertiseClientUrls = []url.URL{loop}
	cfg.ListenPeerUrls = []url.URL{loop}
	cfg.AdvertisePeerUrls = []url.URL{loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: start in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: start in %s: %w", dir, err)
	case <-time.After(readyTimeout):
		e.Close()
		return nil, fmt.Errorf("etcd: not ready after %v (data in %s)", readyTimeout, dir)
	}
	s := &Embedded{etcd: e}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, clientURL(l.Addr()))
	}
	return s, nil
}

func clientURL(a net.Addr) string {
	return "http://" + a.String()
}

// Endpoints returns the client URLs, for clientv3.Config.Endpoints or a
// brick's etcd list.
func (s *Embedded) Endpoints() []string {
	return append([]string(nil), s.endpoints...)
}

// Close stops the member and waits for its goroutines.
func (s *Embedded) Close() {
	s.etcd.Close()
}

// Start runs a fresh member in t.TempDir and returns a client connected to
// it. Cleanup closes the client, then the server. The member does not
// fsync: its data dies with the test anyway, and on a loaded machine a
// slow fsync holds up etcd's applies, and with them lease renewals, long
// enough to expire short leases (a brick's election lease of 1 s) that
// the test never meant to lose.
func Start(t testing.TB) *clientv3.Client {
	t.Helper()
	s, err := start(t.TempDir(), "fatal", []string{"stderr"}, true)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		s.Close()
	})
	// Fail here, not in the test body, if the member cannot serve.
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, "health"); err != nil {
		t.Fatalf("etcd at %s: %v", strings.Join(s.Endpoints(), ","), err)
	}
	return cli
}
