package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// layoutChunk is the size of the writes that lay files out: large and
// sequential, the cheapest way to fill a file on every target. (fio's own
// layout writes blocks of the job's size, 4 KiB for the random jobs, each
// a round trip through FUSE to a replicated volume.)
const layoutChunk = 1 << 20

// dataFile is one laid-out file.
type dataFile struct {
	name string
	size int64
}

// dataFiles lists the files the selected workloads read or overwrite, in
// the order they are laid out.
func (s *settings) dataFiles() []dataFile {
	var read, rw bool
	for _, w := range s.workloads {
		fw, _ := fioWorkloadNamed(w)
		read = read || fw.data == dataRead
		rw = rw || fw.data == dataRW
	}
	var files []dataFile
	if read {
		files = append(files, dataFile{"read", s.readSize})
	}
	if rw {
		n := 1 // randwrite and randwrite-fsync use rw.0 alone
		if slices.Contains(s.workloads, "randrw") {
			n = s.jobs
		}
		for i := range n {
			files = append(files, dataFile{"rw." + strconv.Itoa(i), s.size})
		}
	}
	return files
}

// layoutBytes is what layoutData writes on each target.
func (s *settings) layoutBytes() int64 {
	var n int64
	for _, f := range s.dataFiles() {
		n += f.size
	}
	return n
}

// layoutData writes the files the workloads share (dataFiles) into a new
// directory on t, once, before the first round; they are reused by every
// workload and round, and removed when t is closed. A failure is recorded
// in t.dataErr, so that only the workloads needing the files fail; only
// cancellation is returned.
func layoutData(ctx context.Context, t *target, s *settings) error {
	files := s.dataFiles()
	if len(files) == 0 {
		return nil
	}
	dir, err := os.MkdirTemp(t.dir, ".gluon-bench-data-")
	if err != nil {
		t.dataErr = fmt.Errorf("lay out files: %w", err)
		return nil
	}
	t.data = dir
	closeTarget := t.close
	t.close = func() error {
		// Before the target goes away; a directory target keeps nothing.
		return errors.Join(os.RemoveAll(dir), closeTarget())
	}
	fmt.Fprintf(s.progress, "%s: laying out %s\n", t.info.Name, fmtBytes(uint64(s.layoutBytes())))
	t0 := time.Now()
	buf := make([]byte, layoutChunk)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15))
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
	for _, f := range files {
		if err := writeFile(ctx, filepath.Join(dir, f.name), f.size, buf); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			t.dataErr = fmt.Errorf("lay out %s: %w", f.name, err)
			return nil
		}
		t.info.LayoutBytes += f.size
	}
	t.info.Layout = time.Since(t0)
	fmt.Fprintf(s.progress, "%s: laid out %s in %.1fs (%.0f MiB/s)\n", t.info.Name, fmtBytes(uint64(t.info.LayoutBytes)),
		t.info.Layout.Seconds(), float64(t.info.LayoutBytes)/(1<<20)/max(t.info.Layout.Seconds(), 1e-9))
	return nil
}

// writeFile creates path with size bytes of buf's random content (each
// chunk stamped with its offset, so that no two chunks are alike), and
// fsyncs it: the data is on the target's disks before any workload runs.
func writeFile(ctx context.Context, path string, size int64, buf []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		binary.LittleEndian.PutUint64(buf, uint64(off))
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Rough costs for estimate: they only need to be good enough for a person
// to decide whether to wait.
const (
	estWorkloadOverhead = 1500 * time.Millisecond // fio start, sync, drop_caches, scratch directory
	estSlowLayoutRate   = 50 << 20                // bytes/s onto a replicated network volume
	estFastLayoutRate   = 500 << 20               // bytes/s onto the disk (local, loopback)
	estMetaRate         = 300                     // files/s GlusterFS replica 3 creates, or removes
)

// estimate is how long Run should take: setup, layout and teardown of
// every target, and every round. fio workloads are capped at the run time
// (seqread-warm twice: its untimed cold pass); meta-create takes as long
// as creating MetaFiles files at estMetaRate, at most its cap, and the
// phases after it take about as long again in total; meta-ls-big's
// directory is created and removed at estMetaRate; with DropCaches every
// cold phase waits coldSettle.
func (s *settings) estimate() time.Duration {
	var round time.Duration
	for _, w := range s.workloads {
		round += estWorkloadOverhead
		switch fw, _ := fioWorkloadNamed(w); {
		case w == WorkloadMeta:
			create := min(s.meta.CreateFor, time.Duration(s.meta.Files)*time.Second/estMetaRate)
			round += 2*create + time.Duration(2*s.meta.Big)*time.Second/estMetaRate
			if s.meta.DropCaches {
				round += time.Duration(len(s.meta.Phases())-2) * coldSettle // all but create and unlink
			}
		case fw.warm:
			round += 2 * s.runtime
		default:
			round += s.runtime
		}
	}
	total := time.Duration(s.rounds*len(s.targets)) * round
	layout := s.layoutBytes()
	for _, t := range s.targets {
		var setup time.Duration
		rate := int64(estSlowLayoutRate)
		switch t.kind {
		case kindGluon:
			setup = 15 * time.Second
		case kindGluster:
			setup = 40 * time.Second
		case kindLocal, kindLoopback, kindLoopbackNP:
			rate = estFastLayoutRate
		}
		total += setup + time.Duration(layout*int64(time.Second)/rate)
	}
	return total
}

// fmtMinutes formats a long duration as minutes and seconds.
func fmtMinutes(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return d.String()
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
