// Package recon is gluon's reconciliation toolkit: it makes the replicas
// of a replica set converge after any sequence of failures, and lets
// operators see and drive the process (gluon recon).
//
// Replication itself (package jbrserver and its core) reconciles what the
// journals hold: a new leader, a cold start and a returning replica all
// go through its recovery, which follows the rule Decide states and
// table-tests without I/O: among a quorum, the most advanced log holds
// every acknowledged entry; it is kept and its entries after the last
// known committed one roll forward, while entries absent from it (never
// acknowledged) roll back; laggards are shipped what they lack and
// divergent tails are replaced. Decide also names the replicas whose
// needed entries are gone from the authority's journal: those need a
// full resync. gluon recon status runs it on the positions bricks report.
//
// What diverged beyond the journals (a store damaged or changed behind
// gluon's back, a replica whose journal range is gone, a replaced disk)
// is found by comparing stores by GFID (Scan and Compare: an xxhash per
// MiB of data and per xattr, mode, owner, size, symlink target) and
// repaired from the leader, copying only what differs (Repair). Verify,
// Run and Scrub do that on a running volume, reading every replica's own
// store (jbrserver.ReconKey), and record per term and per replica a
// reconciliation id in etcd (IDPrefix): a term is reconciled when every
// replica holds the same non-zero id. A full resync in progress (a
// replica behind its leader's pruned journal) is marked in etcd
// (ResyncPrefix, MarkResync) for the brick daemons to carry out.
//
// Journals are read from a copy taken by Open, never in place: the
// journal package takes an exclusive lock and repairs a torn tail when it
// opens a journal, so reading in place would need the brick stopped and
// could change what an investigation wants to see. The copy of a running
// brick's journal may end in a record that was being written; it is cut
// there, as a restart would. Entries describes a journal's records
// (gluon recon dump); Replay applies them to a bare store (gluon recon
// replay).
package recon

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gluon-fs/gluon/volfile"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Options configure Open.
type Options struct {
	// Logger receives what opening the copy reports, such as a torn last
	// record cut; default slog.Default().
	Logger *slog.Logger
	// TempDir is where the copy goes; default os.TempDir().
	TempDir string
}

// Journal is a snapshot of one brick's journal.
type Journal struct {
	// Path is the journal directory the snapshot was taken from.
	Path string
	// Segment, when Open was given one segment file, limits Entries to
	// its records.
	Segment *SegmentRange
	j       *journal.Journal
	tmp     string
}

// SegmentRange is the records one segment file holds: journal indexes
// First to Last (0: up to the end) of journal term Term.
type SegmentRange struct {
	File        string
	Term        uint64
	First, Last uint64
}

// Info describes a journal as a whole.
type Info struct {
	Path string `json:"journal"`
	// Term is the highest term the journal has started.
	Term uint64 `json:"term"`
	// FirstIndex and LastIndex bound the records held (journal indexes);
	// FirstIndex is LastIndex+1 when there are none.
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	// Applied and Synced are the journal's watermarks: every record up
	// to Applied is applied to the store (or was replaced), every record
	// up to Synced also synced to disk.
	Applied  uint64 `json:"applied"`
	Synced   uint64 `json:"synced"`
	Segments int    `json:"segments"`
	Bytes    int64  `json:"bytes"`
}

// Entry is one journal record, described for people and tools.
type Entry struct {
	// JournalTerm and JournalIndex are the record's place in this
	// brick's journal.
	JournalTerm  uint64 `json:"journal_term"`
	JournalIndex uint64 `json:"journal_index"`
	// Term and Index are the entry's place in its replica set's log, and
	// Commit the commit index its writer knew. A journal written without
	// replication (features/fdl) has no such place: Term and Index are
	// the journal's own, Commit zero.
	Term   uint64 `json:"term"`
	Index  uint64 `json:"index"`
	Commit uint64 `json:"commit,omitempty"`
	// Op is the operation (xl.Op's name), "noop" for a leader's no-op, or
	// "Ipc(NAME)".
	Op string `json:"op"`
	// Target is the object acted on (the parent directory, for entry
	// ops); Object the object made (create, mkdir, mknod, symlink) or the
	// new parent (link, rename). GFIDs in canonical form.
	Target string `json:"target,omitempty"`
	Object string `json:"object,omitempty"`
	// Name is the entry name (or xattr name); Name2 the new name (link,
	// rename) or symlink target.
	Name  string `json:"name,omitempty"`
	Name2 string `json:"name2,omitempty"`
	// Offset and Length: a write's offset and data length, a truncate's
	// size (Length), a fallocate's range, an xattr value's length, a
	// setattr's size. Mode and Flags: a create's, mknod's or mkdir's
	// mode and open flags, rename flags, a setattr's mode and valid mask,
	// a fallocate's or setxattr's flags.
	Offset int64  `json:"offset,omitempty"`
	Length int64  `json:"length,omitempty"`
	Mode   uint32 `json:"mode,omitempty"`
	Flags  uint32 `json:"flags,omitempty"`
	Uid    uint32 `json:"uid"`
	Gid    uint32 `json:"gid"`
	// Request is the request id, CLIENT/SEQ, that deduplicates retries;
	// empty when the request had none.
	Request string `json:"request,omitempty"`
	// State is "synced" (applied and synced to disk), "applied",
	// "logged" (journaled, not applied yet: uncommitted, or a crash came
	// first) or "replaced" (a later record took its place in the log:
	// an entry from a deposed leader, never applied).
	State string `json:"state"`
}

