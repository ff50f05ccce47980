package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func open(t testing.TB, dir string, opts Options) *Journal {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(&logBuf{}, nil))
	}
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return j
}

func closeJ(t testing.TB, j *Journal) {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// fullRecord sets every field a record carries.
func fullRecord(o xl.Op, i int) *Record {
	data := bytes.Repeat([]byte{byte(i), 0xa5}, 100+i)
	return &Record{
		Flags: uint16(i),
		Call: xl.Call{
			Uid: uint32(1000 + i), Gid: 100, Groups: []uint32{4, 24, 27}, Pid: 4242,
			Client: [16]byte{1, 2, 3, byte(i)}, Seq: uint64(i) << 33,
			Xdata: xl.Xdata{"trusted.jbr.term": {7}, "empty": {}},
		},
		Fop: xl.Fop{
			Op: o, GFID: xl.NewGFID(), GFID2: xl.NewGFID(),
			Name: fmt.Sprintf("name-%d", i), Name2: "target/ünïcode",
			Fd:    xl.Fd{GFID: xl.NewGFID(), H: 1<<63 | uint64(i), Flags: 0o2002},
			Flags: 0xdeadbeef, Mode: 0o100644, Rdev: 1 << 40, Off: -12345, Len: 5 << 30,
			Setattr: xl.SetattrIn{
				Valid: xl.SetMode | xl.SetMtime, Mode: 0o640, Uid: 1, Gid: 2, Size: 3 << 32,
				Atime: xl.Timespec{Sec: -5, Nsec: 999999999}, Mtime: xl.Timespec{Sec: 1 << 40, Nsec: 6},
			},
			Xdata: xl.Xdata{"k": []byte("v"), "k2": bytes.Repeat([]byte("x"), 300)},
			Data:  data,
		},
	}
}

func appendT(t testing.TB, j *Journal, rec *Record) uint64 {
	t.Helper()
	idx, err := j.Append(context.Background(), rec)
	if err != nil {
		t.Fatalf("Append(%v): %v", rec.Fop.Op, err)
	}
	return idx
}

func collect(t testing.TB, j *Journal, fromTerm, fromIndex uint64) []*Record {
	t.Helper()
	var out []*Record
	if err := j.Iterate(fromTerm, fromIndex, func(r *Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Iterate(%d, %d): %v", fromTerm, fromIndex, err)
	}
	return out
}

func indexes(recs []*Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Index)
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestRoundTripEveryOp(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(3); err != nil {
		t.Fatal(err)
	}
	var want []*Record
	for o := xl.Op(1); o.Valid(); o++ {
		r := fullRecord(o, int(o))
		r.Index = appendT(t, j, r)
		r.Term = 3
		want = append(want, r)
	}
	// A record with every optional field empty comes back empty.
	bare := &Record{Fop: xl.Fop{Op: xl.OpUnlink, GFID: xl.RootGFID, Name: "x"}}
	bare.Index, bare.Term = appendT(t, j, bare), 3
	want = append(want, bare)

	check := func(got []*Record) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("iterated %d records, want %d", len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("record %d (%v):\n got %+v\nwant %+v", i, want[i].Fop.Op, got[i], want[i])
			}
		}
	}
	check(collect(t, j, 0, 0))
	closeJ(t, j)
	j = open(t, dir, Options{})
	defer closeJ(t, j)
	check(collect(t, j, 0, 0))
}

