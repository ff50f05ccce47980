package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Volume options: what 'gluon volume set' accepts. Values are stored as
// the user gave them (after checking); Option returns the value in
// effect, the default when unset. Bricks and clients read the options
// when they build their graphs, so a change takes effect when they
// restart.
const (
	// OptQuorum is how many replicas of a set, the leader included, must
	// hold a write in their journals before it is acknowledged: "majority"
	// or a count above half the replica count.
	OptQuorum = "jbr.quorum"
	// OptLeaseTTL is the leader's etcd lease: a dead leader is replaced
	// about this long after it stops renewing. Whole seconds.
	OptLeaseTTL = "jbr.lease-ttl"
	// OptRequestTimeout bounds how long a leader waits for a quorum
	// before failing a request with ENOTCONN (the client then retries).
	OptRequestTimeout = "jbr.request-timeout"
	// OptConsistency is what reads promise: linearizable, lease or
	// follower (see package jbrserver).
	OptConsistency = "jbr.consistency"
	// OptLeaseDuration is how long a follower promises, after each
	// message from its leader, to help no newer one; the leader serves
	// linearizable reads without a round for 90% of it (see package
	// jbrserver). 0 turns leases off.
	OptLeaseDuration = "jbr.lease-duration"
	// OptRetryTimeout bounds how long a client retries a request while no
	// leader answers; then the request fails with ENOTCONN (or EROFS
	// when the quorum is lost).
	OptRetryTimeout = "jbr.retry-timeout"
	// OptScrubInterval is how often gluon recon scrub compares and
	// repairs the replicas of every set; OptScrubRate bounds how fast it
	// reads each brick, in bytes per second (0: unbounded).
	OptScrubInterval = "recon.scrub-interval"
	OptScrubRate     = "recon.scrub-rate"
	// OptJournalMaxSize is the hard cap on each brick's journal, in
	// bytes (0: none). Whatever it says, a brick prunes the segments
	// every replica of its set holds durably; a replica that is away
	// holds that back, and the cap is what still bounds the journal then:
	// past it, a brick deletes its oldest segments that are applied and
	// synced, and a replica away while entries it lacks are deleted is
	// resynced in full by gluon recon run.
	OptJournalMaxSize = "jbr.journal-max-size"
	// OptWriteBehind turns the client's write-behind on or off (see
	// package writebehind); OptWriteBehindWindow is its per-file window of
	// acknowledged, unfinished bytes.
	OptWriteBehind       = "performance.write-behind"
	OptWriteBehindWindow = "performance.write-behind-window-size"
	// OptDHT2ScrubInterval is how often a distributed volume's mounted
	// clients look for the leftovers of interrupted two-step entry ops
	// and remove them (0: never). One client at a time scrubs, claimed
	// in etcd, at most once per interval across all clients.
	// OptDHT2ScrubGrace is how old a leftover must be before it is
	// removed, so that ops still in flight are left alone.
	OptDHT2ScrubInterval = "dht2.scrub-interval"
	OptDHT2ScrubGrace    = "dht2.scrub-grace"
)

// ErrBadOption is wrapped by errors about unknown option keys and bad
// values.
var ErrBadOption = errors.New("bad volume option")

// OptionInfo describes one volume option.
type OptionInfo struct {
	Key     string
	Default string
	Help    string
	// check validates a value for volume v; nil for any value.
	check func(v *Volume, val string) error
}

