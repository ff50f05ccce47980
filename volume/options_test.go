package volume

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckOption(t *testing.T) {
	v3 := &Volume{Name: "v", Replica: 3}
	v2 := &Volume{Name: "v", Replica: 2}
	good := []struct {
		v        *Volume
		key, val string
	}{
		{v3, OptQuorum, "majority"}, {v3, OptQuorum, "2"}, {v3, OptQuorum, "3"}, {v2, OptQuorum, "2"},
		{v3, OptLeaseTTL, "1"}, {v3, OptLeaseTTL, "3s"}, {v3, OptLeaseTTL, "1m"},
		{v3, OptLeaseDuration, "0"}, {v3, OptLeaseDuration, "100ms"}, {v3, OptLeaseDuration, "2s"},
		{v3, OptRequestTimeout, "500ms"}, {v3, OptRequestTimeout, "10"},
		{v3, OptConsistency, "linearizable"}, {v3, OptConsistency, "lease"}, {v3, OptConsistency, "follower"},
		{v3, OptRetryTimeout, "2s"},
		{v3, OptDHT2ScrubInterval, "0"}, {v3, OptDHT2ScrubInterval, "0s"}, {v3, OptDHT2ScrubInterval, "1s"}, {v3, OptDHT2ScrubInterval, "720h"},
		{v3, OptDHT2ScrubGrace, "1s"}, {v3, OptDHT2ScrubGrace, "5m"},
	}
	for _, c := range good {
		if err := CheckOption(c.v, c.key, c.val); err != nil {
			t.Errorf("CheckOption(replica %d, %s, %q) = %v", c.v.Replica, c.key, c.val, err)
		}
	}
	bad := []struct {
		v             *Volume
		key, val, msg string
	}{
		{v3, "jbr.colour", "red", `unknown option "jbr.colour" (known: dht2.scrub-grace, dht2.scrub-interval, jbr.consistency, jbr.journal-max-size, jbr.lease-duration, jbr.lease-ttl, jbr.quorum, jbr.request-timeout, jbr.retry-timeout, performance.write-behind, performance.write-behind-window-size, recon.scrub-interval, recon.scrub-rate)`},
		{v3, OptQuorum, "1", "want a majority, 2 to 3"},
		{v3, OptQuorum, "4", "want a majority, 2 to 3"},
		{v2, OptQuorum, "1", "the quorum must be 2"},
		{v3, OptQuorum, "most", "want majority or a replica count"},
		{v3, OptLeaseTTL, "500ms", "want 1s to 1m"},
		{v3, OptLeaseDuration, "50ms", "100ms"},
		{v3, OptLeaseDuration, "soon", "want seconds or a duration"},
		{v3, OptLeaseTTL, "1500ms", "whole seconds"},
		{v3, OptLeaseTTL, "2h", "want 1s to 1m"},
		{v3, OptLeaseTTL, "soon", "want seconds or a duration"},
		{v3, OptRequestTimeout, "0", "want 100ms to 10m0s"},
		{v3, OptRequestTimeout, "-1s", "want 100ms to 10m0s"},
		{v3, OptConsistency, "strong", "want linearizable, lease or follower"},
		{v3, OptRetryTimeout, "forever", "want seconds or a duration"},
		{v3, OptDHT2ScrubInterval, "500ms", "want 1s to 720h0m0s"},
		{v3, OptDHT2ScrubInterval, "-1s", "want 1s to 720h0m0s"},
		{v3, OptDHT2ScrubInterval, "often", "want seconds or a duration"},
		{v3, OptDHT2ScrubGrace, "0", "want 1s to 24h0m0s"},
		{v3, "a b", "1", `option name "a b"`},
	}
	for _, c := range bad {
		err := CheckOption(c.v, c.key, c.val)
		if !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("CheckOption(replica %d, %s, %q) = %v, want ErrBadOption saying %q", c.v.Replica, c.key, c.val, err, c.msg)
		}
	}
}

func TestOptionDefaults(t *testing.T) {
	v := &Volume{Name: "v", Replica: 3}
	if v.Quorum() != 2 || v.Duration(OptLeaseTTL) != 3*time.Second || v.Option(OptConsistency) != "linearizable" ||
		v.Duration(OptRetryTimeout) != 30*time.Second || v.Duration(OptRequestTimeout) != 10*time.Second {
		t.Errorf("defaults: quorum %d, lease %v, consistency %s, retry %v, request %v", v.Quorum(), v.Duration(OptLeaseTTL),
			v.Option(OptConsistency), v.Duration(OptRetryTimeout), v.Duration(OptRequestTimeout))
	}
	v.Options = map[string]string{OptQuorum: "3", OptLeaseTTL: "7"}
	if v.Quorum() != 3 || v.Duration(OptLeaseTTL) != 7*time.Second {
		t.Errorf("set: quorum %d, lease %v", v.Quorum(), v.Duration(OptLeaseTTL))
	}
	for _, o := range KnownOptions {
		if err := CheckOption(v, o.Key, o.Default); err != nil {
			t.Errorf("default of %s: %v", o.Key, err)
		}
	}
}

func TestSetOption(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.Create(ctx, &Volume{Name: "v", Replica: 3, Bricks: bricks(t, "a:/b", "b:/b", "c:/b")}); err != nil {
		t.Fatal(err)
	}
	v, err := s.SetOption(ctx, "v", OptQuorum, "3")
	if err != nil || v.Options[OptQuorum] != "3" {
		t.Fatalf("SetOption = %+v, %v", v, err)
	}
	if _, err := s.SetOption(ctx, "v", OptQuorum, "1"); !errors.Is(err, ErrBadOption) {
		t.Fatalf("SetOption(quorum 1) = %v", err)
	}
	// Each value is valid alone; together they are not.
	if _, err := s.SetOption(ctx, "v", OptLeaseDuration, "2s"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetOption(ctx, "v", OptLeaseTTL, "2"); !errors.Is(err, ErrBadOption) {
		t.Fatalf("SetOption(lease-ttl 2 with lease-duration 2s) = %v", err)
	}
	if _, err := s.SetOption(ctx, "nosuch", OptQuorum, "2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetOption on a missing volume = %v", err)
	}
	got, err := s.Get(ctx, "v")
	if err != nil || got.Options[OptQuorum] != "3" || got.Quorum() != 3 {
		t.Fatalf("Get after SetOption = %+v, %v", got, err)
	}
}
