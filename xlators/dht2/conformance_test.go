package dht2

import (
	"testing"

	"github.com/gluon-fs/gluon/conformance"
	"github.com/gluon-fs/gluon/xlators/access"
)

// TestConformance runs the POSIX suite on DHT2 over three posix sets:
// each case directory, and the directories the cases make, land on sets
// chosen by the policy, so renames and links cross sets.
func TestConformance(t *testing.T) {
	c := newCluster(t, 3, Options{})
	conformance.Run(t, func(t *testing.T) conformance.FS {
		x, err := access.New(c.d, access.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return conformance.XlFS(x)
	}, conformance.LargeXattrs)
}
