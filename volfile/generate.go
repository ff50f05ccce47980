package volfile

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/gluon-fs/gluon/volume"
)

// Translator types gluon builds.
const (
	TypePosix     = "storage/posix"
	TypeAccess    = "features/access"
	TypeFDL       = "features/fdl"
	TypeJBRServer = "cluster/jbr-server"
	TypeJBRClient = "cluster/jbr-client"
	TypeClient    = "protocol/client"
	TypeServer    = "protocol/server"
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
				{Key: "journal", Value: journal},
				{Key: "sync-directory", Value: b.Path},
			},
			Subvolumes: subs,
		})
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
// protocol/client per brick and, for a replicated volume, the
// cluster/jbr-client that sends each request to the replica set's
// leader. Volumes of several replica sets need cluster/dht2, which is not
// built yet.
func ClientVolfile(v *volume.Volume) (*Graph, error) {
	if n := v.Sets(); n > 1 {
		return nil, fmt.Errorf("volume %s: %d replica sets need cluster/dht2 to distribute files over them (not built yet)", v.Name, n)
	}
	g := &Graph{}
	subs := make([]string, len(v.Bricks))
	for i := range v.Bricks {
		subs[i] = g.add(clientNode(v, i))
	}
	if v.Replica == 1 {
		return g, nil
	}
	g.add(&Node{
		Name: v.Name + "-jbr-0",
		Type: TypeJBRClient,
		Options: []Option{
			{Key: "volume", Value: v.Name},
			{Key: "set", Value: "0"},
			{Key: "retry-timeout", Value: v.Duration(volume.OptRetryTimeout).String()},
		},
		Subvolumes: subs,
	})
	return g, nil
}
