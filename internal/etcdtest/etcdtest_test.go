package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStart(t *testing.T) {
	cli := Start(t)
	ctx := context.Background()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("get k = %v, %v", r, err)
	}
}

// Two members at once must not clash on ports.
func TestStartTwice(t *testing.T) {
	a, b := Start(t), Start(t)
	ctx := context.Background()
	if _, err := a.Put(ctx, "k", "a"); err != nil {
		t.Fatal(err)
	}
	r, err := b.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("second member sees first's key: %v, %v", r, err)
	}
}

// A development cluster keeps its data across restarts of gluon up.
func TestStartServerReopens(t *testing.T) {
	dir := t.TempDir()
	put := func(s *Embedded, k, v string) {
		t.Helper()
		cli := client(t, s)
		defer cli.Close()
		if _, err := cli.Put(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	s, err := StartServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Endpoints()) != 1 {
		t.Fatalf("endpoints %v, want one", s.Endpoints())
	}
	put(s, "k", "v1")
	s.Close()

	s, err = StartServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cli := client(t, s)
	defer cli.Close()
	r, err := cli.Get(context.Background(), "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v1" {
		t.Fatalf("after restart get k = %v, %v", r, err)
	}
	put(s, "k", "v2")
}

func TestStartServerEmptyDir(t *testing.T) {
	if _, err := StartServer(""); err == nil {
		t.Fatal("StartServer(\"\") succeeded")
	}
}

func client(t *testing.T, s *Embedded) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}