// KnownOptions lists every volume option, sorted by key.
var KnownOptions = []OptionInfo{
	{Key: OptDHT2ScrubGrace, Default: "1m",
		Help:  "how old a distributed volume's leftover of an interrupted rename, link or mkdir across sets must be before the scrub removes it; keep it above jbr.retry-timeout, which bounds how long such an op may still be in flight (1s to 24h)",
		check: checkDuration(time.Second, 24*time.Hour)},
	{Key: OptDHT2ScrubInterval, Default: "1h",
		Help:  "how often one mounted client of a distributed volume scans the namespace for the leftovers of interrupted two-step entry ops and removes them; one client at a time, claimed in etcd; 0 for never, else 1s to 30 days",
		check: checkDurationOrZero(time.Second, 30*24*time.Hour)},
	{Key: OptConsistency, Default: "linearizable",
		Help:  "what reads see: linearizable (every acknowledged write), lease (the leader's state while its lease holds) or follower (any replica's state)",
		check: checkConsistency},
	{Key: OptJournalMaxSize, Default: "0",
		Help: "hard cap on each brick's journal in bytes: past it, its oldest applied and synced segments are deleted even if a replica that is away still needs them (it is then resynced in full); 0 for none, else at least 4194304. Segments every replica holds are pruned regardless",
		check: func(_ *Volume, val string) error {
			n, err := strconv.ParseUint(val, 10, 63)
			if err != nil || (n != 0 && n < 4<<20) {
				return fmt.Errorf("%q: want 0 (unbounded) or a whole number of bytes from 4194304", val)
			}
			return nil
		}},
	{Key: OptLeaseDuration, Default: "500ms",
		Help:  "how long a follower promises, after each message from its leader, to help no newer leader; the leader serves linearizable reads without a round for 90% of it, assuming no brick's clock runs 10% slower than another's; a new leader may wait this long after a clean handover; 0 for a round on every read, else 100ms to 1m, below jbr.lease-ttl",
		check: checkDurationOrZero(100*time.Millisecond, time.Minute)},
	{Key: OptLeaseTTL, Default: "3s",
		Help:  "the leader's etcd lease; a dead leader is replaced after about this long (whole seconds, 1s to 1m)",
		check: checkLeaseTTL},
	{Key: OptQuorum, Default: "majority",
		Help:  "replicas, the leader included, that must journal a write before it is acknowledged: majority, or a count above half the replica count",
		check: checkQuorum},
	{Key: OptRequestTimeout, Default: "10s",
		Help:  "how long a leader waits for a quorum before failing a request (the client retries it)",
		check: checkDuration(100*time.Millisecond, 10*time.Minute)},
	{Key: OptRetryTimeout, Default: "30s",
		Help:  "how long a client retries a request while no leader answers, before failing it with ENOTCONN",
		check: checkDuration(100*time.Millisecond, time.Hour)},
	{Key: OptWriteBehind, Default: "on",
		Help: "acknowledge writes from client memory and send them in the background (on or off); an error comes back on the next write, fsync or close of the fd",
		check: func(_ *Volume, val string) error {
			if val != "on" && val != "off" {
				return errors.New("want on or off")
			}
			return nil
		}},
	{Key: OptWriteBehindWindow, Default: "1048576",
		Help: "bytes per file that write-behind may hold acknowledged but unwritten (65536 to 1073741824)",
		check: func(_ *Volume, val string) error {
			if n, err := strconv.ParseUint(val, 10, 63); err != nil || n < 64<<10 || n > 1<<30 {
				return fmt.Errorf("%q: want a whole number of bytes from 65536 to 1073741824", val)
			}
			return nil
		}},
	{Key: OptScrubInterval, Default: "1h",
		Help:  "how often gluon recon scrub compares every replica with its leader and repairs what differs",
		check: checkDuration(time.Second, 30*24*time.Hour)},
	{Key: OptScrubRate, Default: "16777216",
		Help: "bytes per second gluon recon scrub reads from each brick; 0 for unbounded",
		check: func(_ *Volume, val string) error {
			if _, err := strconv.ParseUint(val, 10, 63); err != nil {
				return fmt.Errorf("%q: want a whole number of bytes per second", val)
			}
			return nil
		}},
}

// LookupOption returns the description of key.
func LookupOption(key string) (OptionInfo, bool) {
	i := slices.IndexFunc(KnownOptions, func(o OptionInfo) bool { return o.Key == key })
	if i < 0 {
		return OptionInfo{}, false
	}
	return KnownOptions[i], true
}

// Option returns the value of key in effect for v: the value set, or the
// default.
func (v *Volume) Option(key string) string {
	if val, ok := v.Options[key]; ok {
		return val
	}
	o, _ := LookupOption(key)
	return o.Default
}

