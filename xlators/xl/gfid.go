package xl

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// GFID is an object's cluster-wide identity. Clients choose it on create,
// mkdir, symlink and mknod (GlusterFS "gfid-req"), so every replica agrees.
// DHT2 encodes the owning token in its high bytes.
type GFID [16]byte

// RootGFID is the volume root, as in GlusterFS.
var RootGFID = GFID{15: 1}

// NewGFID returns a random (version 4) GFID.
func NewGFID() GFID {
	var g GFID
	if _, err := rand.Read(g[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// IsZero reports whether g is unset.
func (g GFID) IsZero() bool { return g == GFID{} }

// Ino is the inode number the FUSE client reports: the low 64 bits, as
// GlusterFS's gfid_to_ino does; the root maps to 1.
func (g GFID) Ino() uint64 {
	if g == RootGFID {
		return 1
	}
	ino := binary.BigEndian.Uint64(g[8:])
	if ino <= 1 {
		ino ^= 1 << 63 // keep 0 and 1 free
	}
	return ino
}

func (g GFID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], g[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], g[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], g[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], g[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], g[10:16])
	return string(b[:])
}

// ParseGFID parses the canonical 36-character form.
func ParseGFID(s string) (GFID, error) {
	var g GFID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("gfid %q: want 8-4-4-4-12 hex form", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(g[:], []byte(h)); err != nil {
		return g, fmt.Errorf("gfid %q: %v", s, err)
	}
	return g, nil
}
