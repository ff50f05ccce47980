package jbrserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

// Peer messages travel in the xdata of an IpcStep call, under stepKey, as
// a batch; over the protocol a batch of wire.OutOfLine bytes or more goes
// from the sender's buffer to the socket, and into the receiver's decoded
// value, without a copy. Every value is little-endian:
//
//	batch:   version u8, set u32, volume length u16, volume, count u32,
//	         then count messages
//	message: type u8, flags u8 (1 = reject, 2 = resyncing), from i32, to i32,
//	         term, index, logTerm, lastTerm, lastIndex, commit, round, sync u64,
//	         entry count u32, then the entries
//	entry:   term, index u64, client [16], seq u64, key [16],
//	         data length u32, data (none for a no-op)
//
// An entry's data is a request as the protocol encodes it (see
// encodeRequest). The version changes whenever the layout does; a brick
// refuses a batch of a version it does not know.
const (
	codecVersion = 3 // 2: sync; 3: resyncing
	stepKey      = "m"
	msgFixed     = 1 + 1 + 4 + 4 + 8*8 + 4
	entryFixed   = 8 + 8 + 16 + 8 + 16 + 4
)

var errCodec = errors.New("jbr: malformed peer message")

func appendMessage(b []byte, m *core.Message) []byte {
	le := binary.LittleEndian
	var flags byte
	if m.Reject {
		flags |= 1
	}
	if m.Resyncing {
		flags |= 2
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

// encodeMessages encodes a batch. The result is freshly allocated: the
// receiver may keep references into it.
func encodeMessages(id setID, ms []core.Message) []byte {
	n := 1 + 4 + 2 + len(id.volume) + 4
	for i := range ms {
		n += msgSize(&ms[i])
	}
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
	b = binary.LittleEndian.AppendUint32(b, id.set)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(id.volume)))
	b = append(b, id.volume...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ms)))
	for i := range ms {
		b = appendMessage(b, &ms[i])
	}
	return b
}

// msgSize is a message's encoded size.
func msgSize(m *core.Message) int {
	n := msgFixed
	for _, e := range m.Entries {
		n += entryFixed + len(e.Data)
	}
	return n
}

// decodeMessages decodes a batch. Entry data refers to b's memory.
func decodeMessages(b []byte) (setID, []core.Message, error) {
	var id setID
	d := decoder{b: b}
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
				if dn := int(d.u32()); dn > 0 {
					e.Data = d.take(dn)
				}
			}
		}
		if d.bad {
			return id, nil, errCodec
		}
		if !m.Type.Valid() || flags > 3 {
			return id, nil, fmt.Errorf("%w: type %d flags %d", errCodec, m.Type, flags)
		}
		ms = append(ms, m)
	}
	if d.bad || len(d.b) != 0 {
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
	b := make([]byte, 0, binary.MaxVarintLen64+len(meta)+len(f.Data))
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	off := len(b)
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