// Quorum returns the jbr.quorum in effect as a count of replicas.
func (v *Volume) Quorum() int {
	val := v.Option(OptQuorum)
	if val == "majority" {
		return v.Replica/2 + 1
	}
	n, err := strconv.Atoi(val)
	if err != nil {
		return v.Replica/2 + 1 // Validate refuses this; be safe anyway
	}
	return n
}

// Duration returns the duration option key in effect for v; 0 if the
// value is not a duration, which Validate refuses.
func (v *Volume) Duration(key string) time.Duration {
	d, _ := ParseDuration(v.Option(key))
	return d
}

// ParseDuration reads an option's duration: whole seconds ("3") or a Go
// duration ("500ms", "1m30s").
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want seconds or a duration such as 500ms", s)
	}
	return d, nil
}

// CheckOption checks that key is a known option and val a valid value
// for v. Errors wrap ErrBadOption.
func CheckOption(v *Volume, key, val string) error {
	if err := validOption(key, val); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOption, err)
	}
	o, ok := LookupOption(key)
	if !ok {
		keys := make([]string, len(KnownOptions))
		for i, o := range KnownOptions {
			keys[i] = o.Key
		}
		return fmt.Errorf("%w: unknown option %q (known: %s)", ErrBadOption, key, strings.Join(keys, ", "))
	}
	if o.check != nil {
		if err := o.check(v, val); err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrBadOption, key, val, err)
		}
	}
	return nil
}

func checkConsistency(_ *Volume, val string) error {
	switch val {
	case "linearizable", "lease", "follower":
		return nil
	}
	return errors.New("want linearizable, lease or follower")
}

func checkLeaseTTL(_ *Volume, val string) error {
	d, err := ParseDuration(val)
	switch {
	case err != nil:
		return err
	case d < time.Second || d > time.Minute:
		return errors.New("want 1s to 1m")
	case d%time.Second != 0:
		return errors.New("want whole seconds: etcd leases have 1s granularity")
	}
	return nil
}

func checkQuorum(v *Volume, val string) error {
	if val == "majority" {
		return nil
	}
	n, err := strconv.Atoi(val)
	if err != nil {
		return errors.New("want majority or a replica count")
	}
	// Quorums must intersect: a new leader recovers from a quorum of
	// journals, which must include one holding every acknowledged write.
	if lo := v.Replica/2 + 1; n < lo || n > v.Replica {
		if lo == v.Replica {
			return fmt.Errorf("volume %s has %d replicas: the quorum must be %d", v.Name, v.Replica, lo)
		}
		return fmt.Errorf("volume %s has %d replicas: want a majority, %d to %d", v.Name, v.Replica, lo, v.Replica)
	}
	return nil
}

// checkDurationOrZero is checkDuration that also takes 0 ("never", "none").
func checkDurationOrZero(lo, hi time.Duration) func(*Volume, string) error {
	inRange := checkDuration(lo, hi)
	return func(v *Volume, val string) error {
		if d, err := ParseDuration(val); err == nil && d == 0 {
			return nil
		}
		return inRange(v, val)
	}
}

func checkDuration(lo, hi time.Duration) func(*Volume, string) error {
	return func(_ *Volume, val string) error {
		d, err := ParseDuration(val)
		if err != nil {
			return err
		}
		if d < lo || d > hi {
			return fmt.Errorf("want %v to %v", lo, hi)
		}
		return nil
	}
}

// SetOption sets option key of the named volume to val, after checking
// both (errors wrap ErrBadOption). It returns the volume as stored.
func (s *Store) SetOption(ctx context.Context, name, key, val string) (*Volume, error) {
	var out *Volume
	err := s.update(ctx, name, func(v *Volume) ([]clientv3.Op, error) {
		if err := CheckOption(v, key, val); err != nil {
			return nil, err
		}
		if v.Options == nil {
			v.Options = map[string]string{}
		}
		v.Options[key] = val
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadOption, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		out = v
		return []clientv3.Op{clientv3.OpPut(volumeKey(name), string(b))}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