func TestAppendValidation(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	defer closeJ(t, j)
	ctx := context.Background()
	if _, err := j.Append(ctx, fullRecord(xl.OpWrite, 1)); !errors.Is(err, ErrNoTerm) {
		t.Fatalf("Append before any term = %v, want ErrNoTerm", err)
	}
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(ctx, &Record{Fop: xl.Fop{Op: 200}}); err == nil {
		t.Fatal("Append of an unknown op succeeded")
	}
	huge := fullRecord(xl.OpWrite, 1)
	huge.Fop.Data = make([]byte, MaxRecordSize)
	if _, err := j.Append(ctx, huge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Append = %v, want ErrTooLarge", err)
	}
	if _, err := j.Append(ctx, &Record{Term: 2, Fop: xl.Fop{Op: xl.OpWrite}}); !errors.Is(err, ErrTerm) {
		t.Fatalf("Append with a foreign term = %v, want ErrTerm", err)
	}
	if _, err := j.Append(ctx, &Record{Index: 5, Fop: xl.Fop{Op: xl.OpWrite}}); !errors.Is(err, ErrIndex) {
		t.Fatalf("Append with a skipped index = %v, want ErrIndex", err)
	}
	if idx, err := j.Append(ctx, &Record{Term: 1, Index: 1, Fop: xl.Fop{Op: xl.OpWrite}}); err != nil || idx != 1 {
		t.Fatalf("Append with the right term and index = %d, %v", idx, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := j.Append(cancelled, fullRecord(xl.OpWrite, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v", err)
	}
	if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("journal holds %v after refused appends, want [1]", got)
	}
}

// 64 concurrent appenders: every record lands once, with dense unique
// indexes, and carries what its appender wrote.
func TestGroupCommitConcurrent(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{SegmentSize: 256 << 10})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	const writers, each = 64, 40
	got := make([][]uint64, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := &Record{Call: xl.Call{Seq: uint64(w*each + i)}, Fop: xl.Fop{Op: xl.OpWrite, Data: bytes.Repeat([]byte{byte(w)}, 1000+i)}}
				idx, err := j.Append(context.Background(), r)
				if err != nil {
					errs <- err
					return
				}
				got[w] = append(got[w], idx)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	bySeq := map[uint64]uint64{}
	var all []uint64
	for w := range writers {
		if !slices.IsSorted(got[w]) {
			t.Errorf("writer %d saw indexes out of order: %v", w, got[w])
		}
		for i, idx := range got[w] {
			bySeq[uint64(w*each+i)] = idx
		}
		all = append(all, got[w]...)
	}
	slices.Sort(all)
	if !slices.Equal(all, seq(1, writers*each)) {
		t.Fatalf("indexes are not 1..%d, unique and dense: %v", writers*each, all)
	}
	check := func() {
		t.Helper()
		recs := collect(t, j, 0, 0)
		if len(recs) != writers*each {
			t.Fatalf("iterated %d records, want %d", len(recs), writers*each)
		}
		for _, r := range recs {
			w, i := int(r.Call.Seq)/each, int(r.Call.Seq)%each
			if bySeq[r.Call.Seq] != r.Index || !bytes.Equal(r.Fop.Data, bytes.Repeat([]byte{byte(w)}, 1000+i)) {
				t.Fatalf("record %d (seq %d) does not hold what writer %d appended as %d", r.Index, r.Call.Seq, w, bySeq[r.Call.Seq])
			}
		}
	}
	check()
	if st := j.Stat(); st.Segments < 2 || st.LastIndex != writers*each {
		t.Errorf("Stat = %+v: want several segments and last index %d", st, writers*each)
	}
	closeJ(t, j)
	j = open(t, dir, Options{SegmentSize: 256 << 10})
	defer closeJ(t, j)
	check()
}

func TestReopenKeepsEverythingAndContinues(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		appendT(t, j, fullRecord(xl.OpWrite, i))
	}
	closeJ(t, j)
	for round := range 3 {
		j = open(t, dir, Options{})
		if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, seq(1, uint64(10+round))) {
			t.Fatalf("round %d: after reopen the journal holds %v", round, got)
		}
		if j.Term() != 1 {
			t.Fatalf("round %d: term %d after reopen, want 1 resumed", round, j.Term())
		}
		if idx := appendT(t, j, fullRecord(xl.OpMkdir, round)); idx != uint64(11+round) {
			t.Fatalf("round %d: append after reopen got index %d, want %d", round, idx, 11+round)
		}
		closeJ(t, j)
	}
	// Open never truncated: still one segment, every record present.
	segs, _ := filepath.Glob(filepath.Join(dir, "term-*.log"))
	if len(segs) != 1 {
		t.Errorf("segments %v, want one", segs)
	}
}

// segFiles lists segment paths in order.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "term-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(segs)
	return segs
}

