package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

// debugFlags are --metrics and --pprof, shared by the daemons.
type debugFlags struct {
	metrics string
	pprof   string
	reg     *prometheus.Registry // set by serve when metrics are served
}

// registerer is where the process's translators register their metrics:
// nil unless serve is serving them.
func (d *debugFlags) registerer() prometheus.Registerer {
	if d.reg == nil {
		return nil
	}
	return d.reg
}

func (d *debugFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&d.metrics, "metrics", "",
		"serve Prometheus metrics on `ADDR` (host defaults to 127.0.0.1; off unless given)")
	cmd.Flags().StringVar(&d.pprof, "pprof", "",
		"serve net/http/pprof on loopback `ADDR`, e.g. 127.0.0.1:6060 (off unless given)")
}

// check validates the addresses before anything starts.
func (d *debugFlags) check() error {
	if d.metrics != "" {
		addr, err := loopbackDefault(d.metrics)
		if err != nil {
			return usagef("--metrics: %v", err)
		}
		d.metrics = addr
	}
	if d.pprof != "" {
		addr, err := loopbackDefault(d.pprof)
		if err != nil {
			return usagef("--pprof: %v", err)
		}
		// Profiles expose memory contents: never off the machine.
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return usagef("--pprof %s: must be a loopback address", d.pprof)
		}
		d.pprof = addr
	}
	return nil
}

// loopbackDefault fills in 127.0.0.1 for a bare ":PORT" or "PORT".
func loopbackDefault(addr string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("%q: want [HOST]:PORT", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// serve starts the requested debug servers. The returned stop function
// shuts them down; it must be called.
func (d *debugFlags) serve(log *slog.Logger, role string) (stop func(), err error) {
	var servers []*http.Server
	stop = func() {
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.Shutdown(ctx)
			cancel()
		}
	}
	start := func(name, addr string, h http.Handler) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		go func() {
			if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				log.Error(name+" server failed", "err", err)
			}
		}()
		log.Info("serving "+name, "addr", l.Addr().String())
		return nil
	}
	if d.metrics != "" {
		mux := http.NewServeMux()
		d.reg = newRegistry(role)
		mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
		if err := start("metrics", d.metrics, mux); err != nil {
			stop()
			return nil, err
		}
	}
	if d.pprof != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if err := start("pprof", d.pprof, mux); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// newRegistry is gluon's own registry: only our metrics, not whatever
// libraries put in the global one.
func newRegistry(role string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gluon_build_info",
			Help: "Always 1; labels describe the running gluon build.",
			ConstLabels: prometheus.Labels{
				"version":   Version,
				"goversion": runtime.Version(),
				"role":      role,
			},
		}, func() float64 { return 1 }),
	)
	return reg
}
