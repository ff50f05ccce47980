package journal

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// crashJournal describes a journal to build before damaging it.
type crashJournal struct {
	records   int  // appended in all
	batch     int  // records queued together, sharing fdatasyncs
	split     int  // StartTerm(2) before this record (0: never)
	emptyTerm bool // StartTerm(3) after the last record, which gets none
	synced    int  // MarkSynced up to here
	applied   int  // MarkApplied up to here (at least synced)
	seed      uint64
}

// recPos is where a record sits in its segment.
type recPos struct {
	index    uint64
	off, len int
}

type segLayout struct {
	path string
	data []byte
	recs []recPos
}

// built is a closed journal and what was put in it.
type built struct {
	dir    string
	recs   []*Record // recs[i] has index i+1
	segs   []segLayout
	term   uint64 // highest started
	synced uint64
}

const crashSegSize = 4096

func quietOpts() Options {
	return Options{SegmentSize: crashSegSize, Logger: slog.New(slog.NewTextHandler(&logBuf{}, nil))}
}

func buildCrashJournal(t testing.TB, c crashJournal) *built {
	t.Helper()
	rng := rand.New(rand.NewPCG(c.seed, 1))
	b := &built{dir: t.TempDir(), term: 1}
	j := open(t, b.dir, quietOpts())
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < c.records; {
		var waits []func() error
		for k := 0; k < max(c.batch, 1) && i < c.records; k++ {
			if i+1 == c.split {
				if len(waits) > 0 {
					break // the new term starts after this batch
				}
				if err := j.StartTerm(2); err != nil {
					t.Fatal(err)
				}
				b.term = 2
			}
			r := &Record{
				Call: xl.Call{Uid: uint32(i), Seq: rng.Uint64()},
				Fop: xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.GFID{byte(i)}}, Off: int64(i) << 12,
					Data: bytes.Repeat([]byte{byte(rng.Uint32())}, rng.IntN(700))},
			}
			idx, wait, err := j.Queue(r)
			if err != nil {
				t.Fatal(err)
			}
			if idx != uint64(i+1) {
				t.Fatalf("record %d got index %d", i, idx)
			}
			r.Term, r.Index = b.term, idx
			if len(r.Fop.Data) == 0 {
				r.Fop.Data = nil // decode yields nil for empty
			}
			b.recs = append(b.recs, r)
			waits = append(waits, wait)
			i++
		}
		for _, w := range waits {
			if err := w(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 1; i <= max(c.applied, c.synced); i++ {
		j.MarkApplied(uint64(i))
	}
	if c.synced > 0 {
		if err := j.MarkSynced(uint64(c.synced)); err != nil {
			t.Fatal(err)
		}
		b.synced = uint64(c.synced)
	}
	if c.emptyTerm {
		if err := j.StartTerm(3); err != nil {
			t.Fatal(err)
		}
		b.term = 3
	}
	closeJ(t, j)
	for _, path := range segFiles(t, b.dir) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		term, first, _ := parseSegName(filepath.Base(path))
		salt, err := parseSegHeader(data, term, first)
		if err != nil {
			t.Fatal(err)
		}
		l := segLayout{path: path, data: data}
		for off := segHeaderSize; ; {
			h, err := parseHeader(data[off:], salt)
			if err != nil {
				break
			}
			l.recs = append(l.recs, recPos{index: h.index, off: off, len: h.length})
			off += pad8(h.length)
		}
		b.segs = append(b.segs, l)
	}
	return b
}

// damage changes one segment file.
type damage struct {
	seg   int    // index into built.segs
	kind  byte   // 'T' truncate at off, 'F' flip bytes, 'Z' zero [off, off+n)
	off   int    // truncate point or zeroed range start
	n     int    // zeroed length
	flips []int  // offsets to flip
	xor   []byte // what each flip XORs in (never zero)
}

