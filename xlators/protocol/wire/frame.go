// Package wire is the gluon protocol's frame format and codec, shared by
// protocol/client and protocol/server.
//
// A connection carries frames, each a fixed 24-byte header followed by a
// payload:
//
//	0  magic    u32  "glun"
//	4  version  u8   Version
//	5  type     u8   request, reply, ping, pong, handshake, cancel
//	6  flags    u16  FlagNoReply, FlagXdataData on a request; zero otherwise
//	8  id       u64  request id; a reply carries its request's id
//	16 len      u32  payload bytes
//	20 datalen  u32  trailing raw bytes of the payload (write data, read data,
//	                 or a request's big xdata values with FlagXdataData)
//
// The payload is metadata (len-datalen bytes, encoded by this package) then
// the raw data section, so big I/O goes from the caller's slice to the
// socket and from the socket into the caller's buffer without a copy.
// Integers are little-endian; counts, sizes and ids in metadata are
// varints; strings and byte slices are length-prefixed with hard limits.
// Decoders never panic, and never allocate more than the bytes they were
// handed can justify.
//
// Version 2 added the cancel frame, version 3 the no-reply flag, version 4
// the dirent flags (xl.Dirent.NoXattrs), version 5 xdata values in a
// request's data section (FlagXdataData). Version 6 changes no frame: it
// marks bricks that honour jbr-server's DurableKey, which clients rely on
// to answer fsyncs themselves, so that a client never talks to a brick
// that would ignore it.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// Magic opens every frame: "glun" in little-endian order.
	Magic uint32 = 'g' | 'l'<<8 | 'u'<<16 | 'n'<<24
	// Version is the protocol version. Bump it on any incompatible change,
	// a new frame type included.
	Version = 6
	// HeaderSize is the fixed frame header length.
	HeaderSize = 24
	// DefaultMaxFrame bounds a frame's payload unless configured otherwise.
	DefaultMaxFrame = 16 << 20
	// MinMaxFrame is the smallest payload limit a peer may announce.
	MinMaxFrame = 64 << 10
)

// FlagNoReply marks a request whose sender wants no reply: the server
// serves it and sends nothing back, errors included. For messages whose
// answers travel as requests of their own (replication's peer steps).
const FlagNoReply uint16 = 1

// FlagXdataData marks a request whose data section holds xdata values
// (see OutOfLine), which the server's decoded request keeps: it must not
// read them into a buffer it recycles.
const FlagXdataData uint16 = 2

// Type is a frame's kind.
type Type uint8

const (
	TypeRequest Type = 1 + iota
	TypeReply
	TypePing
	TypePong
	// TypeHandshake opens a connection: the client sends a Hello, the
	// server answers with a Welcome under the same id.
	TypeHandshake
	// TypeCancel tells the server that the client gave up on the request
	// with the frame's id: the server cancels the request's context. The
	// request is still answered, and the client drops the answer. A cancel
	// for a request that is no longer running is ignored.
	TypeCancel
	typeEnd
)

func (t Type) String() string {
	switch t {
	case TypeRequest:
		return "request"
	case TypeReply:
		return "reply"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeHandshake:
		return "handshake"
	case TypeCancel:
		return "cancel"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

var (
	// ErrMalformed wraps every decoding error: the peer is broken or
	// hostile, and the connection must be dropped.
	ErrMalformed = errors.New("malformed frame")
	// ErrVersion is returned for a well-formed header of another version.
	ErrVersion = errors.New("unsupported protocol version")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Header is a decoded frame header.
type Header struct {
	Version uint8 // set by ParseHeader; PutHeader always writes Version
	Type    Type
	Flags   uint16
	ID      uint64
	Len     uint32 // payload bytes after the header
	DataLen uint32 // trailing raw data bytes, included in Len
}

// MetaLen is the length of the payload's metadata part.
func (h *Header) MetaLen() int { return int(h.Len - h.DataLen) }

// PutHeader writes h into b[:HeaderSize].
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint32(b[0:], Magic)
	b[4] = Version
	b[5] = byte(h.Type)
	binary.LittleEndian.PutUint16(b[6:], h.Flags)
	binary.LittleEndian.PutUint64(b[8:], h.ID)
	binary.LittleEndian.PutUint32(b[16:], h.Len)
	binary.LittleEndian.PutUint32(b[20:], h.DataLen)
}

// AppendHeader appends h to b.
func AppendHeader(b []byte, h Header) []byte {
	b = append(b, make([]byte, HeaderSize)...)
	PutHeader(b[len(b)-HeaderSize:], h)
	return b
}

// ParseHeader decodes and checks a frame header: magic, type, flags, and a
// payload of at most maxFrame bytes. A header of another version is
// returned in full together with an ErrVersion error, so that a server can
// still answer a handshake.
func ParseHeader(b []byte, maxFrame int) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, malformed("short header: %d bytes", len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != Magic {
		return h, malformed("bad magic %#08x", m)
	}
	h.Version = b[4]
	h.Type = Type(b[5])
	h.ID = binary.LittleEndian.Uint64(b[8:])
	h.Len = binary.LittleEndian.Uint32(b[16:])
	h.DataLen = binary.LittleEndian.Uint32(b[20:])
	h.Flags = binary.LittleEndian.Uint16(b[6:])
	if h.Type == 0 || h.Type >= typeEnd {
		return h, malformed("unknown frame type %d", uint8(h.Type))
	}
	if h.Flags != 0 && (h.Type != TypeRequest || h.Flags&^(FlagNoReply|FlagXdataData) != 0) {
		return h, malformed("unknown flags %#04x on a %v", h.Flags, h.Type)
	}
	if uint64(h.Len) > uint64(maxFrame) {
		return h, malformed("%v payload of %d bytes exceeds limit %d", h.Type, h.Len, maxFrame)
	}
	if h.DataLen > h.Len {
		return h, malformed("data section %d longer than payload %d", h.DataLen, h.Len)
	}
	switch h.Type {
	case TypePing, TypePong, TypeCancel:
		if h.Len != 0 {
			return h, malformed("%v with %d-byte payload", h.Type, h.Len)
		}
	case TypeHandshake:
		if h.DataLen != 0 {
			return h, malformed("handshake with a data section")
		}
	}
	if h.Version != Version {
		return h, fmt.Errorf("%w %d (this side speaks %d)", ErrVersion, h.Version, Version)
	}
	return h, nil
}
