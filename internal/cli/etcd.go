package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"

	"github.com/gluon-fs/gluon/volume"
)

// defaultEtcd is where every command looks for etcd unless told otherwise;
// gluon up serves its dev etcd there when the port is free.
const defaultEtcd = "127.0.0.1:2379"

// etcdEndpoints returns the default endpoint list: $GLUON_ETCD if set.
func etcdEndpoints() []string {
	if s := os.Getenv("GLUON_ETCD"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{defaultEtcd}
}

// dialEtcd connects to etcd and checks that it answers, so that an
// unreachable etcd is a clear error rather than a hang.
func dialEtcd(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	cli, err := volume.Connect(ctx, endpoints)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w (start etcd, or run 'gluon up' for a dev cluster)", err)
	}
	return cli, nil
}

// devEtcd is the single-member etcd that gluon up runs in-process.
type devEtcd struct {
	e       *embed.Etcd
	url     string
	closing *atomic.Bool
}

// startDevEtcd starts etcd with its data in dir, serving clients on listen
// (host:port). If fallback is set and that port is taken, it picks a free
// port instead, so that a second dev cluster can run beside the first.
func startDevEtcd(dir, listen string, fallback bool, log *slog.Logger) (*devEtcd, error) {
	d, err := startEmbed(dir, listen, log)
	if err != nil && fallback && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(listen)
		log.Info("etcd port busy; picking a free one", "wanted", listen)
		d, err = startEmbed(dir, net.JoinHostPort(host, "0"), log)
	}
	return d, err
}

func startEmbed(dir, listen string, log *slog.Logger) (*devEtcd, error) {
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, fmt.Errorf("etcd listen address %q: %w", listen, err)
	}
	curl := url.URL{Scheme: "http", Host: listen}
	// A single member never dials its own peer URL, but etcd insists on
	// one; port 0 keeps it out of the way.
	purl := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg := embed.NewConfig()
	cfg.Name = "gluon-dev"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{curl}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls = []url.URL{purl}
	cfg.AdvertisePeerUrls = []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Below error, etcd logs advice for production clusters that a dev
	// member does not need.
	closing := new(atomic.Bool)
	lg := zapLogger(log.With("component", "etcd"), zapcore.ErrorLevel, closing)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	d := &devEtcd{e: e, closing: closing}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		d.Close()
		return nil, fmt.Errorf("start etcd: %w", err)
	case <-time.After(60 * time.Second):
		d.Close()
		return nil, errors.New("start etcd: not ready after 60s")
	}
	d.url = "http://" + e.Clients[0].Addr().String()
	return d, nil
}

// URL is the client URL, e.g. http://127.0.0.1:2379.
func (d *devEtcd) URL() string { return d.url }

// Err reports a fatal server error after start.
func (d *devEtcd) Err() <-chan error { return d.e.Err() }

func (d *devEtcd) Close() {
	d.closing.Store(true)
	d.e.Close()
}
