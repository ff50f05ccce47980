package wire

import (
	"encoding/binary"
	"syscall"
	"time"
)

// Hello is the client's handshake: what it speaks and what it wants.
type Hello struct {
	Version  uint32
	Volume   string
	MaxFrame uint32 // the largest reply payload the client accepts
	// PingTimeout is how long the client tolerates silence; the server
	// drops a connection that stays silent for twice as long.
	PingTimeout time.Duration
}

// Welcome is the server's answer to a Hello. A non-zero Errno rejects the
// connection, Reason saying why; the server closes it after sending.
type Welcome struct {
	Errno    syscall.Errno
	Reason   string
	MaxFrame uint32 // the largest request payload the server accepts
}

// AppendHello appends a handshake frame carrying h.
func AppendHello(b []byte, id uint64, h *Hello) []byte {
	start := len(b)
	b = AppendHeader(b, Header{})
	b = binary.AppendUvarint(b, uint64(h.Version))
	b = appendString(b, h.Volume)
	b = binary.AppendUvarint(b, uint64(h.MaxFrame))
	b = binary.AppendUvarint(b, uint64(h.PingTimeout.Milliseconds()))
	PutHeader(b[start:], Header{Type: TypeHandshake, ID: id, Len: uint32(len(b) - start - HeaderSize)})
	return b
}

// DecodeHello decodes a handshake payload sent by a client.
func DecodeHello(b []byte, h *Hello) error {
	d := decoder{b: b}
	h.Version = d.u32()
	h.Volume = d.str()
	h.MaxFrame = d.u32()
	ms := d.uvarint()
	if ms > uint64(time.Duration(1<<62)/time.Millisecond) {
		d.fail("ping timeout %dms out of range", ms)
	}
	h.PingTimeout = time.Duration(ms) * time.Millisecond
	return d.end()
}

// AppendWelcome appends a handshake frame carrying w.
func AppendWelcome(b []byte, id uint64, w *Welcome) []byte {
	start := len(b)
	b = AppendHeader(b, Header{})
	b = binary.AppendUvarint(b, uint64(w.Errno))
	b = appendString(b, w.Reason)
	b = binary.AppendUvarint(b, uint64(w.MaxFrame))
	PutHeader(b[start:], Header{Type: TypeHandshake, ID: id, Len: uint32(len(b) - start - HeaderSize)})
	return b
}

// DecodeWelcome decodes a handshake payload sent by a server.
func DecodeWelcome(b []byte, w *Welcome) error {
	d := decoder{b: b}
	w.Errno = syscall.Errno(d.u32())
	w.Reason = d.str()
	w.MaxFrame = d.u32()
	return d.end()
}