// apply damages the file and returns its new contents.
func (d damage) apply(t testing.TB, b *built) []byte {
	t.Helper()
	l := b.segs[d.seg]
	data := bytes.Clone(l.data)
	switch d.kind {
	case 'T':
		data = data[:min(d.off, len(data))]
	case 'F':
		for i, o := range d.flips {
			if o < len(data) {
				data[o] ^= d.xor[i]
			}
		}
	case 'Z':
		for o := d.off; o < min(d.off+d.n, len(data)); o++ {
			data[o] = 0
		}
	}
	if err := os.WriteFile(l.path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

// tailOnly reports whether the damage can only be a torn write of the
// last batch: the end of the last segment cut or zeroed away. A segment's
// header is durable before its records are written, so losing it is
// damage, not a torn write, once the segment held records.
func (d damage) tailOnly(b *built) bool {
	l := b.segs[d.seg]
	if d.seg != len(b.segs)-1 || (d.off < segHeaderSize && len(l.recs) > 0) {
		return false
	}
	switch d.kind {
	case 'T':
		return true
	case 'Z':
		return d.off+d.n >= len(l.data)
	}
	return false
}

// firstDamaged returns the lowest index of a record whose bytes (header
// and body, padding aside) or whose segment header the damage changed,
// or 0 if none.
func firstDamaged(b *built, d damage, after []byte) uint64 {
	l := b.segs[d.seg]
	changed := func(from, to int) bool {
		if to > len(after) {
			return true
		}
		return !bytes.Equal(l.data[from:to], after[from:to])
	}
	headerHit := changed(0, segHeaderSize)
	for _, r := range l.recs {
		if headerHit || changed(r.off, r.off+r.len) {
			return r.index
		}
	}
	return 0
}

// checkDamage builds a journal, damages it and checks what Open makes of
// it. It reports whether Open accepted the journal.
func checkDamage(t *testing.T, c crashJournal, mk func(b *built) damage) bool {
	t.Helper()
	b := buildCrashJournal(t, c)
	d := mk(b)
	after := d.apply(t, b)
	bad := firstDamaged(b, d, after)
	keep := uint64(len(b.recs)) // records that must survive: 1..keep
	if bad != 0 {
		keep = bad - 1
	}
	snapshot := func() map[string][]byte {
		m := map[string][]byte{}
		for _, l := range b.segs {
			data, err := os.ReadFile(l.path)
			if err == nil {
				m[l.path] = data
			}
		}
		return m
	}
	before := snapshot()

	j, err := Open(b.dir, quietOpts())
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open of a damaged journal = %v, want success or ErrCorrupt", err)
		}
		if d.tailOnly(b) {
			t.Fatalf("Open refused a journal whose last segment was only cut short: %v", err)
		}
		if !reflect.DeepEqual(before, snapshot()) {
			t.Fatal("Open changed a journal it refused")
		}
		return false
	}
	// Every record before the damage, exactly; nothing from or after it.
	got := collect(t, j, 0, 0)
	if uint64(len(got)) != keep {
		closeJ(t, j)
		t.Fatalf("Open kept %d records, want the %d before the first damaged one (%d)", len(got), keep, bad)
	}
	for i, r := range got {
		if !reflect.DeepEqual(r, b.recs[i]) {
			closeJ(t, j)
			t.Fatalf("record %d came back as\n %+v\nwant\n %+v", i+1, r, b.recs[i])
		}
	}
	// With no record left (the only segment lost its header before any
	// acknowledged record), indexes may continue from the term's start.
	st := j.Stat()
	if (st.LastIndex != keep && keep > 0) || st.FirstIndex != st.LastIndex-keep+1 ||
		st.Synced != min(b.synced, keep) || st.Applied > st.LastIndex || st.Applied < st.Synced {
		closeJ(t, j)
		t.Fatalf("after Open Stat = %+v; want last %d, synced %d, synced <= applied <= last", st, keep, min(b.synced, keep))
	}
	if j.Term() != b.term {
		closeJ(t, j)
		t.Fatalf("term %d after Open, want %d", j.Term(), b.term)
	}
	r := &Record{Fop: xl.Fop{Op: xl.OpMkdir, Name: "after"}}
	idx := appendT(t, j, r)
	closeJ(t, j)
	if idx != st.LastIndex+1 {
		t.Fatalf("append after Open got index %d, want %d", idx, st.LastIndex+1)
	}
	// The repaired journal opens cleanly and holds the new record.
	j, err = Open(b.dir, quietOpts())
	if err != nil {
		t.Fatalf("reopen after repair and append: %v", err)
	}
	defer closeJ(t, j)
	got = collect(t, j, 0, 0)
	if uint64(len(got)) != keep+1 || got[keep].Fop.Name != "after" || got[keep].Term != b.term || got[keep].Index != idx {
		t.Fatalf("after reopen the journal holds %v", indexes(got))
	}
	return true
}

