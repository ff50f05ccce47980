package volume

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseBrick(t *testing.T) {
	good := []struct {
		in   string
		want Brick
	}{
		{"srv1:/bricks/b0", Brick{"srv1", "/bricks/b0"}},
		{"127.0.0.1:/b//x/", Brick{"127.0.0.1", "/b/x"}},
		{"[::1]:/b", Brick{"::1", "/b"}},
		{"h:/c:d", Brick{"h", "/c:d"}},
	}
	for _, c := range good {
		b, err := ParseBrick(c.in)
		if err != nil || b != c.want {
			t.Errorf("ParseBrick(%q) = %v, %v; want %v", c.in, b, err, c.want)
		}
		if back, err := ParseBrick(b.String()); err != nil || back != b {
			t.Errorf("ParseBrick(%q.String()) = %v, %v", c.in, back, err)
		}
	}
	bad := map[string]string{
		"":                "want HOST:PATH",
		"/bricks/b0":      "want HOST:PATH",
		":/b":             "empty host",
		"h:b":             "not absolute",
		"h:":              "not absolute",
		"h:/":             "root directory",
		"h:/..":           "root directory",
		"h x:/b":          "bad host",
		"[::1/b":          "want [IPV6]:PATH",
		"h:/b\n":          "control characters",
		"h:/with space":   "spaces",
		"h:/a#b":          "'#'",
		"h\":/b":          "bad host",
		"srv/x:/bricks/a": "bad host",
	}
	for in, want := range bad {
		if _, err := ParseBrick(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBrick(%q) error %v, want it to mention %q", in, err, want)
		}
	}
}

func bricks(t testing.TB, specs ...string) []Brick {
	var bs []Brick
	for _, s := range specs {
		b, err := ParseBrick(s)
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	return bs
}

func TestValidate(t *testing.T) {
	ok := func() *Volume {
		return &Volume{Name: "v", Replica: 3, Bricks: bricks(t, "a:/b", "b:/b", "c:/b"), State: StateCreated}
	}
	if err := ok().Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		edit func(*Volume)
		want string
	}{
		{func(v *Volume) { v.Name = "" }, "empty volume name"},
		{func(v *Volume) { v.Name = "a/b" }, "only letters"},
		{func(v *Volume) { v.Name = "a.b" }, "only letters"},
		{func(v *Volume) { v.Name = strings.Repeat("x", MaxNameLen+1) }, "longer than 64"},
		{func(v *Volume) { v.Replica = 0 }, "replica count 0"},
		{func(v *Volume) { v.Bricks = nil }, "no bricks"},
		{func(v *Volume) { v.Bricks = v.Bricks[:2] }, "2 bricks is not a multiple of replica count 3"},
		{func(v *Volume) { v.Bricks[2] = v.Bricks[0] }, "listed twice"},
		{func(v *Volume) { v.Bricks[2] = Brick{"a", "/b/sub"} }, "overlap"},
		{func(v *Volume) { v.Bricks[1].Path = "rel" }, "not absolute"},
		{func(v *Volume) { v.State = "running" }, `bad state "running"`},
		{func(v *Volume) { v.Options = map[string]string{"a b": "1"} }, `option name "a b"`},
		{func(v *Volume) { v.Options = map[string]string{"k": "x\ny"} }, "control characters"},
		{func(v *Volume) { v.Options = map[string]string{"jbr.quorum-percent": "50"} }, `unknown option "jbr.quorum-percent"`},
		{func(v *Volume) { v.Options = map[string]string{OptQuorum: "1"} }, "jbr.quorum 1: volume v has 3 replicas: want a majority, 2 to 3"},
		{func(v *Volume) { v.Options = map[string]string{OptLeaseDuration: "3s"} }, "jbr.lease-duration 3s must be below jbr.lease-ttl 3s"},
		{func(v *Volume) { v.Options = map[string]string{OptLeaseDuration: "2s", OptLeaseTTL: "1"} }, "must be below jbr.lease-ttl 1s"},
	}
	for _, c := range cases {
		v := ok()
		c.edit(v)
		if err := v.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate() = %v, want %q", v, err, c.want)
		}
	}
	v := ok()
	v.Name = strings.Repeat("x", MaxNameLen)
	v.Bricks = append(v.Bricks, bricks(t, "a:/bb", "b:/c", "c:/c")...)
	v.Options = map[string]string{OptQuorum: "3", OptLeaseTTL: "5"}
	if err := v.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", v, err)
	}
}

func newStore(t *testing.T) (*Store, *clientv3.Client) {
	cli := etcdtest.Start(t)
	return NewStore(cli), cli
}

