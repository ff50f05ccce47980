package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gluon-fs/gluon/bench"
)

func (a *app) benchCmd() *cobra.Command {
	var (
		cfg                bench.Config
		jsonPath, plotPath string
	)
	cmd := &cobra.Command{
		Use:   "bench [flags] TARGET...",
		Short: "Benchmark gluon against the bare disk, a Go FUSE loopback and GlusterFS",
		Long: `Run the fio and metadata workloads of the reference suite on every
TARGET and print a table of the median result, p50/p99 latency, the ratio
to the first TARGET, and the CPU time and peak memory of the processes
serving each target. Put the system under test first.

A TARGET is one of:
  local                             a temporary directory on the disk
  loopback                          a go-fuse loopback mount of one, in this process, with
                                    FUSE passthrough where the kernel has it: the ceiling
  loopback-np                       the same with passthrough off, so the daemon serves
                                    every read and write, as gluon's client does
  loopback-r3                       loopback-np keeping three copies of every file on the
                                    disk, fsync at a quorum of two: the replicated ceiling
  gluon:replica=N[,distribute=M]    a volume started with 'gluon up'
  gluster:replica=N[,distribute=M]  a GlusterFS volume on this host (glusterfs-server)
  DIR                               an existing directory, e.g. a mount point

Every target is set up once; the rounds run interleaved, in an order that
changes every round; everything is torn down at the end.

The workloads are those of the reference suite (fio job files in bench/jobs):
  ` + strings.Join(bench.Workloads(), " ") + `
Their input files are laid out once per target, before the first round.
fio workloads run --runtime each (one-pass ones at most that long);
meta-create stops at --meta-create-for (default --runtime); the progress
starts with an estimate of the total time. The cold ones (and the meta
phases that read) drop the kernel caches first, which needs root (see
--keep-caches); the meta phases then wait 1.1 s for GlusterFS's
client-side metadata cache to expire. Needs fio, unless only meta runs. Progress goes to stderr
when it is a terminal.

meta runs meta-create, meta-stat, meta-ls (ls -l of every directory),
meta-find (find over the tree), meta-ls-big (ls -l of one directory of
--meta-big files, if set), meta-read and meta-unlink.`,
		Example: `  gluon bench gluon:replica=3 loopback local
  gluon bench --rounds 5 --json out.json --plot out.svg gluon:replica=3 gluster:replica=3 local
  gluon bench --runtime 5s --size 16M --workloads randwrite,meta /mnt/gluon local
  gluon bench --rounds 1 --workloads meta --meta-files 50000 --meta-workers 4 --meta-dirs 200 \
      --meta-big 10000 --meta-create-for 30m gluon:replica=3,distribute=3 gluster:replica=3,distribute=3`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s: missing TARGET (local, loopback, loopback-np, loopback-r3, gluon:replica=N, gluster:replica=N or a directory)", cmdName(cmd))
			}
			return nil
		},
		PreRunE: func(cmd *cobra.Command, args []string) error {
			cfg.Targets = args
			// A zero Config field means "default"; on the command line
			// it is a mistake.
			switch {
			case cfg.Rounds < 1:
				return usagef("--rounds %d: need at least 1", cfg.Rounds)
			case cfg.Runtime <= 0:
				return usagef("--runtime %v: must be positive", cfg.Runtime)
			case cfg.Jobs < 1:
				return usagef("--jobs %d: need at least 1", cfg.Jobs)
			case cfg.MetaWorkers < 1:
				return usagef("--meta-workers %d: need at least 1", cfg.MetaWorkers)
			case cfg.MetaFiles < 1:
				return usagef("--meta-files %d: need at least 1", cfg.MetaFiles)
			case cfg.MetaDirs < 1:
				return usagef("--meta-dirs %d: need at least 1", cfg.MetaDirs)
			case cfg.MetaBig < 0:
				return usagef("--meta-big %d: must not be negative", cfg.MetaBig)
			case cmd.Flags().Changed("meta-create-for") && cfg.MetaCreateFor <= 0:
				return usagef("--meta-create-for %v: must be positive", cfg.MetaCreateFor)
			case cfg.Size == "":
				return usagef("--size: empty")
			case cmd.Flags().Changed("workloads") && len(cfg.Workloads) == 0:
				return usagef("--workloads: empty")
			}
			if plotPath != "" && plotWriter(plotPath) == nil {
				return usagef("--plot %s: name it FILE.svg or FILE.png", plotPath)
			}
			if jsonPath != "" && plotPath != "" && filepath.Clean(jsonPath) == filepath.Clean(plotPath) {
				return usagef("--json and --plot both name %s", jsonPath)
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			return a.bench(cmd, cfg, jsonPath, plotPath)
		}),
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Rounds, "rounds", bench.DefaultRounds, "run every workload on every target `N` times; the table shows medians")
	f.DurationVar(&cfg.Runtime, "runtime", bench.DefaultRuntime, "run time of each fio workload (the cap of the one-pass ones, and by default of meta-create)")
	f.StringVar(&cfg.Size, "size", bench.DefaultSize, "file `SIZE` per job of randwrite, randwrite-fsync and randrw (K, M, G)")
	f.StringVar(&cfg.ReadSize, "read-size", "", "`SIZE` of the file seqwrite writes and the read workloads read (default 4 x --size)")
	f.IntVar(&cfg.Jobs, "jobs", bench.DefaultJobs, "parallel fio jobs of randrw")
	f.IntVar(&cfg.MetaWorkers, "meta-workers", bench.DefaultMetaWorkers, "parallel workers of meta")
	f.IntVar(&cfg.MetaFiles, "meta-files", bench.DefaultMetaFiles, "files meta creates (fewer if meta-create reaches --meta-create-for first)")
	f.IntVar(&cfg.MetaDirs, "meta-dirs", bench.DefaultMetaDirs, "directories meta spreads its files over, dealt out to the workers in turn: worker w of N fills directories w, w+N, w+2N, ...")
	f.IntVar(&cfg.MetaBig, "meta-big", 0, "files in the directory meta-ls-big lists with ls -l (0: no meta-ls-big)")
	f.DurationVar(&cfg.MetaCreateFor, "meta-create-for", 0, "cap of meta-create (default --runtime); set it high to create all --meta-files on every target")
	f.StringSliceVar(&cfg.Workloads, "workloads", nil, "comma-separated `LIST` of workloads to run (default all)")
	f.BoolVar(&cfg.KeepCaches, "keep-caches", false, "do not drop the kernel caches before cold runs (no root needed; they are then not cold)")
	f.StringVar(&cfg.WorkDir, "work-dir", "", "`DIR` for the files of local, loopback, gluon and gluster (default $TMPDIR or /tmp)")
	f.StringVar(&jsonPath, "json", "", "also write the whole report as JSON to `FILE`")
	f.StringVar(&plotPath, "plot", "", "also draw the summary as a chart in `FILE`.svg or FILE.png")
	f.StringVar(&cfg.RawDir, "raw", "", "keep fio's JSON output of every run in `DIR`")
	return cmd
}

