package jbrserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Peer messages travel in the xdata of an IpcStep call, as a batch under
// stepKey. The data of an entry of wire.OutOfLine bytes or more (a big
// write) is not copied into the batch: it is an xdata value of its own,
// under dataKey(n) for the batch's n-th such entry, and its length in the
// batch is outOfLine. Over the protocol such values go from the sender's
// entries to the socket, and into the receiver's decoded values, without
// a copy. Every value is little-endian:
//
//	batch:   version u8, set u32, volume length u16, volume, count u32,
//	         then count messages
//	message: type u8, flags u8 (1 = reject, 2 = resyncing, 4 = ack synced), from i32, to i32,
//	         term, index, logTerm, lastTerm, lastIndex, commit, round, sync u64,
//	         entry count u32, then the entries
//	entry:   term, index u64, client [16], seq u64, key [16],
//	         data length u32, data (none for a no-op, or out of line)
//
// An entry's data is a request as the protocol encodes it (see
// encodeRequest). The version changes whenever the layout does; a brick
// refuses a batch of a version it does not know.
const (
	codecVersion = 5 // 2: sync; 3: resyncing; 4: data out of line; 5: ack synced
	stepKey      = "m"
	msgFixed     = 1 + 1 + 4 + 4 + 8*8 + 4
	entryFixed   = 8 + 8 + 16 + 8 + 16 + 4
	outOfLine    = math.MaxUint32 // an entry's data length: its data is a value of its own
)

// dataKey is the xdata key of a batch's n-th entry with data out of line.
func dataKey(n int) string { return "d" + strconv.Itoa(n) }

var errCodec = errors.New("jbr: malformed peer message")

// appendMessage appends m, putting the data of its big entries into x
// from key dataKey(*out) on.
func appendMessage(b []byte, m *core.Message, x xl.Xdata, out *int) []byte {
	le := binary.LittleEndian
	var flags byte
	if m.Reject {
		flags |= 1
	}
	if m.Resyncing {
		flags |= 2
	}
	if m.AckSynced {
		flags |= 4
	}
	b = append(b, byte(m.Type), flags)
	b = le.AppendUint32(b, uint32(int32(m.From)))
	b = le.AppendUint32(b, uint32(int32(m.To)))
	for _, v := range [...]uint64{m.Term, m.Index, m.LogTerm, m.LastTerm, m.LastIndex, m.Commit, m.Round, m.Sync} {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, uint32(len(m.Entries)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = le.AppendUint64(b, e.Term)
		b = le.AppendUint64(b, e.Index)
		b = append(b, e.Req.Client[:]...)
		b = le.AppendUint64(b, e.Req.Seq)
		b = append(b, e.Key[:]...)
		if len(e.Data) >= wire.OutOfLine {
			b = le.AppendUint32(b, outOfLine)
			x[dataKey(*out)] = e.Data
			*out++
			continue
		}
		b = le.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// setID names the replica set a batch is for: a brick refuses batches
// meant for another set (a volfile mistake) rather than mix logs.
type setID struct {
	volume string
	set    uint32
}

// encodeMessages encodes a batch as an IpcStep's xdata. The batch is
// freshly allocated and big entries' data is shared with ms, never
// written to: the receiver may keep references into both.
func encodeMessages(id setID, ms []core.Message) xl.Xdata {
	n := 1 + 4 + 2 + len(id.volume) + 4
	for i := range ms {
		n += msgFixed
		for _, e := range ms[i].Entries {
			n += entryFixed
			if len(e.Data) < wire.OutOfLine {
				n += len(e.Data)
			}
		}
	}
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
	b = binary.LittleEndian.AppendUint32(b, id.set)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(id.volume)))
	b = append(b, id.volume...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ms)))
	x := xl.Xdata{}
	out := 0
	for i := range ms {
		b = appendMessage(b, &ms[i], x, &out)
	}
	x[stepKey] = b
	return x
}

// msgSize is a message's encoded size.
func msgSize(m *core.Message) int {
	n := msgFixed
	for _, e := range m.Entries {
		n += entryFixed + len(e.Data)
	}
	return n
}

