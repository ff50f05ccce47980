// Command gluon is a pure-Go distributed filesystem: a dev cluster in one
// command (gluon up), brick daemons, FUSE mounts and volume management.
// Run "gluon --help".
package main

import (
	"os"

	"github.com/gluon-fs/gluon/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdout, os.Stderr))
}
