package volfile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/xlators/access"
	"github.com/gluon-fs/gluon/xlators/posix"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Registry maps a translator type to its constructor. A constructor checks
// its children and options (CheckOptions) and returns a clear error for
// anything it does not accept.
type Registry map[string]func(children []xl.Xlator, opts map[string]string) (xl.Xlator, error)

// CheckOptions returns an error naming the first key of opts (in sorted
// order) that is not in accepted, or the first key of required that is
// missing.
func CheckOptions(opts map[string]string, accepted, required []string) error {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(accepted, k) {
			if len(accepted) == 0 {
				return fmt.Errorf("unknown option %q (this translator takes none)", k)
			}
			return fmt.Errorf("unknown option %q (known: %v)", k, accepted)
		}
	}
	for _, k := range required {
		if _, ok := opts[k]; !ok {
			return fmt.Errorf("missing option %q", k)
		}
	}
	return nil
}

// Build constructs g bottom-up with the constructors in reg and returns
// its top. closeAll closes every translator that has a Close method, top
// down, and may be called more than once. On error, whatever was built is
// closed already.
func Build(ctx context.Context, g *Graph, reg Registry) (top xl.Xlator, closeAll func() error, err error) {
	if err := g.Validate(); err != nil {
		return nil, nil, err
	}
	built := make(map[string]xl.Xlator, len(g.Nodes))
	var closers []xl.Lifecycle
	var once sync.Once
	var closeErr error
	closeAll = func() error {
		once.Do(func() {
			var errs []error
			for _, c := range slices.Backward(closers) {
				errs = append(errs, c.Close())
			}
			closeErr = errors.Join(errs...)
		})
		return closeErr
	}
	for _, n := range g.Nodes {
		if err := ctx.Err(); err != nil {
			closeAll()
			return nil, nil, err
		}
		x, err := buildNode(n, built, reg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		built[n.Name] = x
		if c, ok := x.(xl.Lifecycle); ok {
			closers = append(closers, c)
		}
		top = x
	}
	return top, closeAll, nil
}

func buildNode(n *Node, built map[string]xl.Xlator, reg Registry) (xl.Xlator, error) {
	where := fmt.Sprintf("volume %q (%s)", n.Name, n.Type)
	if n.Line > 0 {
		where = fmt.Sprintf("line %d: %s", n.Line, where)
	}
	mk, ok := reg[n.Type]
	if !ok {
		return nil, fmt.Errorf("volfile: %s: unknown translator type", where)
	}
	children := make([]xl.Xlator, len(n.Subvolumes))
	for i, c := range n.Subvolumes {
		children[i] = built[c] // Validate saw every child defined first
	}
	x, err := mk(children, n.OptionMap())
	if err != nil {
		return nil, fmt.Errorf("volfile: %s: %w", where, err)
	}
	if x == nil {
		return nil, fmt.Errorf("volfile: %s: constructor returned no translator", where)
	}
	return x, nil
}

// Env is what a graph's translators need from the process that builds
// them, beyond their options: things a volfile cannot carry.
type Env struct {
	// Logger is every translator's logger; nil means slog.Default().
	Logger *slog.Logger
	// Etcd reaches the cluster's etcd: JBR elections and leader watches,
	// and the brick registrations that give protocol/client a brick's
	// port. Translators that need it refuse to build without it.
	Etcd *clientv3.Client
	// Metrics, if set, receives the translators' metrics.
	Metrics prometheus.Registerer
}

// DefaultRegistry returns constructors for the translators gluon has:
//
//	storage/posix       no children; option directory PATH (required)
//	features/access     one child; no options
//	features/fdl        one child; options journal DIR (required),
//	                    sync-directory DIR (the store's directory, synced
//	                    at checkpoints)
//	cluster/jbr-server  the local store, then the other bricks of the set
//	                    in brick order; see jbrServerOptions
//	cluster/jbr-client  the bricks of one replica set in order; options
//	                    volume, set (required), retry-timeout
//	protocol/client     no children; options remote-host and
//	                    remote-subvolume (required), remote-port (else the
//	                    port comes from the brick's registration in etcd,
//	                    for bricks of option volume), ping-interval,
//	                    ping-timeout, dial-timeout
//	cluster/dht2        the volume's replica sets in order; option volume
//	                    (required: its layout is read from etcd and
//	                    watched), scrub-interval (take turns with the
//	                    volume's other clients at the background scrub,
//	                    claimed in etcd; 0 or absent: none), scrub-grace
//	                    (the age of leftovers it removes; default 1m)
//	cluster/dht2-guard  one child; no options
//	performance/write-behind one child; option window-size BYTES (per
//	                    file; default 1 MiB)
//
// Durations are whole seconds or Go durations such as 500ms. The
// protocol/server is not here: a brick builds the graph below it and
// serves that (see package brick).
func DefaultRegistry(env Env) Registry {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	logger := env.Logger
	return Registry{
		TypePosix: func(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
			if err := leaf(children); err != nil {
				return nil, err
			}
			if err := CheckOptions(opts, []string{"directory"}, []string{"directory"}); err != nil {
				return nil, err
			}
			st, err := posix.New(opts["directory"], posix.Options{Logger: logger})
			if err != nil {
				return nil, err
			}
			return st, nil
		},
		TypeAccess: func(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
			if len(children) != 1 {
				return nil, fmt.Errorf("wants one subvolume, has %d", len(children))
			}
			if err := CheckOptions(opts, nil, nil); err != nil {
				return nil, err
			}
			a, err := access.New(children[0], access.Options{Logger: logger})
			if err != nil {
				return nil, err
			}
			return a, nil
		},
		TypeFDL:         env.fdl,
		TypeJBRServer:   env.jbrServer,
		TypeJBRClient:   env.jbrClient,
		TypeClient:      env.protocolClient,
		TypeDHT2:        env.dht2,
		TypeDHT2Guard:   env.dht2Guard,
		TypeWriteBehind: env.writeBehind,
	}
}

func leaf(children []xl.Xlator) error {
	if len(children) != 0 {
		return fmt.Errorf("takes no subvolumes, has %d", len(children))
	}
	return nil
}

// duration reads GlusterFS-style whole seconds ("42") or a Go duration.
func duration(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n > 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want seconds or a positive duration such as 500ms", s)
	}
	return d, nil
}
