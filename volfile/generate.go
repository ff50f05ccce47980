package volfile

import (
	"fmt"
	"net"

	"github.com/gluon-fs/gluon/volume"
)

// Translator types gluon builds.
const (
	TypePosix  = "storage/posix"
	TypeAccess = "features/access"
	TypeClient = "protocol/client"
	TypeServer = "protocol/server"
)

// BrickVolfile returns the graph a brick daemon runs for brick brickIndex
// of v, which must be in range. Top down:
//
//	NAME-server   protocol/server   served by the daemon, not built
//	PATH          features/access   the export: clients' remote-subvolume
//	NAME-posix    storage/posix     option directory PATH
//
// As in GlusterFS, the node under protocol/server is named after the brick
// path, and clients name it in their handshake. Replication's server side
// (cluster/jbr-server with protocol/client peers, over features/fdl) slots
// in between access and posix, so a request is permission-checked before
// it is journaled or replicated.
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
	below = g.add(&Node{Name: b.Path, Type: TypeAccess, Subvolumes: []string{below}})
	g.add(&Node{Name: v.Name + "-server", Type: TypeServer, Subvolumes: []string{below}})
	return g
}

func (g *Graph) add(n *Node) string {
	g.Nodes = append(g.Nodes, n)
	return n.Name
}

// ClientVolfile returns the graph a client mounts for v, given the address
// (host:port) serving each brick, in brick order. It is one protocol/client
// per brick under the cluster translator that combines them; until
// cluster/jbr and cluster/dht2 exist, only one-brick volumes have a graph.
func ClientVolfile(v *volume.Volume, addrs []string) (*Graph, error) {
	if n := len(v.Bricks); n > 1 {
		if v.Replica > 1 {
			return nil, fmt.Errorf("volume %s: %d bricks need cluster/jbr (not built yet)", v.Name, n)
		}
		return nil, fmt.Errorf("volume %s: %d bricks need cluster/dht2 (not built yet)", v.Name, n)
	}
	if len(addrs) != len(v.Bricks) {
		return nil, fmt.Errorf("volume %s: %d addresses for %d bricks", v.Name, len(addrs), len(v.Bricks))
	}
	g := &Graph{}
	for i, b := range v.Bricks {
		if addrs[i] == "" {
			return nil, fmt.Errorf("volume %s: brick %s is offline", v.Name, b)
		}
		host, port, err := net.SplitHostPort(addrs[i])
		if err != nil {
			return nil, fmt.Errorf("volume %s: brick %s: address %q: %v", v.Name, b, addrs[i], err)
		}
		g.add(&Node{
			Name: fmt.Sprintf("%s-client-%d", v.Name, i),
			Type: TypeClient,
			Options: []Option{
				{Key: "remote-host", Value: host},
				{Key: "remote-port", Value: port},
				{Key: "remote-subvolume", Value: b.Path},
			},
		})
	}
	return g, nil
}
