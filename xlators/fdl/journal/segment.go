package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// Segment file header, little-endian, 64 bytes; records start after it:
//
//	0   magic    u32  segMagic
//	4   version  u16
//	6   reserved [2]
//	8   term     u64
//	16  first    u64  index of the segment's first record
//	24  salt     u64  seeds every record checksum in the segment
//	32  reserved [24]
//	56  checksum u64  xxhash64 of bytes [0:56]
//
// The salt is random per term incarnation, so a record image that turns up
// inside another record's payload (a user storing a copy of a journal)
// never validates as one of this segment's records.
const (
	segMagic      = 0x736a6c67 // "gljs"
	segVersion    = 1
	segHeaderSize = 64
)

// segment is one journal file. size and last change only in the writer,
// under Journal.mu.
type segment struct {
	path              string
	term, first, salt uint64
	last              uint64 // first-1 while empty
	size              int64  // bytes in use: header and records
}

func segName(term, first uint64) string { return fmt.Sprintf("term-%016x-%016x.log", term, first) }

func parseSegName(name string) (term, first uint64, ok bool) {
	var rest string
	n, err := fmt.Sscanf(name, "term-%016x-%016x%s", &term, &first, &rest)
	return term, first, err == nil && n == 3 && rest == ".log" && name == segName(term, first)
}

func segHeader(term, first, salt uint64) []byte {
	b := make([]byte, segHeaderSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], segMagic)
	le.PutUint16(b[4:], segVersion)
	le.PutUint64(b[8:], term)
	le.PutUint64(b[16:], first)
	le.PutUint64(b[24:], salt)
	le.PutUint64(b[56:], xxhash.Sum64(b[:56]))
	return b
}

// parseSegHeader validates b as the header of the segment named term/first.
func parseSegHeader(b []byte, term, first uint64) (salt uint64, err error) {
	le := binary.LittleEndian
	if len(b) < segHeaderSize || le.Uint32(b) != segMagic || le.Uint64(b[56:]) != xxhash.Sum64(b[:56]) {
		return 0, errNoRecord
	}
	if v := le.Uint16(b[4:]); v != segVersion {
		return 0, fmt.Errorf("segment version %d, this build reads %d", v, segVersion)
	}
	if t, f := le.Uint64(b[8:]), le.Uint64(b[16:]); t != term || f != first {
		return 0, fmt.Errorf("header says term %d first index %d, name disagrees", t, f)
	}
	return le.Uint64(b[24:]), nil
}

// createSegment makes a new segment file, preallocated to size, with its
// header durable. The caller fsyncs the directory.
func createSegment(dir string, term, first, salt uint64, size int64, log *slog.Logger) (*os.File, *segment, error) {
	path := filepath.Join(dir, segName(term, first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if err := preallocate(f, segHeaderSize, size, log); err != nil {
		f.Close()
		return nil, nil, err
	}
	if _, err := f.WriteAt(segHeader(term, first, salt), 0); err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, &segment{path: path, term: term, first: first, salt: salt, last: first - 1, size: segHeaderSize}, nil
}

// preallocate reserves [off, size) so appends do not allocate blocks and
// change the file size on every fdatasync. File systems without fallocate
// simply grow the file.
func preallocate(f *os.File, off, size int64, log *slog.Logger) error {
	if size <= off {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, off, size-off)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		log.Debug("journal: fallocate unsupported, segments grow as written", "file", f.Name())
		return nil
	}
	return err
}

// scanResult is what scanSegment learned about one file.
type scanResult struct {
	seg     *segment
	garbage bool  // bytes after the last record are not all zero
	fileLen int64 // the file's length when scanned
}

// scanSegment validates every record of a segment. It returns the segment
// up to its last intact record. Damage is an error unless it can only be
// an unacknowledged torn write (see scanTail); a header that never became
// durable (an all-zero file body) yields a nil segment.
func scanSegment(path string, term, first uint64) (scanResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return scanResult{}, err
	}
	res := scanResult{fileLen: int64(len(data))}
	salt, err := parseSegHeader(data, term, first)
	if err == errNoRecord {
		if isZero(data[min(len(data), segHeaderSize):]) {
			return res, nil // torn creation: nothing was ever appended
		}
		return res, fmt.Errorf("%w: %s: damaged segment header", ErrCorrupt, path)
	}
	if err != nil {
		return res, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	seg := &segment{path: path, term: term, first: first, salt: salt, last: first - 1}
	off := segHeaderSize
	for {
		h, err := parseHeader(data[off:], salt)
		if err != nil {
			break
		}
		if h.version != recVersion || h.term != term || h.index != seg.last+1 {
			return res, fmt.Errorf("%w: %s offset %d: record (version %d term %d index %d) out of sequence, want term %d index %d",
				ErrCorrupt, path, off, h.version, h.term, h.index, term, seg.last+1)
		}
		seg.last = h.index
		off += pad8(h.length)
		if off >= len(data) {
			// The file may end inside the last record's padding, which
			// the checksum does not cover: it is zeros, see Open.
			break
		}
	}
	seg.size = int64(off)
	res.seg = seg
	res.garbage = off < len(data) && !isZero(data[off:])
	if res.garbage {
		if err := scanTail(data, off, seg); err != nil {
			return res, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
	}
	return res, nil
}

// scanTail decides whether the damaged bytes at off end the segment or sit
// in its middle. The writer appends a batch, fdatasyncs it, and only then
// writes the next batch, so only the last batch can be torn, and every
// record carries the highest index that was durable when it was queued.
// An intact record after the damage that says the record right after the
// last good one was durable proves the damage hit acknowledged data: that
// is corruption in the middle. Otherwise the damage is a torn tail.
func scanTail(data []byte, off int, seg *segment) error {
	for o := off + 8; o+recHeaderSize <= len(data); o += 8 {
		if binary.LittleEndian.Uint32(data[o:]) != recMagic {
			continue
		}
		h, err := parseHeader(data[o:], seg.salt)
		if err != nil || h.term != seg.term || h.index <= seg.last {
			continue
		}
		if h.durable > seg.last {
			return fmt.Errorf("damaged data at offset %d is followed by record %d at offset %d, written after index %d was durable",
				off, h.index, o, h.durable)
		}
	}
	return nil
}

func isZero(b []byte) bool {
	var zero [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zero))
		if !bytes.Equal(b[:n], zero[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