func TestCreateGetList(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	v := &Volume{Name: "vol1", Replica: 1, Bricks: bricks(t, "h:/b1"), Options: map[string]string{OptConsistency: "lease"}}
	if err := s.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if v.State != StateCreated || v.ID == "" || v.Created.IsZero() {
		t.Fatalf("Create did not fill in state, id and time: %+v", v)
	}
	got, err := s.Get(ctx, "vol1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != v.Name || got.ID != v.ID || got.Replica != 1 || len(got.Bricks) != 1 || got.Bricks[0] != v.Bricks[0] ||
		got.State != StateCreated || !got.Created.Equal(v.Created) || got.Options[OptConsistency] != "lease" {
		t.Fatalf("Get = %+v, want %+v", got, v)
	}

	err = s.Create(ctx, &Volume{Name: "vol1", Replica: 1, Bricks: bricks(t, "h:/other")})
	if err == nil || err.Error() != "volume vol1 already exists" {
		t.Fatalf("second Create: %v", err)
	}
	err = s.Create(ctx, &Volume{Name: "vol2", Replica: 1, Bricks: bricks(t, "h:/b1")})
	if err == nil || !strings.Contains(err.Error(), "brick h:/b1 is already part of volume vol1") {
		t.Fatalf("Create reusing a brick: %v", err)
	}
	err = s.Create(ctx, &Volume{Name: "vol2", Replica: 1, Bricks: bricks(t, "h:/b1/inner")})
	if err == nil || !strings.Contains(err.Error(), "overlaps brick h:/b1 of volume vol1") {
		t.Fatalf("Create nesting a brick: %v", err)
	}
	if err := s.Create(ctx, &Volume{Name: "vol2", Replica: 2, Bricks: bricks(t, "h:/b2")}); err == nil {
		t.Fatal("Create accepted an invalid volume")
	}
	if err := s.Create(ctx, &Volume{Name: "vol0", Replica: 2, Bricks: bricks(t, "h:/b2", "g:/b1"), State: StateStarted}); err == nil {
		t.Fatal("Create accepted a started volume")
	}
	if err := s.Create(ctx, &Volume{Name: "vol0", Replica: 2, Bricks: bricks(t, "h:/b2", "g:/b1")}); err != nil {
		t.Fatal(err)
	}

	vs, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Name != "vol0" || vs[1].Name != "vol1" {
		t.Fatalf("List = %+v", vs)
	}

	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) || err.Error() != "volume nope does not exist" {
		t.Fatalf("Get(nope) = %v", err)
	}
	if _, err := s.Get(ctx, "../x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(../x) = %v, want a name error", err)
	}
}

// Concurrent creates of one name, or of volumes sharing a brick, let
// exactly one through.
func TestCreateRace(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Create(ctx, &Volume{Name: "same", Replica: 1, Bricks: bricks(t, "h:/same"+string(rune('a'+i)))})
		})
		wg.Go(func() {
			errs[n+i] = s.Create(ctx, &Volume{Name: "v" + string(rune('a'+i)), Replica: 1, Bricks: bricks(t, "shared:/b")})
		})
	}
	wg.Wait()
	for _, group := range [][]error{errs[:n], errs[n:]} {
		won := 0
		for _, err := range group {
			if err == nil {
				won++
			}
		}
		if won != 1 {
			t.Errorf("%d of %d concurrent creates succeeded: %v", won, n, group)
		}
	}
}

func TestSetStateDelete(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.Create(ctx, &Volume{Name: "v", Replica: 1, Bricks: bricks(t, "h:/b")}); err != nil {
		t.Fatal(err)
	}
	state := func(want string) {
		t.Helper()
		v, err := s.Get(ctx, "v")
		if err != nil || v.State != want {
			t.Fatalf("state = %v, %v; want %s", v, err, want)
		}
	}
	mustFail := func(err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want an error containing %q", err, want)
		}
	}
	mustFail(s.SetState(ctx, "v", StateStopped), "volume v is not started")
	mustFail(s.SetState(ctx, "v", StateCreated), `cannot set state "created"`)
	mustFail(s.SetState(ctx, "nope", StateStarted), "volume nope does not exist")
	if err := s.SetState(ctx, "v", StateStarted); err != nil {
		t.Fatal(err)
	}
	state(StateStarted)
	mustFail(s.SetState(ctx, "v", StateStarted), "volume v is already started")
	mustFail(s.Delete(ctx, "v"), "volume v is started; stop it first")
	if err := s.SetState(ctx, "v", StateStopped); err != nil {
		t.Fatal(err)
	}
	state(StateStopped)
	if err := s.SetState(ctx, "v", StateStarted); err != nil {
		t.Fatal(err)
	}
	if err := s.SetState(ctx, "v", StateStopped); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "v"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
	mustFail(s.Delete(ctx, "v"), "volume v does not exist")
	// The name and the brick are free again.
	if err := s.Create(ctx, &Volume{Name: "v", Replica: 1, Bricks: bricks(t, "h:/b")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "v"); err != nil {
		t.Fatalf("Delete of a created volume: %v", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel() // waits out ConnectTimeout
	// Nothing listens on port 1 of the loopback.
	cli, err := Connect(context.Background(), []string{"127.0.0.1:1"})
	if err == nil {
		cli.Close()
		t.Fatal("Connect succeeded")
	}
	if !strings.Contains(err.Error(), "etcd unreachable at 127.0.0.1:1") {
		t.Fatalf("Connect error %q", err)
	}
	if _, err := Connect(context.Background(), nil); err == nil {
		t.Fatal("Connect(nil) succeeded")
	}
}

func TestConnect(t *testing.T) {
	cli := etcdtest.Start(t)
	c, err := Connect(context.Background(), cli.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