// Entry states.
const (
	StateLogged   = "logged"
	StateApplied  = "applied"
	StateSynced   = "synced"
	StateReplaced = "replaced"
)

// copyAttempts bounds retries of a copy that caught a running brick's
// journal mid-write in a way that reads as damage.
const copyAttempts = 3

// Open takes a snapshot of the journal at path: a brick directory (its
// journal is volfile.JournalDir inside), a journal directory, or one of a
// journal's segment files (term-TERM-FIRST.log). Close removes the copy.
func Open(path string, opts Options) (*Journal, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, seg, err := locate(path)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range copyAttempts {
		tmp, err := os.MkdirTemp(opts.TempDir, "gluon-recon-")
		if err != nil {
			return nil, err
		}
		if err := copyJournal(dir, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		j, err := journal.Open(tmp, journal.Options{Logger: opts.Logger.With("journal", dir, "copy", tmp)})
		if err == nil {
			return &Journal{Path: dir, Segment: seg, j: j, tmp: tmp}, nil
		}
		os.RemoveAll(tmp)
		if !errors.Is(err, journal.ErrCorrupt) {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("%s: %w (read %d times)", dir, lastErr, copyAttempts)
}

// locate finds the journal directory for path, and the segment it names.
func locate(path string) (dir string, seg *SegmentRange, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	if !fi.IsDir() {
		term, first, ok := parseSegName(filepath.Base(path))
		if !ok {
			return "", nil, fmt.Errorf("%s: not a journal segment (term-TERM-FIRST.log), brick or journal directory", path)
		}
		dir = filepath.Dir(path)
		seg = &SegmentRange{File: path, Term: term, First: first}
		segs, err := segments(dir)
		if err != nil {
			return "", nil, err
		}
		if i := slices.IndexFunc(segs, func(s segName) bool { return s.term == term && s.first == first }); i >= 0 && i+1 < len(segs) {
			seg.Last = segs[i+1].first - 1
		}
		return dir, seg, nil
	}
	for _, d := range []string{filepath.Join(path, volfile.JournalDir), path} {
		if isJournal(d) {
			return d, nil, nil
		}
	}
	return "", nil, fmt.Errorf("%s: no journal here or in %s (a brick of a replicated volume keeps one there)", path, volfile.JournalDir)
}

// isJournal reports whether dir looks like a journal directory.
func isJournal(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "term")); err == nil {
		return true
	}
	segs, _ := segments(dir)
	return len(segs) > 0
}

type segName struct {
	name        string
	term, first uint64
}

func parseSegName(name string) (term, first uint64, ok bool) {
	rest, found := strings.CutPrefix(name, "term-")
	if !found {
		return 0, 0, false
	}
	rest, found = strings.CutSuffix(rest, ".log")
	t, f, found2 := strings.Cut(rest, "-")
	if !found || !found2 || len(t) != 16 || len(f) != 16 {
		return 0, 0, false
	}
	term, err1 := strconv.ParseUint(t, 16, 64)
	first, err2 := strconv.ParseUint(f, 16, 64)
	return term, first, err1 == nil && err2 == nil
}

// segments lists dir's segment files in journal order.
func segments(dir string) ([]segName, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segName
	for _, e := range ents {
		if t, f, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, segName{e.Name(), t, f})
		}
	}
	slices.SortFunc(out, func(a, b segName) int {
		return cmp.Or(cmp.Compare(a.term, b.term), cmp.Compare(a.first, b.first))
	})
	return out, nil
}

// copyJournal copies the journal in src to dst: the segments first, then
// the state files, so that the copied term file is at least as new as
// every copied segment. Runs of zeros (segments' preallocated tails) stay
// holes.
func copyJournal(src, dst string) error {
	segs, err := segments(src)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(segs)+3)
	for _, s := range segs {
		names = append(names, s.name)
	}
	names = append(names, "term", "synced", "applied")
	for _, name := range names {
		if err := copySparse(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // pruned meanwhile, or a state file not written yet
			}
			return err
		}
	}
	return nil
}

