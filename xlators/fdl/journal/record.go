package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Record is one journaled request: the caller's identity and request id
// (Call), the request in generic form (Fop), and the position the journal
// gave it (Term, Index).
type Record struct {
	// Term and Index are assigned by Append; a caller that drives them
	// (replication) may set them, see Append.
	Term, Index uint64
	// Flags are kept for the layer above; the journal does not interpret them.
	Flags uint16
	// Call is who asked: uid/gid/groups/pid for replay, Client+Seq as the
	// request id for deduplication, and the request's xdata.
	Call xl.Call
	Fop  xl.Fop
}

// On-disk record layout, little-endian, padded with zeros to 8 bytes:
//
//	0   magic    u32  recMagic
//	4   length   u32  unpadded record length, header included
//	8   checksum u64  xxhash64 of bytes [16:length], seeded with the segment salt
//	16  version  u16
//	18  flags    u16  Record.Flags
//	20  op       u8   xl.Op
//	21  reserved [3]  zero
//	24  term     u64
//	32  index    u64
//	40  durable  u64  highest index known durable when this record was queued
//	48  body: call (uid, gid, pid u32; client [16]; seq u64; groups; xdata),
//	    fop (gfid, gfid2, fd.gfid [16]; fd.h u64; fd.flags, flags, mode u32;
//	    rdev u64; off, len i64; setattr; name; name2; xdata) and the payload
//	    (Fop.Data) last. Strings and byte slices are u32 length + bytes;
//	    groups are u32 count + u32s; xdata is u32 count + (key, value) pairs
//	    in key order.
//
// "durable" lets recovery tell a torn tail (damage inside the last, never
// acknowledged batch) from damage to acknowledged records: see scanTail.
const (
	recMagic      = 0x726a6c67 // "gljr"
	recVersion    = 1
	recHeaderSize = 48
	// MaxRecordSize bounds one encoded record: a maximal write plus room
	// for names and xdata.
	MaxRecordSize = xl.MaxIO + 1<<20
)

const (
	callFixed    = 4 + 4 + 4 + 16 + 8
	setattrFixed = 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 4
	fopFixed     = 16 + 16 + 16 + 8 + 4 + 4 + 4 + 8 + 8 + 8 + setattrFixed
)

func pad8(n int) int { return (n + 7) &^ 7 }

func xdataSize(x xl.Xdata) int {
	n := 4
	for k, v := range x {
		n += 8 + len(k) + len(v)
	}
	return n
}

// encodedSize is the unpadded length of rec's encoding.
func encodedSize(rec *Record) int {
	c, f := &rec.Call, &rec.Fop
	return recHeaderSize +
		callFixed + 4 + 4*len(c.Groups) + xdataSize(c.Xdata) +
		fopFixed + 4 + len(f.Name) + 4 + len(f.Name2) + xdataSize(f.Xdata) + 4 + len(f.Data)
}

// encode returns rec's padded encoding with the position fields and the
// checksum left zero; seal fills them once the record has its place.
func encode(rec *Record, size int) []byte {
	return encodeInto(make([]byte, 0, pad8(size)), rec, size)
}

// encodeInto is encode into buf, whose capacity is at least pad8(size)
// and whose bytes may be anything.
func encodeInto(buf []byte, rec *Record, size int) []byte {
	buf = buf[:recHeaderSize]
	clear(buf)
	le := binary.LittleEndian
	le.PutUint32(buf[0:], recMagic)
	le.PutUint32(buf[4:], uint32(size))
	le.PutUint16(buf[16:], recVersion)
	le.PutUint16(buf[18:], rec.Flags)
	buf[20] = byte(rec.Fop.Op)

	c := &rec.Call
	b := le.AppendUint32(buf, c.Uid)
	b = le.AppendUint32(b, c.Gid)
	b = le.AppendUint32(b, c.Pid)
	b = append(b, c.Client[:]...)
	b = le.AppendUint64(b, c.Seq)
	b = le.AppendUint32(b, uint32(len(c.Groups)))
	for _, g := range c.Groups {
		b = le.AppendUint32(b, g)
	}
	b = appendXdata(b, c.Xdata)

	f := &rec.Fop
	b = append(b, f.GFID[:]...)
	b = append(b, f.GFID2[:]...)
	b = append(b, f.Fd.GFID[:]...)
	b = le.AppendUint64(b, f.Fd.H)
	b = le.AppendUint32(b, f.Fd.Flags)
	b = le.AppendUint32(b, f.Flags)
	b = le.AppendUint32(b, f.Mode)
	b = le.AppendUint64(b, f.Rdev)
	b = le.AppendUint64(b, uint64(f.Off))
	b = le.AppendUint64(b, uint64(f.Len))
	s := &f.Setattr
	b = le.AppendUint32(b, s.Valid)
	b = le.AppendUint32(b, s.Mode)
	b = le.AppendUint32(b, s.Uid)
	b = le.AppendUint32(b, s.Gid)
	b = le.AppendUint64(b, s.Size)
	b = le.AppendUint64(b, uint64(s.Atime.Sec))
	b = le.AppendUint32(b, s.Atime.Nsec)
	b = le.AppendUint64(b, uint64(s.Mtime.Sec))
	b = le.AppendUint32(b, s.Mtime.Nsec)
	b = appendBytes(b, []byte(f.Name))
	b = appendBytes(b, []byte(f.Name2))
	b = appendXdata(b, f.Xdata)
	b = appendBytes(b, f.Data)
	if len(b) != size {
		panic(fmt.Sprintf("journal: encoded %d bytes, sized %d", len(b), size))
	}
	b = b[:pad8(size)]
	clear(b[size:])
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendXdata(b []byte, x xl.Xdata) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(x)))
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	slices.Sort(keys) // same request, same bytes
	for _, k := range keys {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, x[k])
	}
	return b
}