// The same checks as the fuzzer, for damage patterns worth pinning.
func TestDamagePatterns(t *testing.T) {
	// Each batch its own fdatasync: damage before a later batch is
	// provably damage to acknowledged data.
	single := crashJournal{records: 30, batch: 1, synced: 10, applied: 20, seed: 1}
	batched := crashJournal{records: 30, batch: 10, synced: 10, applied: 15, seed: 2}
	last := func(b *built) int { return len(b.segs) - 1 }
	lastRec := func(b *built) recPos { l := b.segs[last(b)]; return l.recs[len(l.recs)-1] }
	flip := func(seg, off int) damage { return damage{seg: seg, kind: 'F', flips: []int{off}, xor: []byte{0x40}} }
	for _, tc := range []struct {
		name   string
		c      crashJournal
		mk     func(b *built) damage
		accept bool // Open must succeed (else it must fail)
	}{
		{"truncate mid last record", single, func(b *built) damage {
			r := lastRec(b)
			return damage{seg: last(b), kind: 'T', off: r.off + r.len/2}
		}, true},
		{"truncate at a record boundary", single, func(b *built) damage {
			l := b.segs[last(b)]
			return damage{seg: last(b), kind: 'T', off: l.recs[len(l.recs)/2].off}
		}, true},
		{"truncate inside the segment header", single, func(b *built) damage {
			return damage{seg: last(b), kind: 'T', off: 20}
		}, true},
		{"header of a synced segment cut", crashJournal{records: 3, batch: 1, synced: 3, applied: 3, seed: 5}, func(b *built) damage {
			return damage{seg: last(b), kind: 'T', off: 20}
		}, false},
		{"flip in the last record", single, func(b *built) damage {
			r := lastRec(b)
			return flip(last(b), r.off+r.len-1)
		}, true},
		{"flip before a later batch", single, func(b *built) damage {
			l := b.segs[last(b)]
			return flip(last(b), l.recs[0].off+50)
		}, false},
		{"flip in a sealed segment", single, func(b *built) damage {
			return flip(0, b.segs[0].recs[1].off+20)
		}, false},
		{"truncate a sealed segment", single, func(b *built) damage {
			return damage{seg: 0, kind: 'T', off: b.segs[0].recs[1].off}
		}, false},
		{"flip in padding", single, func(b *built) damage {
			for si, l := range b.segs {
				for _, r := range l.recs {
					if pad8(r.len) > r.len {
						return flip(si, r.off+r.len)
					}
				}
			}
			t.Fatal("no record has padding")
			return damage{}
		}, true},
		{"cut in the last record's padding", single, func(b *built) damage {
			r := lastRec(b)
			if pad8(r.len) == r.len {
				t.Fatal("the last record has no padding; pick another seed")
			}
			return damage{seg: last(b), kind: 'T', off: r.off + r.len}
		}, true},
		{"cut in a sealed segment's padding", single, func(b *built) damage {
			l := b.segs[0]
			r := l.recs[len(l.recs)-1]
			if pad8(r.len) == r.len || len(l.data) != r.off+pad8(r.len) {
				t.Fatal("the first segment does not end in padding; pick another seed")
			}
			return damage{seg: 0, kind: 'T', off: r.off + r.len}
		}, true},
		{"flip in the segment header", single, func(b *built) damage {
			return flip(last(b), 30)
		}, false},
		{"zero across a record boundary in the last batch", batched, func(b *built) damage {
			l := b.segs[last(b)]
			r := l.recs[len(l.recs)-2]
			return damage{seg: last(b), kind: 'Z', off: r.off + r.len - 10, n: 30}
		}, true},
		{"zero from mid record to the end", single, func(b *built) damage {
			r := lastRec(b)
			return damage{seg: last(b), kind: 'Z', off: r.off + 5, n: crashSegSize}
		}, true},
		{"zero beyond the last record", single, func(b *built) damage {
			r := lastRec(b)
			return damage{seg: last(b), kind: 'Z', off: r.off + pad8(r.len), n: 100}
		}, true},
		{"garbage beyond the last record", single, func(b *built) damage {
			r := lastRec(b)
			return flip(last(b), r.off+pad8(r.len)+9)
		}, true},
		// A new term was started after the last batch, which was torn:
		// its indexes were never acknowledged and must be reused, or the
		// first record of the new term would leave a gap.
		{"torn tail before an empty newer term", crashJournal{records: 12, batch: 3, split: 7, emptyTerm: true, synced: 2, applied: 4, seed: 3}, func(b *built) damage {
			r := lastRec(b)
			return damage{seg: last(b), kind: 'T', off: r.off + 8}
		}, true},
		{"torn tail of the second term", crashJournal{records: 12, batch: 2, split: 5, synced: 6, applied: 6, seed: 4}, func(b *built) damage {
			l := b.segs[last(b)]
			return damage{seg: last(b), kind: 'T', off: l.recs[0].off + 1}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkDamage(t, tc.c, tc.mk); got != tc.accept {
				t.Fatalf("Open accepted the journal: %v, want %v", got, tc.accept)
			}
		})
	}
}

