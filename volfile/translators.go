package volfile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/gluon-fs/gluon/volume"
	"github.com/gluon-fs/gluon/xlators/fdl"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	jbrclient "github.com/gluon-fs/gluon/xlators/jbr-client"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	writebehind "github.com/gluon-fs/gluon/xlators/write-behind"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// fdl builds features/fdl over its one child: it opens the journal, and
// closes it after the translator.
func (env Env) fdl(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if len(children) != 1 {
		return nil, fmt.Errorf("wants one subvolume, has %d", len(children))
	}
	if err := CheckOptions(opts, []string{"journal", "sync-directory"}, []string{"journal"}); err != nil {
		return nil, err
	}
	j, err := journal.Open(opts["journal"], journal.Options{Logger: env.Logger})
	if err != nil {
		return nil, err
	}
	o := fdl.Options{Logger: env.Logger}
	if d := opts["sync-directory"]; d != "" {
		o.Sync = fdl.SyncDir(d)
	}
	f, err := fdl.New(children[0], j, o)
	if err != nil {
		j.Close()
		return nil, err
	}
	return &fdlXl{FDL: f, j: j}, nil
}

type fdlXl struct {
	*fdl.FDL
	j *journal.Journal
}

func (f *fdlXl) Close() error { return errors.Join(f.FDL.Close(), f.j.Close()) }

// jbrServerOptions are cluster/jbr-server's options. volume, set, self
// (the brick's place in its set) and replicas name the replica set; the
// journal directory is required. quorum (default a majority),
// consistency, request-timeout, lease-ttl (the election's etcd lease)
// and lease-duration (read leases; 0 for none) come from the volume's
// jbr.* options; sync-directory is the store's
// directory, synced at checkpoints.
var jbrServerOptions = []string{"volume", "set", "self", "replicas", "journal", "sync-directory",
	"quorum", "consistency", "request-timeout", "lease-ttl", "lease-duration", "journal-max-size"}

// jbrServer builds cluster/jbr-server: it opens the journal and campaigns
// for leadership in etcd, and stops both after the translator.
func (env Env) jbrServer(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if err := CheckOptions(opts, jbrServerOptions, []string{"volume", "set", "self", "replicas", "journal"}); err != nil {
		return nil, err
	}
	ints := map[string]int{}
	for _, k := range []string{"set", "self", "replicas", "quorum"} {
		v, ok := opts[k]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("option %s %q: want a count from 0", k, v)
		}
		ints[k] = n
	}
	replicas, self := ints["replicas"], ints["self"]
	if replicas < 1 || self >= replicas {
		return nil, fmt.Errorf("options self %d and replicas %d: want 0 <= self < replicas", self, replicas)
	}
	if len(children) != replicas {
		return nil, fmt.Errorf("wants %d subvolumes (the local store, then the other %d bricks of the set), has %d",
			replicas, replicas-1, len(children))
	}
	o := jbrserver.Options{
		Volume: opts["volume"], Set: ints["set"], Self: self, Replicas: replicas, Quorum: ints["quorum"],
		Peers: map[int]xl.Xlator{}, Consistency: opts["consistency"], Logger: env.Logger, Metrics: env.Metrics,
	}
	var leaseTTL time.Duration
	for key, d := range map[string]*time.Duration{"request-timeout": &o.RequestTimeout, "lease-ttl": &leaseTTL} {
		if v, ok := opts[key]; ok {
			var err error
			if *d, err = duration(v); err != nil {
				return nil, fmt.Errorf("option %s: %v", key, err)
			}
		}
	}
	if v, ok := opts["lease-duration"]; ok {
		d, err := volume.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("option lease-duration: %q: want seconds or a duration, 0 for none", v)
		}
		o.LeaseDuration = d
		if d == 0 {
			o.LeaseDuration = -1 // the option's 0 is "no leases", jbrserver's is "default"
		}
	}
	if d := opts["sync-directory"]; d != "" {
		o.Sync = fdl.SyncDir(d)
	}
	k := 1
	for i := range replicas {
		if i != self {
			o.Peers[i] = children[k]
			k++
		}
	}
	if env.Etcd == nil {
		return nil, errors.New("needs etcd for its leader election")
	}
	jo := journal.Options{Logger: env.Logger}
	if v, ok := opts["journal-max-size"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("option journal-max-size %q: want a count of bytes from 0", v)
		}
		// The journal is pruned a segment at a time: several fit.
		o.JournalMaxBytes, jo.SegmentSize = n, min(journal.DefaultSegmentSize, max(n/4, 1<<20))
	}
	j, err := journal.Open(opts["journal"], jo)
	if err != nil {
		return nil, err
	}
	camp, err := election.Start(env.Etcd, election.Key(o.Volume, o.Set), self, election.Options{TTL: leaseTTL, Logger: env.Logger})
	if err != nil {
		j.Close()
		return nil, err
	}
	o.Journal, o.Elector = j, camp
	srv, err := jbrserver.New(children[0], o)
	if err != nil {
		camp.Close()
		j.Close()
		return nil, err
	}
	return &jbrServerXl{Server: srv, camp: camp, j: j, log: env.Logger}, nil
}

type jbrServerXl struct {
	*jbrserver.Server
	camp *election.Campaign
	j    *journal.Journal
	log  *slog.Logger
}

// Close leaves the election first, so that another brick can take over
// while this one finishes, then stops the server and closes the journal.
func (s *jbrServerXl) Close() error {
	return errors.Join(closeBounded(s.log, "jbr election", s.camp.Close), s.Server.Close(), s.j.Close())
}

