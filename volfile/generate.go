package volfile

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/gluon-fs/gluon/volume"
)

// Translator types gluon builds.
const (
	TypePosix       = "storage/posix"
	TypeAccess      = "features/access"
	TypeFDL         = "features/fdl"
	TypeJBRServer   = "cluster/jbr-server"
	TypeJBRClient   = "cluster/jbr-client"
	TypeClient      = "protocol/client"
	TypeServer      = "protocol/server"
	TypeDHT2        = "cluster/dht2"
	TypeDHT2Guard   = "cluster/dht2-guard"
	TypeWriteBehind = "performance/write-behind"
)

// JournalDir is where a brick keeps its journal, relative to the brick
// directory: inside the store's own directory, which clients never see.
const JournalDir = ".gluon/journal"

// BrickVolfile returns the graph a brick daemon runs for brick brickIndex
// of v, which must be in range. Top down, for a replicated volume:
//
//	VOL-server     protocol/server     served by the daemon, not built
//	PATH           features/access     the export: clients' remote-subvolume
//	VOL-jbr-S      cluster/jbr-server  replica set S: journal, elect, replicate
//	  VOL-posix    storage/posix       first subvolume: the local store
//	  VOL-client-J protocol/client     then the set's other bricks, in order
//
// A brick of a distributed volume of single-brick sets has
// cluster/dht2-guard just below features/access, VOL-dht2-guard.
//
// A brick of a volume without replication serves its store directly:
// access over posix. (features/fdl could journal its requests, but it
// costs such a brick about 2.7 times its write throughput, for a journal
// that only replication and reconciliation read.) As in GlusterFS, the
// node under protocol/server is named after the brick path, and clients
// name it in their handshake. Requests are permission-checked before
// they are journaled or replicated.
func BrickVolfile(v *volume.Volume, brickIndex int) *Graph {
	if brickIndex < 0 || brickIndex >= len(v.Bricks) {
		panic(fmt.Sprintf("volfile: volume %s has no brick %d", v.Name, brickIndex))
	}
	b := v.Bricks[brickIndex]
	g := &Graph{}
	below := g.add(&Node{
		Name:    v.Name + "-posix",
		Type:    TypePosix,
		Options: []Option{{Key: "directory", Value: b.Path}},
	})
	if v.Replica > 1 {
		journal := filepath.Join(b.Path, JournalDir)
		set, self := brickIndex/v.Replica, brickIndex%v.Replica
		subs := []string{below}
		for k := range v.Replica {
			if k != self {
				subs = append(subs, g.add(clientNode(v, set*v.Replica+k)))
			}
		}
		below = g.add(&Node{
			Name: fmt.Sprintf("%s-jbr-%d", v.Name, set),
			Type: TypeJBRServer,
			Options: []Option{
				{Key: "volume", Value: v.Name},
				{Key: "set", Value: strconv.Itoa(set)},
				{Key: "self", Value: strconv.Itoa(self)},
				{Key: "replicas", Value: strconv.Itoa(v.Replica)},
				{Key: "quorum", Value: strconv.Itoa(v.Quorum())},
				{Key: "consistency", Value: v.Option(volume.OptConsistency)},
				{Key: "request-timeout", Value: v.Duration(volume.OptRequestTimeout).String()},
				{Key: "lease-ttl", Value: v.Duration(volume.OptLeaseTTL).String()},
				{Key: "lease-duration", Value: v.Duration(volume.OptLeaseDuration).String()},
				{Key: "journal", Value: journal},
				{Key: "sync-directory", Value: b.Path},
			},
			Subvolumes: subs,
		})
		if m := v.Option(volume.OptJournalMaxSize); m != "0" {
			jbr := g.Nodes[len(g.Nodes)-1]
			jbr.Options = append(jbr.Options, Option{Key: "journal-max-size", Value: m})
		}
	}
	if v.Sets() > 1 {
		// Fences the tokens a rebalance moves away, so that a client with
		// a stale layout never applies a request here. Over jbr-server
		// the leader's guard takes the fences and persists them through
		// the set; a brick that becomes leader rereads them first.
		below = g.add(&Node{Name: v.Name + "-dht2-guard", Type: TypeDHT2Guard, Subvolumes: []string{below}})
	}
	below = g.add(&Node{Name: b.Path, Type: TypeAccess, Subvolumes: []string{below}})
	g.add(&Node{Name: v.Name + "-server", Type: TypeServer, Subvolumes: []string{below}})
	return g
}