// seal stamps the record's place and checksum into an encoding.
func seal(buf []byte, term, index, durable, salt uint64) {
	le := binary.LittleEndian
	le.PutUint64(buf[24:], term)
	le.PutUint64(buf[32:], index)
	le.PutUint64(buf[40:], durable)
	n := le.Uint32(buf[4:])
	le.PutUint64(buf[8:], checksum(buf[16:n], salt))
}

func checksum(b []byte, salt uint64) uint64 {
	var d xxhash.Digest
	d.ResetWithSeed(salt)
	d.Write(b)
	return d.Sum64()
}

// recHeader is a record header that passed its checksum.
type recHeader struct {
	length               int
	version              uint16
	term, index, durable uint64
}

// errNoRecord means the bytes do not hold an intact record: a torn or
// corrupt write, or the zeroed space after the last record.
var errNoRecord = errors.New("no intact record")

// parseHeader checks that b starts with an intact record sealed with salt.
func parseHeader(b []byte, salt uint64) (recHeader, error) {
	le := binary.LittleEndian
	if len(b) < recHeaderSize || le.Uint32(b) != recMagic {
		return recHeader{}, errNoRecord
	}
	n := int(le.Uint32(b[4:]))
	if n < recHeaderSize || n > MaxRecordSize || n > len(b) {
		return recHeader{}, errNoRecord
	}
	if checksum(b[16:n], salt) != le.Uint64(b[8:]) {
		return recHeader{}, errNoRecord
	}
	return recHeader{
		length:  n,
		version: le.Uint16(b[16:]),
		term:    le.Uint64(b[24:]),
		index:   le.Uint64(b[32:]),
		durable: le.Uint64(b[40:]),
	}, nil
}

// decode parses an intact record (checked by parseHeader). The record
// refers to b's memory.
func decode(b []byte) (*Record, error) {
	le := binary.LittleEndian
	if v := le.Uint16(b[16:]); v != recVersion {
		return nil, fmt.Errorf("record version %d, this build reads %d", v, recVersion)
	}
	rec := &Record{
		Flags: le.Uint16(b[18:]),
		Term:  le.Uint64(b[24:]),
		Index: le.Uint64(b[32:]),
	}
	rec.Fop.Op = xl.Op(b[20])
	if !rec.Fop.Op.Valid() {
		return nil, fmt.Errorf("record %d: unknown op %d", rec.Index, b[20])
	}
	d := decoder{b: b[recHeaderSize:le.Uint32(b[4:])]}
	c := &rec.Call
	c.Uid, c.Gid, c.Pid = d.u32(), d.u32(), d.u32()
	d.copy(c.Client[:])
	c.Seq = d.u64()
	if n := d.count(4); n > 0 {
		c.Groups = make([]uint32, n)
		for i := range c.Groups {
			c.Groups[i] = d.u32()
		}
	}
	c.Xdata = d.xdata()

	f := &rec.Fop
	d.copy(f.GFID[:])
	d.copy(f.GFID2[:])
	d.copy(f.Fd.GFID[:])
	f.Fd.H = d.u64()
	f.Fd.Flags, f.Flags, f.Mode = d.u32(), d.u32(), d.u32()
	f.Rdev = d.u64()
	f.Off, f.Len = int64(d.u64()), int64(d.u64())
	s := &f.Setattr
	s.Valid, s.Mode, s.Uid, s.Gid = d.u32(), d.u32(), d.u32(), d.u32()
	s.Size = d.u64()
	s.Atime.Sec, s.Atime.Nsec = int64(d.u64()), d.u32()
	s.Mtime.Sec, s.Mtime.Nsec = int64(d.u64()), d.u32()
	f.Name = string(d.bytes())
	f.Name2 = string(d.bytes())
	f.Xdata = d.xdata()
	f.Data = d.bytes()
	if d.bad || len(d.b) != 0 {
		return nil, fmt.Errorf("record %d: malformed body", rec.Index)
	}
	return rec, nil
}

// decoder reads the body; a short read sets bad and yields zeros.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n < 0 || n > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) copy(dst []byte) { copy(dst, d.take(len(dst))) }

// count reads an element count and checks that the rest of the body can
// hold that many elements of at least min bytes each.
func (d *decoder) count(min int) int {
	n := int(d.u32())
	if n > len(d.b)/min {
		d.bad = true
		return 0
	}
	return n
}

func (d *decoder) bytes() []byte {
	n := int(d.u32())
	if n == 0 {
		return nil
	}
	return d.take(n)
}

func (d *decoder) xdata() xl.Xdata {
	n := d.count(8)
	if n == 0 {
		return nil
	}
	x := make(xl.Xdata, n)
	prev := ""
	for i := range n {
		k := string(d.bytes())
		if i > 0 && k <= prev { // encode writes keys sorted and unique
			d.bad = true
			return nil
		}
		prev = k
		v := d.bytes()
		if v == nil {
			v = []byte{}
		}
		x[k] = v
	}
	return x
}
