// Package deps pins the module's dependencies while the packages that use
// them are being written. Delete once every import is real.
package deps

import (
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/klauspost/reedsolomon"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
)
