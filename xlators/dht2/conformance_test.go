package dht2

import (
	"testing"

	"github.com/gluon-fs/gluon/conformance"
	"github.com/gluon-fs/gluon/xlators/access"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// TestConformance runs the POSIX suite on DHT2 over three posix sets,
// each behind features/access as on a brick: each case directory, and the
// directories the cases make, land on sets chosen by the policy, so
// renames and links cross sets, and DHT2's own steps run with the
// caller's credentials.
func TestConformance(t *testing.T) {
	c := newClusterWith(t, 3, 3, Options{}, func(x xl.Xlator) xl.Xlator {
		a, err := access.New(x, access.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
	conformance.Run(t, func(t *testing.T) conformance.FS {
		return conformance.XlFS(c.d)
	}, conformance.LargeXattrs)
}
