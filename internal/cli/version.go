package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the release, set at link time:
//
//	go build -ldflags "-X github.com/gluon-fs/gluon/internal/cli.Version=v0.1.0"
//
// Otherwise it is the module version when installed with go install, or
// "devel".
var Version = moduleVersion()

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the gluon version",
		Long:    "Print the gluon version, the Go version it was built with, and the platform.",
		Example: "  gluon version",
		Args:    exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(a.stdout, "gluon %s %s %s/%s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		}),
	}
}