func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var size int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			chunk := buf[:n]
			if !allZero(chunk) {
				if _, werr := out.WriteAt(chunk, size); werr != nil {
					out.Close()
					return werr
				}
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Close closes and removes the snapshot.
func (j *Journal) Close() error {
	err := j.j.Close()
	return errors.Join(err, os.RemoveAll(j.tmp))
}

// Info describes the journal.
func (j *Journal) Info() Info {
	st := j.j.Stat()
	return Info{
		Path: j.Path, Term: st.Term, FirstIndex: st.FirstIndex, LastIndex: st.LastIndex,
		Applied: st.Applied, Synced: st.Synced, Segments: st.Segments, Bytes: st.Bytes,
	}
}

// Filter selects entries.
type Filter struct {
	// Term, if not zero, selects the entries of that term (the
	// replicated term where there is one).
	Term uint64
}

// Entries calls fn, in journal order, for every record that f selects
// (and that the segment given to Open holds). An error from fn stops the
// walk and is returned.
func (j *Journal) Entries(f Filter, fn func(*Entry) error) error {
	replaced, err := j.replaced()
	if err != nil {
		return err
	}
	applied, synced := j.j.Applied(), j.j.Synced()
	from := uint64(0)
	if j.Segment != nil {
		from = j.Segment.First
	}
	stop := errors.New("stop")
	err = j.j.Iterate(0, from, func(rec *journal.Record) error {
		// Indexes are dense and grow across terms: the segment's records
		// come first, and the first record past them ends the walk.
		if s := j.Segment; s != nil && (rec.Term != s.Term || s.Last != 0 && rec.Index > s.Last) {
			return stop
		}
		e := describe(rec)
		if f.Term != 0 && e.Term != f.Term {
			return nil
		}
		switch {
		case replaced[rec.Index]:
			e.State = StateReplaced
		case rec.Index <= synced:
			e.State = StateSynced
		case rec.Index <= applied:
			e.State = StateApplied
		default:
			e.State = StateLogged
		}
		return fn(e)
	})
	if err == stop {
		return nil
	}
	return err
}

// replaced finds the records whose log index a later record took over:
// the log keeps, for every index, the last record written for it, and a
// record for index i replaces every earlier record for i or beyond.
func (j *Journal) replaced() (map[uint64]bool, error) {
	type held struct{ jidx, index uint64 }
	var live []held // indexes increasing
	out := map[uint64]bool{}
	err := j.j.Iterate(0, 0, func(rec *journal.Record) error {
		_, index, _, ok := jbrserver.Position(rec)
		if !ok {
			return nil
		}
		for len(live) > 0 && live[len(live)-1].index >= index {
			out[live[len(live)-1].jidx] = true
			live = live[:len(live)-1]
		}
		live = append(live, held{rec.Index, index})
		return nil
	})
	return out, err
}

// describe turns a record into an Entry, State aside.
func describe(rec *journal.Record) *Entry {
	f, c := &rec.Fop, &rec.Call
	e := &Entry{
		JournalTerm: rec.Term, JournalIndex: rec.Index,
		Term: rec.Term, Index: rec.Index,
		Op:  f.Op.String(),
		Uid: c.Uid, Gid: c.Gid,
		Name: f.Name, Name2: f.Name2,
	}
	if t, i, commit, ok := jbrserver.Position(rec); ok {
		e.Term, e.Index, e.Commit = t, i, commit
	}
	if c.Seq != 0 {
		e.Request = fmt.Sprintf("%s/%d", xl.GFID(c.Client), c.Seq)
	}
	if f.Op == xl.OpIpc {
		e.Op, e.Name = "Ipc("+f.Name+")", ""
		if jbrserver.IsNoop(rec) {
			e.Op = "noop"
		}
		return e
	}
	if g := f.Target(); !g.IsZero() {
		e.Target = g.String()
	}
	switch f.Op {
	case xl.OpMknod, xl.OpMkdir, xl.OpSymlink, xl.OpCreate, xl.OpLink, xl.OpRename:
		e.Object = f.GFID2.String()
	}
	switch f.Op {
	case xl.OpWrite:
		e.Offset, e.Length = f.Off, int64(len(f.Data))
	case xl.OpFallocate:
		e.Offset, e.Length, e.Flags = f.Off, f.Len, f.Flags
	case xl.OpTruncate:
		e.Length = f.Len
	case xl.OpSetxattr:
		e.Length, e.Flags = int64(len(f.Data)), f.Flags
	case xl.OpSetattr:
		e.Flags, e.Mode, e.Length = f.Setattr.Valid, f.Setattr.Mode, int64(f.Setattr.Size)
	case xl.OpCreate, xl.OpMknod, xl.OpMkdir, xl.OpOpen, xl.OpRename:
		e.Mode, e.Flags = f.Mode, f.Flags
	}
	return e
}
