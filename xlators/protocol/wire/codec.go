package wire

import (
	"encoding/binary"
	"math"
	"slices"
	"syscall"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Hard limits on decoded metadata, on top of the frame limit.
const (
	MaxString = 64 << 10 // names, xattr names, symlink targets, xdata keys
	MaxGroups = 1 << 16  // NGROUPS_MAX
	MaxList   = 1 << 20  // xattr names, dirents, xdata entries
)

// Field presence bits. A zero field is left out, so a small request costs
// a few bytes whatever the op, and every op shares one encoding: a new op
// that uses existing fields needs no codec change. The numbers are on the
// wire: append, never renumber.
const (
	fopGFID = 1 << iota
	fopGFID2
	fopName
	fopName2
	fopFd
	fopFlags
	fopMode
	fopRdev
	fopOff
	fopLen
	fopData // non-nil Data; the bytes are the frame's data section
	fopSetattr
	fopXdata
	// fopXdataOut: xdata values carried in the data section (version 5);
	// their keys and lengths follow the inline xdata.
	fopXdataOut
	fopEnd
)

const (
	resErrno = 1 << iota
	resAttr
	resFd
	resN
	resData // non-nil Data; the bytes are the frame's data section
	resNames
	resDirents
	resStatfs
	resXdata
	resEnd
)

// Dirent flags, one uvarint after each dirent's attributes (version 4).
const (
	direntNoXattrs = 1 << iota
	direntEnd
)

const (
	callUid = 1 << iota
	callGid
	callGroups
	callPid
	callClient
	callSeq
	callXdata
	callEnd
)

// OutOfLine is the size from which an xdata value of a request without
// Data travels in the frame's data section (see RequestData), so that it
// goes from the caller's slice to the socket, and from the socket into
// the value the server decodes, without a copy: replication's peer
// messages carry whole writes this way, down to a page: copying each
// replicated 4 KiB write into the batch and into every follower's frame
// kept malloc and GC at 35% of a leader's CPU under 4 KiB random writes
// (29% without the copies).
const OutOfLine = 4 << 10

// AppendRequest appends a request frame, header and metadata, to b. The
// frame's data section, which the caller sends right after, is
// RequestData(f).
func AppendRequest(b []byte, id uint64, c *xl.Call, f *xl.Fop) []byte {
	return appendRequest(b, id, c, f, outKeys(f))
}

// AppendRequestData is AppendRequest that also appends the frame's data
// section to data, finding the out-of-line xdata once for both.
func AppendRequestData(b []byte, data [][]byte, id uint64, c *xl.Call, f *xl.Fop) ([]byte, [][]byte) {
	out := outKeys(f)
	return appendRequest(b, id, c, f, out), requestData(data, f, out)
}

func appendRequest(b []byte, id uint64, c *xl.Call, f *xl.Fop, out []string) []byte {
	start := len(b)
	b = AppendHeader(b, Header{})
	b = AppendCall(b, c)
	b = appendFop(b, f, out)
	n := len(f.Data)
	var flags uint16
	if len(out) > 0 {
		flags = FlagXdataData
		for _, k := range out {
			n += len(f.Xdata[k])
		}
	}
	PutHeader(b[start:], Header{
		Type:    TypeRequest,
		Flags:   flags,
		ID:      id,
		Len:     uint32(len(b) - start - HeaderSize + n),
		DataLen: uint32(n),
	})
	return b
}

// RequestData is the data section of f's request frame, in order: f.Data,
// or for a request without Data its xdata values of OutOfLine bytes or
// more, by key.
func RequestData(f *xl.Fop) [][]byte { return requestData(nil, f, outKeys(f)) }

func requestData(d [][]byte, f *xl.Fop, out []string) [][]byte {
	if f.Data != nil {
		return append(d, f.Data)
	}
	for _, k := range out {
		d = append(d, f.Xdata[k])
	}
	return d
}

// outKeys returns, sorted, the keys of the xdata values that travel in the
// data section of f's request frame.
func outKeys(f *xl.Fop) []string {
	if f.Data != nil {
		return nil
	}
	var out []string
	for k, v := range f.Xdata {
		if len(v) >= OutOfLine {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// SetNoReply sets FlagNoReply in the request frame that starts b.
func SetNoReply(b []byte) {
	binary.LittleEndian.PutUint16(b[6:], binary.LittleEndian.Uint16(b[6:])|FlagNoReply)
}

// AppendReply appends a reply frame, header and metadata, to b. The data
// section, which the caller sends right after, is r.Data.
func AppendReply(b []byte, id uint64, r *xl.Result) []byte {
	start := len(b)
	b = AppendHeader(b, Header{})
	b = AppendResult(b, r)
	PutHeader(b[start:], Header{
		Type:    TypeReply,
		ID:      id,
		Len:     uint32(len(b) - start - HeaderSize + len(r.Data)),
		DataLen: uint32(len(r.Data)),
	})
	return b
}

// AppendCall appends the per-request metadata c.
func AppendCall(b []byte, c *xl.Call) []byte {
	var m uint64
	if c.Uid != 0 {
		m |= callUid
	}
	if c.Gid != 0 {
		m |= callGid
	}
	if c.Groups != nil {
		m |= callGroups
	}
	if c.Pid != 0 {
		m |= callPid
	}
	if c.Client != ([16]byte{}) {
		m |= callClient
	}
	if c.Seq != 0 {
		m |= callSeq
	}
	if c.Xdata != nil {
		m |= callXdata
	}
	b = binary.AppendUvarint(b, m)
	if m&callUid != 0 {
		b = binary.AppendUvarint(b, uint64(c.Uid))
	}
	if m&callGid != 0 {
		b = binary.AppendUvarint(b, uint64(c.Gid))
	}
	if m&callGroups != 0 {
		b = binary.AppendUvarint(b, uint64(len(c.Groups)))
		for _, g := range c.Groups {
			b = binary.AppendUvarint(b, uint64(g))
		}
	}
	if m&callPid != 0 {
		b = binary.AppendUvarint(b, uint64(c.Pid))
	}
	if m&callClient != 0 {
		b = append(b, c.Client[:]...)
	}
	if m&callSeq != 0 {
		b = binary.AppendUvarint(b, c.Seq)
	}
	if m&callXdata != 0 {
		b = appendXdata(b, c.Xdata, nil)
	}
	return b
}

// AppendFop appends f, all fields but the Data bytes.
func AppendFop(b []byte, f *xl.Fop) []byte { return appendFop(b, f, nil) }

// appendFop appends f with the xdata values named by out (sorted) left
// for the data section: only their keys and lengths are written.
func appendFop(b []byte, f *xl.Fop, out []string) []byte {
	var m uint64
	if f.GFID != (xl.GFID{}) {
		m |= fopGFID
	}
	if f.GFID2 != (xl.GFID{}) {
		m |= fopGFID2
	}
	if f.Name != "" {
		m |= fopName
	}
	if f.Name2 != "" {
		m |= fopName2
	}
	if f.Fd != (xl.Fd{}) {
		m |= fopFd
	}
	if f.Flags != 0 {
		m |= fopFlags
	}
	if f.Mode != 0 {
		m |= fopMode
	}
	if f.Rdev != 0 {
		m |= fopRdev
	}
	if f.Off != 0 {
		m |= fopOff
	}
	if f.Len != 0 {
		m |= fopLen
	}
	if f.Data != nil {
		m |= fopData
	}
	if f.Setattr != (xl.SetattrIn{}) {
		m |= fopSetattr
	}
	if f.Xdata != nil && (len(out) == 0 || len(out) < len(f.Xdata)) {
		m |= fopXdata
	}
	if len(out) > 0 {
		m |= fopXdataOut
	}
	b = append(b, byte(f.Op))
	b = binary.AppendUvarint(b, m)
	if m&fopGFID != 0 {
		b = append(b, f.GFID[:]...)
	}
	if m&fopGFID2 != 0 {
		b = append(b, f.GFID2[:]...)
	}
	if m&fopName != 0 {
		b = appendString(b, f.Name)
	}
	if m&fopName2 != 0 {
		b = appendString(b, f.Name2)
	}
	if m&fopFd != 0 {
		b = appendFd(b, &f.Fd)
	}
	if m&fopFlags != 0 {
		b = binary.AppendUvarint(b, uint64(f.Flags))
	}
	if m&fopMode != 0 {
		b = binary.AppendUvarint(b, uint64(f.Mode))
	}
	if m&fopRdev != 0 {
		b = binary.AppendUvarint(b, f.Rdev)
	}
	if m&fopOff != 0 {
		b = binary.AppendVarint(b, f.Off)
	}
	if m&fopLen != 0 {
		b = binary.AppendVarint(b, f.Len)
	}
	if m&fopSetattr != 0 {
		s := &f.Setattr
		b = binary.AppendUvarint(b, uint64(s.Valid))
		b = binary.AppendUvarint(b, uint64(s.Mode))
		b = binary.AppendUvarint(b, uint64(s.Uid))
		b = binary.AppendUvarint(b, uint64(s.Gid))
		b = binary.AppendUvarint(b, s.Size)
		b = appendTimespec(b, s.Atime)
		b = appendTimespec(b, s.Mtime)
	}
	if m&fopXdata != 0 {
		b = appendXdata(b, f.Xdata, out)
	}
	if m&fopXdataOut != 0 {
		b = binary.AppendUvarint(b, uint64(len(out)))
		for _, k := range out {
			b = appendString(b, k)
			b = binary.AppendUvarint(b, uint64(len(f.Xdata[k])))
		}
	}
	return b
}

// AppendResult appends r, all fields but the Data bytes.
func AppendResult(b []byte, r *xl.Result) []byte {
	var m uint64
	if r.Errno != 0 {
		m |= resErrno
	}
	if r.Attr != (xl.Attr{}) {
		m |= resAttr
	}
	if r.Fd != (xl.Fd{}) {
		m |= resFd
	}
	if r.N != 0 {
		m |= resN
	}
	if r.Data != nil {
		m |= resData
	}
	if r.Names != nil {
		m |= resNames
	}
	if r.Dirents != nil {
		m |= resDirents
	}
	if r.Statfs != (xl.Statfs{}) {
		m |= resStatfs
	}
	if r.Xdata != nil {
		m |= resXdata
	}
	b = binary.AppendUvarint(b, m)
	if m&resErrno != 0 {
		b = binary.AppendUvarint(b, uint64(r.Errno))
	}
	if m&resAttr != 0 {
		b = appendAttr(b, &r.Attr)
	}
	if m&resFd != 0 {
		b = appendFd(b, &r.Fd)
	}
	if m&resN != 0 {
		b = binary.AppendVarint(b, r.N)
	}
	if m&resNames != 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Names)))
		for _, s := range r.Names {
			b = appendString(b, s)
		}
	}
	if m&resDirents != 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Dirents)))
		for i := range r.Dirents {
			d := &r.Dirents[i]
			b = appendString(b, d.Name)
			b = binary.AppendUvarint(b, d.Off)
			b = appendAttr(b, &d.Attr)
			var f uint64
			if d.NoXattrs {
				f |= direntNoXattrs
			}
			b = binary.AppendUvarint(b, f)
		}
	}
	if m&resStatfs != 0 {
		s := &r.Statfs
		for _, v := range [...]uint64{s.Blocks, s.Bfree, s.Bavail, s.Files, s.Ffree} {
			b = binary.AppendUvarint(b, v)
		}
		for _, v := range [...]uint32{s.Bsize, s.Frsize, s.NameLen} {
			b = binary.AppendUvarint(b, uint64(v))
		}
	}
	if m&resXdata != 0 {
		b = appendXdata(b, r.Xdata, nil)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFd(b []byte, fd *xl.Fd) []byte {
	b = append(b, fd.GFID[:]...)
	b = binary.AppendUvarint(b, fd.H)
	return binary.AppendUvarint(b, uint64(fd.Flags))
}

func appendTimespec(b []byte, t xl.Timespec) []byte {
	b = binary.AppendVarint(b, t.Sec)
	return binary.AppendUvarint(b, uint64(t.Nsec))
}

func appendAttr(b []byte, a *xl.Attr) []byte {
	b = append(b, a.GFID[:]...)
	b = binary.AppendUvarint(b, uint64(a.Mode))
	b = binary.AppendUvarint(b, uint64(a.Nlink))
	b = binary.AppendUvarint(b, uint64(a.Uid))
	b = binary.AppendUvarint(b, uint64(a.Gid))
	b = binary.AppendUvarint(b, a.Rdev)
	b = binary.AppendUvarint(b, a.Size)
	b = binary.AppendUvarint(b, a.Blocks)
	b = binary.AppendUvarint(b, uint64(a.Blksize))
	b = appendTimespec(b, a.Atime)
	b = appendTimespec(b, a.Mtime)
	return appendTimespec(b, a.Ctime)
}

// appendXdata writes keys in order, so equal maps encode equally. It
// leaves out the keys in skip (sorted).
func appendXdata(b []byte, x xl.Xdata, skip []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(x)-len(skip)))
	// Most xdata has a few keys: sort them on the stack.
	var few [8]string
	keys := few[:0]
	if len(x) > len(few) {
		keys = make([]string, 0, len(x))
	}
	for k := range x {
		if _, found := slices.BinarySearch(skip, k); !found {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		v := x[k]
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// DecodeFop decodes f from meta, which must hold exactly what AppendFop
// wrote, and attaches data, the frame's data section.
func DecodeFop(meta, data []byte, f *xl.Fop) error {
	d := decoder{b: meta}
	d.fop(f)
	d.attachFop(f, data)
	return d.end()
}

// DecodeRequest decodes a request payload's metadata and attaches data:
// as f.Data, or as the xdata values sent in the data section, which then
// refer to data's memory.
func DecodeRequest(meta, data []byte, c *xl.Call, f *xl.Fop) error {
	d := decoder{b: meta}
	d.call(c)
	d.fop(f)
	d.attachFop(f, data)
	return d.end()
}

// attachFop attaches the data section to the fop just decoded.
func (d *decoder) attachFop(f *xl.Fop, data []byte) {
	if d.err != nil {
		return
	}
	if d.out == nil {
		f.Data, d.err = attach(d.mask&fopData != 0, data)
		return
	}
	n := uint64(0) // no int to wrap on a 32-bit build
	for _, o := range d.out {
		n += uint64(o.n)
	}
	if n != uint64(len(data)) {
		d.fail("xdata values of %d bytes in a data section of %d", n, len(data))
		return
	}
	if f.Xdata == nil {
		f.Xdata = make(xl.Xdata, len(d.out))
	}
	for _, o := range d.out {
		if _, dup := f.Xdata[o.key]; dup {
			d.fail("duplicate xdata key %q", o.key)
			return
		}
		f.Xdata[o.key] = data[:o.n:o.n]
		data = data[o.n:]
	}
}

// DecodeResult decodes r from meta, which must hold exactly what
// AppendResult wrote, and attaches data, the frame's data section.
func DecodeResult(meta, data []byte, r *xl.Result) error {
	d := decoder{b: meta}
	d.result(r)
	if d.err == nil {
		r.Data, d.err = attach(d.mask&resData != 0, data)
	}
	return d.end()
}

func attach(has bool, data []byte) ([]byte, error) {
	switch {
	case has && data == nil:
		return []byte{}, nil
	case !has && len(data) > 0:
		return nil, malformed("data section without a data field")
	case !has:
		return nil, nil
	}
	return data, nil
}

// decoder reads b from offset i; the first error sticks and empties the
// rest. An offset, not a shrinking slice, keeps GC write barriers out of
// the hot path.
type decoder struct {
	b    []byte
	i    int
	err  error
	mask uint64 // presence bits of the last struct read
	out  []outValue
}

// outValue is an xdata value sent in the data section.
type outValue struct {
	key string
	n   int
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = malformed(format, args...)
	}
	d.i = len(d.b)
}

func (d *decoder) left() int { return len(d.b) - d.i }

func (d *decoder) end() error {
	if d.err == nil && d.left() != 0 {
		d.fail("%d trailing bytes", d.left())
	}
	return d.err
}

func (d *decoder) u8() byte {
	if d.left() < 1 {
		d.fail("truncated")
		return 0
	}
	d.i++
	return d.b[d.i-1]
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b[d.i:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("value %d overflows 32 bits", v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) presence(end uint64) uint64 {
	m := d.uvarint()
	if m >= end {
		d.fail("unknown fields %#x", m&^(end-1))
		return 0
	}
	d.mask = m
	return m
}

func (d *decoder) raw(n int) []byte {
	if n > d.left() {
		d.fail("truncated: want %d bytes, have %d", n, d.left())
		return nil
	}
	v := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return v
}

func (d *decoder) gfid() (g xl.GFID) {
	copy(g[:], d.raw(len(g)))
	return g
}

// count reads a list length and checks it against max and against the
// bytes left, given that each element takes at least one byte, so a
// hostile count cannot make us allocate.
func (d *decoder) count(max int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(max) || v > uint64(d.left()) {
		d.fail("list of %d entries exceeds limit or frame", v)
		return 0
	}
	return int(v)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > MaxString {
		d.fail("string of %d bytes exceeds limit %d", n, MaxString)
		return ""
	}
	return string(d.raw(int(n)))
}

// bytes copies, so decoded values never alias the reader's buffer.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(d.left()) {
		d.fail("truncated: want %d bytes, have %d", n, d.left())
		return nil
	}
	return append([]byte{}, d.raw(int(n))...)
}

func (d *decoder) fd(fd *xl.Fd) {
	fd.GFID = d.gfid()
	fd.H = d.uvarint()
	fd.Flags = d.u32()
}

func (d *decoder) timespec(t *xl.Timespec) {
	t.Sec = d.varint()
	t.Nsec = d.u32()
}

func (d *decoder) attr(a *xl.Attr) {
	a.GFID = d.gfid()
	a.Mode = d.u32()
	a.Nlink = d.u32()
	a.Uid = d.u32()
	a.Gid = d.u32()
	a.Rdev = d.uvarint()
	a.Size = d.uvarint()
	a.Blocks = d.uvarint()
	a.Blksize = d.u32()
	d.timespec(&a.Atime)
	d.timespec(&a.Mtime)
	d.timespec(&a.Ctime)
}

func (d *decoder) xdata() xl.Xdata {
	n := d.count(MaxList)
	x := make(xl.Xdata, n)
	for range n {
		k := d.str()
		v := d.bytes()
		if d.err != nil {
			return nil
		}
		if _, dup := x[k]; dup {
			d.fail("duplicate xdata key %q", k)
			return nil
		}
		x[k] = v
	}
	return x
}

func (d *decoder) call(c *xl.Call) {
	m := d.presence(callEnd)
	if m&callUid != 0 {
		c.Uid = d.u32()
	}
	if m&callGid != 0 {
		c.Gid = d.u32()
	}
	if m&callGroups != 0 {
		n := d.count(MaxGroups)
		c.Groups = make([]uint32, n)
		for i := range c.Groups {
			c.Groups[i] = d.u32()
		}
	}
	if m&callPid != 0 {
		c.Pid = d.u32()
	}
	if m&callClient != 0 {
		copy(c.Client[:], d.raw(len(c.Client)))
	}
	if m&callSeq != 0 {
		c.Seq = d.uvarint()
	}
	if m&callXdata != 0 {
		c.Xdata = d.xdata()
	}
}

func (d *decoder) fop(f *xl.Fop) {
	f.Op = xl.Op(d.u8())
	if d.err == nil && !f.Op.Valid() {
		d.fail("unknown op %d", uint8(f.Op))
	}
	m := d.presence(fopEnd)
	if m&fopGFID != 0 {
		f.GFID = d.gfid()
	}
	if m&fopGFID2 != 0 {
		f.GFID2 = d.gfid()
	}
	if m&fopName != 0 {
		f.Name = d.str()
	}
	if m&fopName2 != 0 {
		f.Name2 = d.str()
	}
	if m&fopFd != 0 {
		d.fd(&f.Fd)
	}
	if m&fopFlags != 0 {
		f.Flags = d.u32()
	}
	if m&fopMode != 0 {
		f.Mode = d.u32()
	}
	if m&fopRdev != 0 {
		f.Rdev = d.uvarint()
	}
	if m&fopOff != 0 {
		f.Off = d.varint()
	}
	if m&fopLen != 0 {
		f.Len = d.varint()
	}
	if m&fopSetattr != 0 {
		s := &f.Setattr
		s.Valid = d.u32()
		s.Mode = d.u32()
		s.Uid = d.u32()
		s.Gid = d.u32()
		s.Size = d.uvarint()
		d.timespec(&s.Atime)
		d.timespec(&s.Mtime)
	}
	if m&fopXdata != 0 {
		f.Xdata = d.xdata()
	}
	if m&fopXdataOut != 0 {
		if m&fopData != 0 {
			d.fail("xdata values and data both in the data section")
			return
		}
		n := d.count(MaxList)
		d.out = make([]outValue, 0, n)
		for range n {
			k := d.str()
			v := d.uvarint()
			if d.err != nil {
				return
			}
			if v > math.MaxInt32 {
				d.fail("xdata value of %d bytes", v)
				return
			}
			d.out = append(d.out, outValue{key: k, n: int(v)})
		}
		if n == 0 {
			d.fail("no xdata values in the data section")
		}
	}
}

func (d *decoder) result(r *xl.Result) {
	m := d.presence(resEnd)
	if m&resErrno != 0 {
		r.Errno = syscall.Errno(d.u32())
	}
	if m&resAttr != 0 {
		d.attr(&r.Attr)
	}
	if m&resFd != 0 {
		d.fd(&r.Fd)
	}
	if m&resN != 0 {
		r.N = d.varint()
	}
	if m&resNames != 0 {
		n := d.count(MaxList)
		r.Names = make([]string, n)
		for i := range r.Names {
			r.Names[i] = d.str()
		}
	}
	if m&resDirents != 0 {
		// A dirent takes at least 20 bytes (gfid, name length, cookie, ...),
		// which bounds the allocation tighter than count alone.
		n := d.count(MaxList)
		if n > d.left()/20 {
			d.fail("%d dirents cannot fit in %d bytes", n, d.left())
			n = 0
		}
		r.Dirents = make([]xl.Dirent, n)
		for i := range r.Dirents {
			de := &r.Dirents[i]
			de.Name = d.str()
			de.Off = d.uvarint()
			d.attr(&de.Attr)
			f := d.uvarint()
			if f >= direntEnd {
				d.fail("unknown dirent flags %#x", f)
			}
			de.NoXattrs = f&direntNoXattrs != 0
		}
	}
	if m&resStatfs != 0 {
		s := &r.Statfs
		for _, p := range [...]*uint64{&s.Blocks, &s.Bfree, &s.Bavail, &s.Files, &s.Ffree} {
			*p = d.uvarint()
		}
		for _, p := range [...]*uint32{&s.Bsize, &s.Frsize, &s.NameLen} {
			*p = d.u32()
		}
	}
	if m&resXdata != 0 {
		r.Xdata = d.xdata()
	}
}
