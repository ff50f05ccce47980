package journal

import (
	"encoding/binary"
	"testing"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Decoding never panics or over-allocates, whatever bytes carry a valid
// checksum; well-formed records re-encode to the same bytes.
func FuzzDecode(f *testing.F) {
	for o := xl.Op(1); o.Valid(); o++ {
		r := fullRecord(o, int(o))
		f.Add(encode(r, encodedSize(r)))
	}
	f.Add(make([]byte, recHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < recHeaderSize || len(b) > MaxRecordSize {
			return
		}
		binary.LittleEndian.PutUint32(b, recMagic)
		binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
		seal(b, 1, 2, 1, 42)
		if _, err := parseHeader(b, 42); err != nil {
			t.Fatalf("sealed bytes fail their checksum: %v", err)
		}
		rec, err := decode(b)
		if err != nil {
			return
		}
		size := encodedSize(rec)
		if size != len(b) {
			t.Fatalf("decoded %d bytes into a record that encodes to %d", len(b), size)
		}
	})
}