// recordOffsets returns the offset of every record in a segment.
func recordOffsets(t testing.TB, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var term, first uint64
	term, first, _ = parseSegName(filepath.Base(path))
	salt, err := parseSegHeader(data, term, first)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for off := segHeaderSize; ; {
		h, err := parseHeader(data[off:], salt)
		if err != nil {
			return offs
		}
		offs = append(offs, off)
		off += pad8(h.length)
	}
}

func TestTornTailIsCut(t *testing.T) {
	cases := map[string]func(t *testing.T, path string, last int){
		"truncated mid-record": func(t *testing.T, path string, last int) {
			if err := os.Truncate(path, int64(last+100)); err != nil {
				t.Fatal(err)
			}
		},
		"checksum mismatch": func(t *testing.T, path string, last int) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xff, 0xfe}, int64(last+200)); err != nil {
				t.Fatal(err)
			}
		},
		"garbage after the last record": func(t *testing.T, path string, last int) {
			data, _ := os.ReadFile(path)
			end := last + pad8(int(uint32(data[last+4])|uint32(data[last+5])<<8|uint32(data[last+6])<<16))
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("this is not a journal record"), int64(end)); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, dir, Options{SegmentSize: 1 << 20})
			if err := j.StartTerm(1); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				appendT(t, j, fullRecord(xl.OpWrite, i))
			}
			closeJ(t, j)
			path := segFiles(t, dir)[0]
			offs := recordOffsets(t, path)
			damage(t, path, offs[4])
			keep := 4
			if name == "garbage after the last record" {
				keep = 5
			}

			logs := &logBuf{}
			j = open(t, dir, Options{SegmentSize: 1 << 20, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			wantOff := offs[4]
			if keep == 5 {
				wantOff = offs[4] + pad8(encodedSize(fullRecord(xl.OpWrite, 4)))
			}
			if l := logs.String(); !strings.Contains(l, "cutting torn tail") || !strings.Contains(l, path) || !strings.Contains(l, fmt.Sprintf("offset=%d", wantOff)) {
				t.Errorf("no warning naming %s offset %d; log:\n%s", path, wantOff, l)
			}
			if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, seq(1, uint64(keep))) {
				t.Fatalf("after the cut the journal holds %v, want 1..%d", got, keep)
			}
			if idx := appendT(t, j, fullRecord(xl.OpCreate, 9)); idx != uint64(keep+1) {
				t.Fatalf("append after the cut got index %d, want %d", idx, keep+1)
			}
			closeJ(t, j)

			logs = &logBuf{}
			j = open(t, dir, Options{SegmentSize: 1 << 20, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			defer closeJ(t, j)
			if l := logs.String(); strings.Contains(l, "level=WARN") {
				t.Errorf("second open after the cut warned:\n%s", l)
			}
			recs := collect(t, j, 0, 0)
			if got := indexes(recs); !slices.Equal(got, seq(1, uint64(keep+1))) || recs[keep].Fop.Op != xl.OpCreate {
				t.Fatalf("after reopen the journal holds %v", got)
			}
		})
	}
}

// writeBatchRaw appends records to a closed journal's last segment as one
// unsynced batch would have: consecutive, each claiming durable.
func writeBatchRaw(t *testing.T, path string, from uint64, n int, durable []uint64) (offs []int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	term, first, _ := parseSegName(filepath.Base(path))
	salt, err := parseSegHeader(data, term, first)
	if err != nil {
		t.Fatal(err)
	}
	o := recordOffsets(t, path)
	h, _ := parseHeader(data[o[len(o)-1]:], salt)
	off := o[len(o)-1] + pad8(h.length)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range n {
		r := fullRecord(xl.OpWrite, i)
		size := encodedSize(r)
		buf := encode(r, size)
		seal(buf, term, from+uint64(i), durable[i], salt)
		if _, err := f.WriteAt(buf, int64(off)); err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		off += len(buf)
	}
	return offs
}

