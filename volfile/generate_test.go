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

func TestBrickVolfile(t *testing.T) {
	v := testVolume(t, 2, "h1:/bricks/b0", "h2:/bricks/b1")
	g := BrickVolfile(v, 1)
	const want = `volume vol-posix
    type storage/posix
    option directory /bricks/b1
end-volume

volume /bricks/b1
    type features/access
    subvolumes vol-posix
end-volume

volume vol-server
    type protocol/server
    subvolumes /bricks/b1
end-volume
`
	if g.String() != want {
		t.Fatalf("BrickVolfile:\n%s\nwant\n%s", g, want)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := Parse(strings.NewReader(g.String()))
	if err != nil || back.String() != want {
		t.Fatalf("Parse(BrickVolfile) = %v, %v", back, err)
	}
}

func TestClientVolfile(t *testing.T) {
	v := testVolume(t, 1, "h1:/bricks/b0")
	g, err := ClientVolfile(v, []string{"10.0.0.1:49152"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `volume vol-client-0
    type protocol/client
    option remote-host 10.0.0.1
    option remote-port 49152
    option remote-subvolume /bricks/b0
end-volume
`
	if g.String() != want {
		t.Fatalf("ClientVolfile:\n%s\nwant\n%s", g, want)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err = ClientVolfile(v, []string{"[::1]:7"})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := g.Top().Option("remote-host"); h != "::1" {
		t.Fatalf("IPv6 remote-host = %q", h)
	}

	for _, c := range []struct {
		v     *volume.Volume
		addrs []string
		want  string
	}{
		{testVolume(t, 2, "h1:/b", "h2:/b"), []string{"a:1", "b:1"}, "volume vol: 2 bricks need cluster/jbr (not built yet)"},
		{testVolume(t, 1, "h1:/b", "h2:/b"), []string{"a:1", "b:1"}, "volume vol: 2 bricks need cluster/dht2 (not built yet)"},
		{v, nil, "volume vol: 0 addresses for 1 bricks"},
		{v, []string{""}, "volume vol: brick h1:/bricks/b0 is offline"},
		{v, []string{"nohost"}, `address "nohost"`},
	} {
		if _, err := ClientVolfile(c.v, c.addrs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ClientVolfile(%v, %q) = %v, want %q", c.v.Bricks, c.addrs, err, c.want)
		}
	}
}