// decodeMessages decodes a batch. Entry data refers to x's memory.
func decodeMessages(x xl.Xdata) (setID, []core.Message, error) {
	var id setID
	d := decoder{b: x[stepKey]}
	out := 0
	if v := d.u8(); d.bad || v != codecVersion {
		if d.bad {
			return id, nil, errCodec
		}
		return id, nil, fmt.Errorf("%w: version %d, this build reads %d", errCodec, v, codecVersion)
	}
	id.set = d.u32()
	id.volume = string(d.take(int(d.u16())))
	n := d.count(msgFixed)
	ms := make([]core.Message, 0, n)
	for range n {
		var m core.Message
		m.Type = core.MsgType(d.u8())
		flags := d.u8()
		m.Reject = flags&1 != 0
		m.Resyncing = flags&2 != 0
		m.AckSynced = flags&4 != 0
		m.From = core.ID(int32(d.u32()))
		m.To = core.ID(int32(d.u32()))
		m.Term, m.Index, m.LogTerm = d.u64(), d.u64(), d.u64()
		m.LastTerm, m.LastIndex, m.Commit, m.Round, m.Sync = d.u64(), d.u64(), d.u64(), d.u64(), d.u64()
		if ne := d.count(entryFixed); ne > 0 {
			m.Entries = make([]core.Entry, ne)
			for i := range m.Entries {
				e := &m.Entries[i]
				e.Term, e.Index = d.u64(), d.u64()
				copy(e.Req.Client[:], d.take(16))
				e.Req.Seq = d.u64()
				copy(e.Key[:], d.take(16))
				switch dn := d.u32(); {
				case dn == outOfLine:
					v, ok := x[dataKey(out)]
					if !ok || len(v) == 0 {
						return id, nil, fmt.Errorf("%w: entry data %d missing", errCodec, out)
					}
					e.Data = v
					out++
				case dn > 0:
					e.Data = d.take(int(dn))
				}
			}
		}
		if d.bad {
			return id, nil, errCodec
		}
		if !m.Type.Valid() || flags > 7 {
			return id, nil, fmt.Errorf("%w: type %d flags %d", errCodec, m.Type, flags)
		}
		ms = append(ms, m)
	}
	if d.bad || len(d.b) != 0 || len(x) != 1+out {
		return id, nil, errCodec
	}
	return id, ms, nil
}

// decoder reads b; a short read sets bad and yields zeros.
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

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
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

// count reads an element count and checks that the rest can hold that
// many elements of at least min bytes.
func (d *decoder) count(min int) int {
	n := int(d.u32())
	if n > len(d.b)/min {
		d.bad = true
		return 0
	}
	return n
}

// encodeRequest encodes a request as an entry's data, with the protocol's
// codec: a uvarint metadata length, the metadata (wire.AppendCall and
// wire.AppendFop), then the payload. It returns the encoding and where
// the payload starts in it.
func encodeRequest(c *xl.Call, f *xl.Fop) ([]byte, int) {
	meta := wire.AppendFop(wire.AppendCall(nil, c), f)
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(meta)), uint64(len(meta)))
	b = append(b, meta...)
	off := len(b)
	// Appending the payload allocates the entry without zeroing what
	// the copy fills (make would clear a whole write's worth first).
	return append(b, f.Data...), off
}

// decodeRequest decodes an entry's data. The payload refers to b's memory.
func decodeRequest(b []byte, c *xl.Call, f *xl.Fop) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > math.MaxInt32 || uint64(len(b)-k) < n {
		return fmt.Errorf("%w: bad request length", errCodec)
	}
	meta := b[k : k+int(n)]
	data := b[k+int(n):]
	if len(data) == 0 {
		data = nil
	}
	if err := wire.DecodeRequest(meta, data, c, f); err != nil {
		return fmt.Errorf("%w: %v", errCodec, err)
	}
	if !f.Mutates() {
		return fmt.Errorf("%w: entry holds %v, which does not change the store", errCodec, f.Op)
	}
	return nil
}