func corruptAt(t *testing.T, path string, off int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0x5a, 0x5a, 0x5a}, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func TestMiddleCorruptionIsAnError(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // sequential: each its own batch
		appendT(t, j, fullRecord(xl.OpWrite, i))
	}
	closeJ(t, j)
	path := segFiles(t, dir)[0]
	corruptAt(t, path, recordOffsets(t, path)[2]+300)
	_, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logBuf{}, nil))})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open with a damaged middle record = %v, want ErrCorrupt naming %s", err, path)
	}
	// The journal was left alone: the intact records after the damage
	// are still on disk.
	if n := len(recordOffsets(t, path)); n != 2 {
		t.Fatalf("%d intact leading records, want 2", n)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, fullRecord(xl.OpWrite, 4).Fop.Data) {
		t.Fatal("records after the damage were removed")
	}
}

// Damage inside the last batch, followed by records of that same batch,
// is a torn write (the batch was never acknowledged); followed by a
// record queued after the damaged one was durable, it is corruption.
func TestTornBatchVersusLaterBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		durable []uint64
		wantErr bool
	}{
		{"same batch", []uint64{2, 2, 2}, false},
		{"later batch", []uint64{2, 2, 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, dir, Options{})
			if err := j.StartTerm(1); err != nil {
				t.Fatal(err)
			}
			appendT(t, j, fullRecord(xl.OpWrite, 0))
			appendT(t, j, fullRecord(xl.OpWrite, 1))
			closeJ(t, j)
			path := segFiles(t, dir)[0]
			offs := writeBatchRaw(t, path, 3, 3, tc.durable)
			corruptAt(t, path, offs[0]+100)

			logs := &logBuf{}
			j, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if tc.wantErr {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer closeJ(t, j)
			if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, []uint64{1, 2}) {
				t.Fatalf("journal holds %v, want the torn batch cut after 2", got)
			}
			if !strings.Contains(logs.String(), fmt.Sprintf("offset=%d", offs[0])) {
				t.Fatalf("cut not logged at offset %d:\n%s", offs[0], logs)
			}
		})
	}
}

func TestTermsAreNeverReused(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(5); err != nil {
		t.Fatal(err)
	}
	for _, old := range []uint64{5, 3, 0} {
		if err := j.StartTerm(old); !errors.Is(err, ErrStaleTerm) {
			t.Fatalf("StartTerm(%d) after 5 = %v, want ErrStaleTerm", old, err)
		}
	}
	appendT(t, j, fullRecord(xl.OpMkdir, 1))
	closeJ(t, j)

	j = open(t, dir, Options{})
	if j.Term() != 5 {
		t.Fatalf("Term after reopen = %d, want 5", j.Term())
	}
	if err := j.StartTerm(5); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("StartTerm(5) after reopen = %v, want ErrStaleTerm", err)
	}
	if err := j.StartTerm(7); err != nil {
		t.Fatal(err)
	}
	closeJ(t, j)
	// A term started without records is still used.
	j = open(t, dir, Options{})
	defer closeJ(t, j)
	if err := j.StartTerm(6); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("StartTerm(6) after 7 was started = %v, want ErrStaleTerm", err)
	}
	r := fullRecord(xl.OpMkdir, 2)
	if idx := appendT(t, j, r); idx != 2 {
		t.Fatalf("index %d in term 7, want 2", idx)
	}
	recs := collect(t, j, 7, 0)
	if len(recs) != 1 || recs[0].Term != 7 || recs[0].Index != 2 {
		t.Fatalf("Iterate(7, 0) = %v", indexes(recs))
	}
	if names := segFiles(t, dir); len(names) != 2 || filepath.Base(names[1]) != segName(7, 2) {
		t.Fatalf("segments %v", names)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const segSize = 8192
	j := open(t, dir, Options{SegmentSize: segSize})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		appendT(t, j, fullRecord(xl.OpWrite, i)) // ~700 bytes each
	}
	big := fullRecord(xl.OpWrite, 99)
	big.Fop.Data = make([]byte, 3*segSize) // larger than a segment: gets one to itself
	appendT(t, j, big)
	appendT(t, j, fullRecord(xl.OpUnlink, 1))
	closeJ(t, j)

	names := segFiles(t, dir)
	if len(names) < 4 {
		t.Fatalf("only %d segments for 42 records of 8 KiB segments", len(names))
	}
	prevFirst := uint64(0)
	for i, p := range names {
		term, first, ok := parseSegName(filepath.Base(p))
		if !ok || term != 1 || first <= prevFirst {
			t.Fatalf("segment %s out of order", p)
		}
		prevFirst = first
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if i < len(names)-1 && fi.Size() > segSize && first != 41 {
			t.Errorf("sealed segment %s is %d bytes, more than the segment size", p, fi.Size())
		}
	}
	j = open(t, dir, Options{SegmentSize: segSize})
	defer closeJ(t, j)
	recs := collect(t, j, 0, 0)
	if got := indexes(recs); !slices.Equal(got, seq(1, 42)) {
		t.Fatalf("after rotation the journal holds %v", got)
	}
	if len(recs[40].Fop.Data) != 3*segSize {
		t.Fatal("oversized record lost data")
	}
	if got := indexes(collect(t, j, 0, 17)); !slices.Equal(got, seq(17, 42)) {
		t.Fatalf("Iterate from 17 = %v", got)
	}
	if st := j.Stat(); st.Segments != len(names) || st.FirstIndex != 1 || st.LastIndex != 42 || len(st.Terms) != 1 {
		t.Fatalf("Stat = %+v", st)
	}
}

func TestMissingSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{SegmentSize: 8192})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		appendT(t, j, fullRecord(xl.OpWrite, i))
	}
	closeJ(t, j)
	names := segFiles(t, dir)
	if err := os.Remove(names[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{SegmentSize: 8192}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a missing middle segment = %v, want ErrCorrupt", err)
	}
}

func TestInterruptedSegmentCreation(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	appendT(t, j, fullRecord(xl.OpWrite, 1))
	if err := j.StartTerm(2); err != nil {
		t.Fatal(err)
	}
	closeJ(t, j)
	// The flusher died after creating term 2's file, before its header.
	stray := filepath.Join(dir, segName(2, 2))
	if err := os.WriteFile(stray, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	j = open(t, dir, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	defer closeJ(t, j)
	if !strings.Contains(logs.String(), "interrupted") {
		t.Errorf("no warning for the headerless segment:\n%s", logs)
	}
	if idx := appendT(t, j, fullRecord(xl.OpWrite, 2)); idx != 2 {
		t.Fatalf("index %d, want 2", idx)
	}
	if got := collect(t, j, 2, 0); len(got) != 1 || got[0].Term != 2 {
		t.Fatalf("term 2 holds %v", indexes(got))
	}
}

func TestWatermarksAndUnapplied(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		appendT(t, j, fullRecord(xl.OpWrite, i))
	}
	for _, i := range []uint64{1, 2, 3, 4, 6, 99} {
		j.MarkApplied(i)
	}
	if a := j.Applied(); a != 4 {
		t.Fatalf("Applied = %d, want 4 (6 is applied but 5 is not)", a)
	}
	unapplied := func() []uint64 {
		var got []uint64
		if err := j.Unapplied(func(r *Record) error { got = append(got, r.Index); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := unapplied(); !slices.Equal(got, []uint64{5, 7, 8, 9, 10}) {
		t.Fatalf("Unapplied = %v", got)
	}
	if err := j.MarkSynced(5); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("MarkSynced beyond applied = %v, want ErrNotApplied", err)
	}
	if err := j.MarkSynced(3); err != nil {
		t.Fatal(err)
	}
	j.MarkApplied(5)
	if a := j.Applied(); a != 6 {
		t.Fatalf("Applied = %d after 5, want 6", a)
	}
	closeJ(t, j)

	// Same boot: the lazily saved applied watermark holds.
	j = open(t, dir, Options{})
	if st := j.Stat(); st.Applied != 6 || st.Synced != 3 {
		t.Fatalf("after reopen applied %d synced %d, want 6 and 3", st.Applied, st.Synced)
	}
	if got := unapplied(); !slices.Equal(got, seq(7, 10)) {
		t.Fatalf("Unapplied after reopen = %v", got)
	}
	closeJ(t, j)

	// An untrustworthy applied file (another boot, damage) falls back to
	// the synced watermark.
	if err := os.WriteFile(filepath.Join(dir, appliedFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	j = open(t, dir, Options{})
	defer closeJ(t, j)
	if got := unapplied(); !slices.Equal(got, seq(4, 10)) {
		t.Fatalf("Unapplied with a damaged applied file = %v, want 4..10", got)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{SegmentSize: 8192})
	idx := uint64(0)
	for term := uint64(1); term <= 3; term++ {
		if err := j.StartTerm(term); err != nil {
			t.Fatal(err)
		}
		for i := range 15 {
			idx = appendT(t, j, fullRecord(xl.OpWrite, i))
		}
	}
	if err := j.Prune(2); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Prune of unsynced terms = %v, want ErrNotSynced", err)
	}
	if n := len(collect(t, j, 0, 0)); n != 45 {
		t.Fatalf("a refused Prune left %d records, want 45", n)
	}
	for i := uint64(1); i <= 20; i++ {
		j.MarkApplied(i)
	}
	if err := j.MarkSynced(j.Applied()); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(2); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("Prune with term 2 half synced = %v, want ErrNotSynced", err)
	}
	if err := j.Prune(1); err != nil {
		t.Fatalf("Prune(1) with term 1 synced: %v", err)
	}
	if got := indexes(collect(t, j, 0, 0)); !slices.Equal(got, seq(16, 45)) {
		t.Fatalf("after Prune(1) the journal holds %v", got)
	}
	for i := uint64(21); i <= idx; i++ {
		j.MarkApplied(i)
	}
	if err := j.MarkSynced(j.Applied()); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(99); err != nil { // the current term, 3, stays
		t.Fatal(err)
	}
	st := j.Stat()
	if len(st.Terms) != 1 || st.Terms[0].Term != 3 || st.FirstIndex != 31 || st.LastIndex != 45 {
		t.Fatalf("after Prune(99) Stat = %+v, want only term 3 (31..45)", st)
	}
	// With the current term empty, every older term can go, and indexes
	// still continue after a reopen.
	if err := j.StartTerm(4); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(3); err != nil {
		t.Fatal(err)
	}
	if names := segFiles(t, dir); len(names) != 0 {
		t.Fatalf("segments left after pruning every old term: %v", names)
	}
	closeJ(t, j)
	j = open(t, dir, Options{SegmentSize: 8192})
	defer closeJ(t, j)
	if got := appendT(t, j, fullRecord(xl.OpWrite, 1)); got != 46 {
		t.Fatalf("first index after pruning everything and reopening = %d, want 46", got)
	}
}

func TestOpenIsExclusive(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	defer closeJ(t, j)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestClosedJournalRefuses(t *testing.T) {
	j := open(t, t.TempDir(), Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	closeJ(t, j)
	if _, err := j.Append(context.Background(), fullRecord(xl.OpWrite, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := j.Iterate(0, 0, func(*Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Iterate after Close = %v", err)
	}
	if _, err := j.PruneUpTo(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("PruneUpTo after Close = %v", err)
	}
	if err := j.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
}

// The last record of a sealed segment was acknowledged before the next
// segment existed: damage there is corruption, and Open changes nothing.
func TestDamagedSealedSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{SegmentSize: 8192})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		appendT(t, j, fullRecord(xl.OpWrite, i))
	}
	closeJ(t, j)
	sealed := segFiles(t, dir)[0]
	offs := recordOffsets(t, sealed)
	corruptAt(t, sealed, offs[len(offs)-1]+60)
	before, _ := os.ReadFile(sealed)
	if _, err := Open(dir, Options{SegmentSize: 8192}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), sealed) {
		t.Fatalf("Open with the tail of a sealed segment damaged = %v, want ErrCorrupt naming it", err)
	}
	if after, _ := os.ReadFile(sealed); !bytes.Equal(before, after) {
		t.Fatal("Open modified a damaged journal")
	}
}

func TestDamagedTermFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	j := open(t, dir, Options{})
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	appendT(t, j, fullRecord(xl.OpWrite, 1))
	closeJ(t, j)
	if err := os.WriteFile(filepath.Join(dir, termFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a damaged term file = %v, want ErrCorrupt", err)
	}
	if err := os.Remove(filepath.Join(dir, termFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with segments but no term file = %v, want ErrCorrupt", err)
	}
}