// clientNode is the protocol/client of brick i of v. It names the brick
// by host and path; its port comes from the brick's registration in etcd,
// since a brick listens on a port chosen when it starts.
func clientNode(v *volume.Volume, i int) *Node {
	b := v.Bricks[i]
	return &Node{
		Name: fmt.Sprintf("%s-client-%d", v.Name, i),
		Type: TypeClient,
		Options: []Option{
			{Key: "remote-host", Value: b.Host},
			{Key: "remote-subvolume", Value: b.Path},
			{Key: "volume", Value: v.Name},
		},
	}
}

func (g *Graph) add(n *Node) string {
	g.Nodes = append(g.Nodes, n)
	return n.Name
}

// ClientVolfile returns the graph a client mounts for v: one
// protocol/client per brick and, for a replicated volume, one
// cluster/jbr-client per replica set, which sends each request to the
// set's leader. A volume of several sets distributes over them with
// cluster/dht2, whose layout lives in etcd. On top, unless the volume
// option performance.write-behind is off, is performance/write-behind,
// as in GlusterFS:
//
//	VOL-write-behind performance/write-behind  option window-size BYTES
//	  VOL-dht2       cluster/dht2        option volume VOL, scrub-interval,
//	                                     scrub-grace (0s: no scrub)
//	    VOL-jbr-S    cluster/jbr-client  one per set (replica > 1)
//	      VOL-client-J protocol/client   the set's bricks
//	    VOL-client-J protocol/client     one per set (replica 1)
func ClientVolfile(v *volume.Volume) (*Graph, error) {
	if v.Replica < 1 || len(v.Bricks) == 0 || len(v.Bricks)%v.Replica != 0 {
		return nil, fmt.Errorf("volume %s: %d bricks in replica sets of %d", v.Name, len(v.Bricks), v.Replica)
	}
	g := &Graph{}
	sets := make([]string, v.Sets())
	for s := range sets {
		subs := make([]string, v.Replica)
		for k := range subs {
			subs[k] = g.add(clientNode(v, s*v.Replica+k))
		}
		if v.Replica == 1 {
			sets[s] = subs[0]
			continue
		}
		sets[s] = g.add(&Node{
			Name: fmt.Sprintf("%s-jbr-%d", v.Name, s),
			Type: TypeJBRClient,
			Options: []Option{
				{Key: "volume", Value: v.Name},
				{Key: "set", Value: strconv.Itoa(s)},
				{Key: "retry-timeout", Value: v.Duration(volume.OptRetryTimeout).String()},
			},
			Subvolumes: subs,
		})
	}
	if len(sets) > 1 {
		g.add(&Node{
			Name: v.Name + "-dht2",
			Type: TypeDHT2,
			Options: []Option{
				{Key: "volume", Value: v.Name},
				{Key: "scrub-interval", Value: v.Duration(volume.OptDHT2ScrubInterval).String()},
				{Key: "scrub-grace", Value: v.Duration(volume.OptDHT2ScrubGrace).String()},
			},
			Subvolumes: sets,
		})
	}
	if v.Option(volume.OptWriteBehind) == "on" {
		g.add(&Node{
			Name:       v.Name + "-write-behind",
			Type:       TypeWriteBehind,
			Options:    []Option{{Key: "window-size", Value: v.Option(volume.OptWriteBehindWindow)}},
			Subvolumes: []string{g.Nodes[len(g.Nodes)-1].Name},
		})
	}
	return g, nil
}
