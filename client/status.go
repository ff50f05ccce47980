package client

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/volume"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/jbr-server/election"
	"github.com/gluon-fs/gluon/xlators/protocol/client"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// VolumeStatus is a volume's bricks and, for a replicated volume, each
// replica set's leader and journal positions.
type VolumeStatus struct {
	Name    string      `json:"name"`
	State   string      `json:"state"`
	Replica int         `json:"replica"`
	Sets    []SetStatus `json:"sets"`
}

// SetStatus is one replica set.
type SetStatus struct {
	Set int `json:"set"`
	// Leader is the leading brick's index in the volume, as the set's
	// election in etcd says; -1 when nobody leads (or the volume is not
	// replicated). Term is the leader's term.
	Leader int           `json:"leader"`
	Term   uint64        `json:"term,omitempty"`
	Bricks []BrickStatus `json:"bricks"`
}

// BrickStatus is one brick.
type BrickStatus struct {
	Index  int    `json:"index"`
	Brick  string `json:"brick"` // HOST:PATH
	Online bool   `json:"online"`
	Addr   string `json:"addr,omitempty"`
	Pid    int    `json:"pid,omitempty"`
	// JBR is the brick's replication state, as it answered the jbr.status
	// request; nil if it is offline, did not answer (Error says why) or
	// the volume is not replicated.
	JBR *jbrserver.Status `json:"jbr,omitempty"`
	// Lag is how many entries the set's leader has committed that this
	// brick has not applied yet; -1 when either is unknown.
	Lag   int64  `json:"lag"`
	Error string `json:"error,omitempty"`
}

// statusTimeout bounds the whole of a jbr.status round: connecting to a
// brick and its answer.
const statusTimeout = 5 * time.Second

// Status reports the named volume: every brick's registration, and for a
// replicated volume the leader of each replica set (from etcd) and each
// online brick's journal positions (asked of the brick, through the
// protocol, with jbr.status). A brick that does not answer is reported
// with an error, not failed on.
func Status(ctx context.Context, cli *clientv3.Client, name string) (*VolumeStatus, error) {
	store := volume.NewStore(cli)
	v, err := store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	st, err := store.Status(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(st) != len(v.Bricks) {
		return nil, fmt.Errorf("volume %s changed while reading its status", name)
	}
	vs := &VolumeStatus{Name: v.Name, State: v.State, Replica: v.Replica}
	bricks := make([]BrickStatus, len(st))
	for i, b := range st {
		bricks[i] = BrickStatus{Index: i, Brick: b.Brick.String(), Online: b.Online, Addr: b.Addr, Pid: b.Pid, Lag: -1}
	}
	if v.Replica > 1 {
		var wg sync.WaitGroup
		for i := range bricks {
			if bricks[i].Online {
				wg.Go(func() { askStatus(ctx, &bricks[i], v.Bricks[i]) })
			}
		}
		wg.Wait()
	}
	for set := range v.Sets() {
		ss := SetStatus{Set: set, Leader: -1, Bricks: bricks[set*v.Replica : (set+1)*v.Replica]}
		if v.Replica > 1 {
			leader, term, ok, err := election.Leader(ctx, cli, election.Key(v.Name, set))
			if err != nil {
				return nil, fmt.Errorf("volume %s: replica set %d: %w", v.Name, set, err)
			}
			if ok && leader >= 0 && leader < v.Replica {
				ss.Leader, ss.Term = set*v.Replica+leader, term
				if lj := bricks[ss.Leader].JBR; lj != nil {
					for i := range ss.Bricks {
						if j := ss.Bricks[i].JBR; j != nil {
							ss.Bricks[i].Lag = max(0, int64(lj.Commit)-int64(j.Applied))
						}
					}
				}
			}
		}
		vs.Sets = append(vs.Sets, ss)
	}
	return vs, nil
}

// askStatus fills in b's replication state, asking the brick.
func askStatus(ctx context.Context, b *BrickStatus, brick volume.Brick) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	// A brick killed moments ago is still registered until its lease
	// lapses; a refused connection says so at once, where the protocol
	// client would keep redialling until the timeout.
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", b.Addr)
	if err != nil {
		b.Error = fmt.Sprintf("unreachable: %v", err)
		return
	}
	nc.Close()
	c, err := client.New(client.Options{
		Addr: b.Addr, Volume: brick.Path, DialTimeout: statusTimeout,
		Logger: slog.New(slog.DiscardHandler), // failures are reported in b.Error
	})
	if err != nil {
		b.Error = err.Error()
		return
	}
	defer c.Close()
	out, e := c.Ipc(xl.WithCall(ctx, &xl.Call{}), jbrserver.IpcStatus, nil)
	if e != 0 {
		b.Error = fmt.Sprintf("jbr.status: %v", e)
		return
	}
	var s jbrserver.Status
	if err := json.Unmarshal(out["status"], &s); err != nil {
		b.Error = fmt.Sprintf("jbr.status: bad answer: %v", err)
		return
	}
	b.JBR = &s
}
