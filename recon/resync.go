package recon

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ResyncPrefix is where full resyncs in progress are kept in etcd:
// ResyncPrefix<volume>/<set>/<replica> holds a JSON Resync. A leader
// that finds a follower's needed entries pruned from its journal marks
// it (the brick daemons do: package brick); the follower's daemon
// fast-forwards its log and moves the mark to ResyncRepair; the leader's
// repairs its store (Run) and removes the mark once it is identical.
const ResyncPrefix = "/gluon/recon-resync/"

// Resync states.
const (
	// ResyncFastForward: the replica's log is to continue after Index
	// (jbrserver.FastForward), which its brick daemon does on restart.
	ResyncFastForward = "fast-forward"
	// ResyncRepair: its log continues from the leader's; its store is to
	// be repaired from the leader's, by GFID walk.
	ResyncRepair = "repair"
)

// Resync is a replica being resynced in full.
type Resync struct {
	State string `json:"state"`
	// Term and Index are where the replica's log continues: the leader's
	// commit index when it found the replica's entries pruned.
	Term  uint64    `json:"term"`
	Index uint64    `json:"index"`
	Since time.Time `json:"since"`
}

func resyncKey(vol string, set int) string { return fmt.Sprintf("%s%s/%d/", ResyncPrefix, vol, set) }

// MarkResync records replica's resync state.
func MarkResync(ctx context.Context, cli *clientv3.Client, vol string, set, replica int, r Resync) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = cli.Put(ctx, resyncKey(vol, set)+strconv.Itoa(replica), string(b))
	return err
}

// ClearResync removes replica's resync mark: it is caught up.
func ClearResync(ctx context.Context, cli *clientv3.Client, vol string, set, replica int) error {
	_, err := cli.Delete(ctx, resyncKey(vol, set)+strconv.Itoa(replica))
	return err
}

// Resyncs reads a set's resyncs in progress, by replica (index in the
// set).
func Resyncs(ctx context.Context, cli *clientv3.Client, vol string, set int) (map[int]Resync, error) {
	resp, err := cli.Get(ctx, resyncKey(vol, set), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[int]Resync{}
	for _, kv := range resp.Kvs {
		var r Resync
		rep, err1 := strconv.Atoi(strings.TrimPrefix(string(kv.Key), resyncKey(vol, set)))
		if err2 := json.Unmarshal(kv.Value, &r); err1 != nil || err2 != nil {
			return nil, fmt.Errorf("recon: bad resync mark %q = %q", kv.Key, kv.Value)
		}
		out[rep] = r
	}
	return out, nil
}