// etcdCloseTimeout bounds the wait for a Close that talks to etcd.
const etcdCloseTimeout = 10 * time.Second

// closeBounded calls close, but stops waiting for it after
// etcdCloseTimeout: a campaign resigning, or a watch ending, waits on etcd,
// which may be unreachable or stuck. Such a close finishes by itself once
// the graph's owner closes its etcd client; a graph's teardown must not
// hang on it meanwhile.
func closeBounded(log *slog.Logger, what string, close func() error) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	t := time.NewTimer(etcdCloseTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		log.Warn(what+": still closing, waiting on etcd; leaving it to end with the etcd client", "after", etcdCloseTimeout)
		return nil
	}
}

// jbrClient builds cluster/jbr-client over the bricks of one replica
// set. With etcd it follows the set's election; without, it finds the
// leader by asking the bricks.
func (env Env) jbrClient(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if err := CheckOptions(opts, []string{"volume", "set", "retry-timeout"}, []string{"volume", "set"}); err != nil {
		return nil, err
	}
	set, err := strconv.Atoi(opts["set"])
	if err != nil || set < 0 {
		return nil, fmt.Errorf("option set %q: want a replica set number from 0", opts["set"])
	}
	if err := volume.ValidName(opts["volume"]); err != nil {
		return nil, fmt.Errorf("option volume: %w", err)
	}
	o := jbrclient.Options{Logger: env.Logger}
	if v, ok := opts["retry-timeout"]; ok {
		if o.RetryTimeout, err = duration(v); err != nil {
			return nil, fmt.Errorf("option retry-timeout: %v", err)
		}
	}
	var watch *jbrclient.EtcdLeader
	if env.Etcd != nil {
		if watch, err = jbrclient.WatchEtcd(context.Background(), env.Etcd, election.Key(opts["volume"], set), env.Logger); err != nil {
			return nil, err
		}
		o.Leaders = watch
	}
	c, err := jbrclient.New(children, o)
	if err != nil {
		if watch != nil {
			watch.Close()
		}
		return nil, err
	}
	return &jbrClientXl{Client: c, watch: watch, log: env.Logger}, nil
}

type jbrClientXl struct {
	*jbrclient.Client
	watch *jbrclient.EtcdLeader // nil without etcd
	log   *slog.Logger
}

func (c *jbrClientXl) Close() error {
	err := c.Client.Close()
	if c.watch != nil {
		err = errors.Join(err, closeBounded(c.log, "jbr leader watch", c.watch.Close))
	}
	return err
}

// Defaults of protocol/client's timeouts, filled in here so that a
// client whose port comes from etcd is checked when the graph is built,
// before it knows where to connect.
const (
	defaultPingInterval = 2 * time.Second
	defaultPingTimeout  = 10 * time.Second
	defaultDialTimeout  = 5 * time.Second
)

// protocolClient builds protocol/client: connected to remote-port if
// given, else to wherever the brick is registered in etcd.
func (env Env) protocolClient(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if err := leaf(children); err != nil {
		return nil, err
	}
	if err := CheckOptions(opts,
		[]string{"remote-host", "remote-port", "remote-subvolume", "volume", "ping-interval", "ping-timeout", "dial-timeout"},
		[]string{"remote-host", "remote-subvolume"}); err != nil {
		return nil, err
	}
	o := client.Options{
		Volume:       opts["remote-subvolume"],
		Logger:       env.Logger,
		PingInterval: defaultPingInterval,
		PingTimeout:  defaultPingTimeout,
		DialTimeout:  defaultDialTimeout,
	}
	for key, d := range map[string]*time.Duration{"ping-interval": &o.PingInterval, "ping-timeout": &o.PingTimeout, "dial-timeout": &o.DialTimeout} {
		if v, ok := opts[key]; ok {
			var err error
			if *d, err = duration(v); err != nil {
				return nil, fmt.Errorf("option %s: %v", key, err)
			}
		}
	}
	if o.PingTimeout <= o.PingInterval {
		return nil, fmt.Errorf("ping timeout %v must exceed ping interval %v", o.PingTimeout, o.PingInterval)
	}
	if p, ok := opts["remote-port"]; ok {
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("option remote-port %q: want a port number 1-65535", p)
		}
		o.Addr = net.JoinHostPort(opts["remote-host"], strconv.Itoa(int(port)))
		c, err := client.New(o)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	vol, ok := opts["volume"]
	if !ok {
		return nil, errors.New("without remote-port, option volume must name the brick's volume, whose brick registrations give the port")
	}
	if err := volume.ValidName(vol); err != nil {
		return nil, fmt.Errorf("option volume: %w", err)
	}
	if env.Etcd == nil {
		return nil, errors.New("without remote-port, finding the brick's port needs etcd")
	}
	return newBrickClient(env.Etcd, vol, volume.Brick{Host: opts["remote-host"], Path: opts["remote-subvolume"]}, o), nil
}

// writeBehind builds performance/write-behind over its one child.
func (env Env) writeBehind(children []xl.Xlator, opts map[string]string) (xl.Xlator, error) {
	if len(children) != 1 {
		return nil, fmt.Errorf("wants one subvolume, has %d", len(children))
	}
	if err := CheckOptions(opts, []string{"window-size"}, nil); err != nil {
		return nil, err
	}
	o := writebehind.Options{Logger: env.Logger, Metrics: env.Metrics}
	if v, ok := opts["window-size"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("option window-size %q: want a positive count of bytes", v)
		}
		o.WindowSize = n
	}
	return writebehind.New(children[0], o)
}
