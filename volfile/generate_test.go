package volfile

import (
	"strings"
	"testing"

	"github.com/gluon-fs/gluon/volume"
)

func testVolume(t *testing.T, replica int, specs ...string) *volume.Volume {
	t.Helper()
	v := &volume.Volume{Name: "vol", ID: "id", Replica: replica, State: volume.StateCreated}
	for _, s := range specs {
		b, err := volume.ParseBrick(s)
		if err != nil {
			t.Fatal(err)
		}
		v.Bricks = append(v.Bricks, b)
	}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	return v
}

// checkRoundTrip checks that g is valid, prints as want and parses back.
func checkRoundTrip(t *testing.T, what string, g *Graph, want string) {
	t.Helper()
	if g.String() != want {
		t.Fatalf("%s:\n%s\nwant\n%s", what, g, want)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(strings.NewReader(g.String()))
	if err != nil || back.String() != want {
		t.Fatalf("Parse(%s) = %v, %v", what, back, err)
	}
}

func TestBrickVolfile(t *testing.T) {
	v := testVolume(t, 1, "h1:/bricks/b0", "h2:/bricks/b1")
	checkRoundTrip(t, "BrickVolfile(replica 1)", BrickVolfile(v, 1), `volume vol-posix
    type storage/posix
    option directory /bricks/b1
end-volume

volume vol-dht2-guard
    type cluster/dht2-guard
    subvolumes vol-posix
end-volume

volume /bricks/b1
    type features/access
    subvolumes vol-dht2-guard
end-volume

volume vol-server
    type protocol/server
    subvolumes /bricks/b1
end-volume
`)

	// Brick 4 is the second of set 1; its peers are bricks 3 and 5.
	v = testVolume(t, 3, "h1:/b0", "h2:/b1", "h3:/b2", "h1:/b3", "h2:/b4", "h3:/b5")
	v.Options = map[string]string{volume.OptQuorum: "3", volume.OptConsistency: "lease", volume.OptLeaseTTL: "5"}
	checkRoundTrip(t, "BrickVolfile(replica 3)", BrickVolfile(v, 4), `volume vol-posix
    type storage/posix
    option directory /b4
end-volume

volume vol-client-3
    type protocol/client
    option remote-host h1
    option remote-subvolume /b3
    option volume vol
end-volume

volume vol-client-5
    type protocol/client
    option remote-host h3
    option remote-subvolume /b5
    option volume vol
end-volume

volume vol-jbr-1
    type cluster/jbr-server
    option volume vol
    option set 1
    option self 1
    option replicas 3
    option quorum 3
    option consistency lease
    option request-timeout 10s
    option lease-ttl 5s
    option lease-duration 500ms
    option journal /b4/.gluon/journal
    option sync-directory /b4
    subvolumes vol-posix vol-client-3 vol-client-5
end-volume

volume vol-dht2-guard
    type cluster/dht2-guard
    subvolumes vol-jbr-1
end-volume

volume /b4
    type features/access
    subvolumes vol-dht2-guard
end-volume

volume vol-server
    type protocol/server
    subvolumes /b4
end-volume
`)
}

func TestBrickVolfileOneSet(t *testing.T) {
	// One set: no guard, nothing to fence.
	v := testVolume(t, 1, "h1:/b0")
	checkRoundTrip(t, "BrickVolfile(1 brick)", BrickVolfile(v, 0), `volume vol-posix
    type storage/posix
    option directory /b0
end-volume

volume /b0
    type features/access
    subvolumes vol-posix
end-volume

volume vol-server
    type protocol/server
    subvolumes /b0
end-volume
`)
}

func TestClientVolfile(t *testing.T) {
	g, err := ClientVolfile(testVolume(t, 1, "h1:/bricks/b0"))
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, "ClientVolfile(replica 1)", g, `volume vol-client-0
    type protocol/client
    option remote-host h1
    option remote-subvolume /bricks/b0
    option volume vol
end-volume

volume vol-write-behind
    type performance/write-behind
    option window-size 1048576
    subvolumes vol-client-0
end-volume
`)

	v := testVolume(t, 3, "h1:/b", "[::1]:/b", "h3:/b")
	v.Options = map[string]string{volume.OptRetryTimeout: "2s", volume.OptWriteBehind: "off"}
	if g, err = ClientVolfile(v); err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, "ClientVolfile(replica 3)", g, `volume vol-client-0
    type protocol/client
    option remote-host h1
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-client-1
    type protocol/client
    option remote-host ::1
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-client-2
    type protocol/client
    option remote-host h3
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-jbr-0
    type cluster/jbr-client
    option volume vol
    option set 0
    option retry-timeout 2s
    subvolumes vol-client-0 vol-client-1 vol-client-2
end-volume
`)

	g, err = ClientVolfile(testVolume(t, 2, "h1:/b", "h2:/b", "h3:/b", "h4:/b"))
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, "ClientVolfile(2 x 2)", g, `volume vol-client-0
    type protocol/client
    option remote-host h1
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-client-1
    type protocol/client
    option remote-host h2
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-jbr-0
    type cluster/jbr-client
    option volume vol
    option set 0
    option retry-timeout 30s
    subvolumes vol-client-0 vol-client-1
end-volume

volume vol-client-2
    type protocol/client
    option remote-host h3
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-client-3
    type protocol/client
    option remote-host h4
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-jbr-1
    type cluster/jbr-client
    option volume vol
    option set 1
    option retry-timeout 30s
    subvolumes vol-client-2 vol-client-3
end-volume

volume vol-dht2
    type cluster/dht2
    option volume vol
    option scrub-interval 1h0m0s
    option scrub-grace 1m0s
    subvolumes vol-jbr-0 vol-jbr-1
end-volume

volume vol-write-behind
    type performance/write-behind
    option window-size 1048576
    subvolumes vol-dht2
end-volume
`)

	v = testVolume(t, 1, "h1:/b", "h2:/b")
	v.Options = map[string]string{volume.OptWriteBehindWindow: "65536", volume.OptDHT2ScrubInterval: "0", volume.OptDHT2ScrubGrace: "5"}
	if g, err = ClientVolfile(v); err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, "ClientVolfile(2 x 1)", g, `volume vol-client-0
    type protocol/client
    option remote-host h1
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-client-1
    type protocol/client
    option remote-host h2
    option remote-subvolume /b
    option volume vol
end-volume

volume vol-dht2
    type cluster/dht2
    option volume vol
    option scrub-interval 0s
    option scrub-grace 5s
    subvolumes vol-client-0 vol-client-1
end-volume

volume vol-write-behind
    type performance/write-behind
    option window-size 65536
    subvolumes vol-dht2
end-volume
`)
}