// bench runs the benchmark and writes its outputs.
func (a *app) bench(cmd *cobra.Command, cfg bench.Config, jsonPath, plotPath string) (err error) {
	// Create the output files before the run, so that a bad path fails
	// now rather than after the benchmark.
	var outs []*outputFile
	defer func() {
		for _, o := range outs {
			o.discard()
		}
	}()
	var jsonOut, plotOut *outputFile
	if jsonPath != "" {
		if jsonOut, err = createOutput(jsonPath); err != nil {
			return err
		}
		outs = append(outs, jsonOut)
	}
	if plotPath != "" {
		if plotOut, err = createOutput(plotPath); err != nil {
			return err
		}
		outs = append(outs, plotOut)
	}

	cfg.Logger = a.log
	if f, ok := a.stderr.(*os.File); ok {
		cfg.Progress = bench.TerminalProgress(f)
	}
	rep, runErr := bench.Run(cmd.Context(), cfg)
	if rep == nil {
		if cmd.Context().Err() != nil {
			return errors.New("bench: interrupted; no report")
		}
		return runErr
	}
	// The report is complete even when tearing a target down failed.
	if err := rep.WriteTable(a.stdout); err != nil {
		return err
	}
	if jsonOut != nil {
		if err := jsonOut.commit(rep.WriteJSON); err != nil {
			return err
		}
	}
	if plotOut != nil {
		if err := plotOut.commit(plotWriter(plotPath)(rep)); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	failed := 0
	for _, r := range rep.Results {
		if r.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("bench: %d of %d runs failed (see failures: below the table)", failed, len(rep.Results))
	}
	return nil
}

// plotWriter returns the method of bench.Report that draws a chart in the
// format plot's extension names, or nil for an unknown extension.
func plotWriter(plot string) func(*bench.Report) func(io.Writer) error {
	switch strings.ToLower(filepath.Ext(plot)) {
	case ".svg":
		return func(r *bench.Report) func(io.Writer) error { return r.WriteSVG }
	case ".png":
		return func(r *bench.Report) func(io.Writer) error { return r.WritePNG }
	}
	return nil
}

// outputFile is a file written at the end of the run: a temporary file
// beside it until then, renamed into place once complete, so that an
// interrupted run never leaves a truncated report.
type outputFile struct {
	path string
	tmp  *os.File
}

func createOutput(path string) (*outputFile, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, err
	}
	return &outputFile{path: path, tmp: tmp}, nil
}

// commit writes the file with write and moves it into place.
func (o *outputFile) commit(write func(io.Writer) error) error {
	err := write(o.tmp)
	if cerr := o.tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(o.tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(o.tmp.Name(), o.path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	o.tmp = nil
	return nil
}

// discard removes the temporary file unless commit moved it into place.
func (o *outputFile) discard() {
	if o.tmp != nil {
		o.tmp.Close()
		os.Remove(o.tmp.Name())
	}
}