// FuzzCrash builds a journal from the inputs, damages one segment (cut
// short, bytes flipped, a range zeroed) and checks that Open either
// refuses it with ErrCorrupt, changing nothing, or returns exactly the
// records before the first damaged one, intact, and continues indexes
// right after them. Run it with
//
//	go test -run '^$' -fuzz FuzzCrash ./xlators/fdl/journal
func FuzzCrash(f *testing.F) {
	// records, batch, split, emptyTerm, synced, seg, kind, off, n, seed
	f.Add(uint8(20), uint8(1), uint8(0), false, uint8(5), uint8(255), uint8(0), uint32(3000), uint16(0), uint64(1))
	f.Add(uint8(30), uint8(4), uint8(11), true, uint8(9), uint8(255), uint8(0), uint32(100), uint16(0), uint64(2))
	f.Add(uint8(25), uint8(3), uint8(0), false, uint8(0), uint8(255), uint8(1), uint32(500), uint16(3), uint64(3))
	f.Add(uint8(40), uint8(8), uint8(20), false, uint8(30), uint8(0), uint8(1), uint32(90), uint16(1), uint64(4))
	f.Add(uint8(15), uint8(15), uint8(0), true, uint8(15), uint8(255), uint8(2), uint32(700), uint16(900), uint64(5))
	f.Add(uint8(33), uint8(2), uint8(3), false, uint8(1), uint8(1), uint8(2), uint32(64), uint16(40), uint64(6))
	f.Fuzz(func(t *testing.T, records, batch, split uint8, emptyTerm bool, synced, seg, kind uint8, off uint32, n uint16, seed uint64) {
		c := crashJournal{
			records:   1 + int(records)%48,
			batch:     1 + int(batch)%12,
			emptyTerm: emptyTerm,
			seed:      seed,
		}
		if split%3 != 0 {
			c.split = 2 + int(split)%c.records
		}
		c.synced = int(synced) % (c.records + 1)
		c.applied = c.synced + int(seed%7)%(c.records-c.synced+1)
		checkDamage(t, c, func(b *built) damage {
			d := damage{seg: int(seg) % len(b.segs)}
			if seg >= 128 {
				d.seg = len(b.segs) - 1 // favour the last segment: torn tails live there
			}
			size := len(b.segs[d.seg].data)
			switch kind % 3 {
			case 0:
				d.kind, d.off = 'T', int(off)%(size+1)
			case 1:
				d.kind = 'F'
				rng := rand.New(rand.NewPCG(seed, uint64(off)))
				for range 1 + int(n)%8 {
					// Near off, where records are, or anywhere.
					o := int(off) % size
					if rng.IntN(2) == 0 {
						o = rng.IntN(size)
					}
					d.flips = append(d.flips, o)
					d.xor = append(d.xor, byte(1+rng.IntN(255)))
				}
			default:
				d.kind, d.off, d.n = 'Z', int(off)%size, 1+int(n)
			}
			return d
		})
	})
}

// A record appended after recovery must also be readable through a fresh
// Iterate from its own index: recovery leaves the active segment usable.
func TestAppendAfterCutIsIterable(t *testing.T) {
	b := buildCrashJournal(t, crashJournal{records: 8, batch: 1, seed: 9})
	l := b.segs[len(b.segs)-1]
	damage{seg: len(b.segs) - 1, kind: 'T', off: l.recs[len(l.recs)-1].off + 3}.apply(t, b)
	j := open(t, b.dir, quietOpts())
	defer closeJ(t, j)
	idx := appendT(t, j, &Record{Fop: xl.Fop{Op: xl.OpUnlink, Name: "x"}})
	if got := collect(t, j, 0, idx); len(got) != 1 || got[0].Fop.Name != "x" {
		t.Fatalf("Iterate from %d = %v", idx, indexes(got))
	}
	if _, err := j.Append(context.Background(), &Record{Index: idx, Fop: xl.Fop{Op: xl.OpUnlink}}); !errors.Is(err, ErrIndex) {
		t.Fatalf("append reusing index %d = %v, want ErrIndex", idx, err)
	}
}
