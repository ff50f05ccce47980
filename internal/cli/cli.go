// Package cli is the gluon command: one binary that runs a dev cluster
// (up), bricks, mounts, and manages volumes in etcd. Main is its entry
// point; it is also mount(8)'s helper when invoked as mount.gluon.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad arguments; nothing was done
)

// usageError marks a bad invocation: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// app holds what every command shares: output streams, the logger, and
// whether a command body has started (errors before that are usage
// errors: cobra's flag and argument checks).
type app struct {
	stdout, stderr io.Writer
	logLevel       string
	logFormat      string
	log            *slog.Logger
	started        bool
}

// Main runs the gluon command line and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	// SIGHUP too: a dev cluster whose terminal goes away should unmount
	// rather than leave a dead mount behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if filepath.Base(args[0]) == mountHelperName {
		return mountHelper(ctx, args[1:], stderr)
	}
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args[1:])
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "gluon: %s\n", oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || !a.started {
		return exitUsage
	}
	return exitFailure
}

// oneLine folds cobra's multi-line messages ("Did you mean this?") into
// one line, so that every error is a single greppable line.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) > 2 && parts[1] == "Did you mean this?" {
		return fmt.Sprintf("%s (did you mean %s?)", parts[0], strings.Join(parts[2:], " or "))
	}
	return strings.Join(parts, "; ")
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "gluon",
		Short: "A pure-Go distributed filesystem built from translators",
		Long: `gluon is a distributed filesystem in pure Go, modelled on GlusterFS's
translator design. Volumes are described in etcd; bricks serve storage;
clients mount volumes with FUSE.

Start a single-machine cluster and mount it with 'gluon up'.`,
		Example: `  gluon up --mount /mnt/gluon
  gluon volume create vol0 server1:/data/brick0
  gluon mount vol0 /mnt/vol0`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(a.stderr, a.logLevel, a.logFormat)
			if err != nil {
				return usageError{err}
			}
			a.log = log
			return nil
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json (for log collectors)")
	root.AddCommand(
		a.upCmd(),
		a.brickCmd(),
		a.mountCmd(),
		a.installMountHelperCmd(),
		a.volumeCmd(),
		a.volfileCmd(),
		a.reconCmd(),
		a.versionCmd(),
		a.benchCmd(),
	)
	return root
}

// run wraps a command body: from here on, failures are runtime failures.
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.started = true
		return fn(cmd, args)
	}
}

// groupRun makes a command that only holds subcommands reject unknown ones
// instead of printing help and succeeding.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// exactArgs is cobra.ExactArgs with the argument names in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("%s: missing %s", cmdName(cmd), strings.Join(names[len(args):], " and "))
		case len(args) > len(names):
			return usagef("%s: unexpected argument %q", cmdName(cmd), args[len(names)])
		}
		return nil
	}
}

// cmdName is the command's path without the leading "gluon", which the
// error prefix already says.
func cmdName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), "gluon ")
}

// etcdFlag adds --etcd to cmd.
func etcdFlag(cmd *cobra.Command, endpoints *[]string) {
	cmd.Flags().StringSliceVar(endpoints, "etcd", etcdEndpoints(),
		"etcd endpoints, comma-separated; $GLUON_ETCD sets the default")
}
