package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Small state files beside the segments. Each is one 32-byte record:
//
//	0   magic    u32  which file
//	4   version  u16
//	6   reserved [2]
//	8   a        u64
//	16  b        u64
//	24  checksum u64  xxhash64 of bytes [0:24]
//
//	term:    a = highest term ever started, b = index its first record gets.
//	         Rewritten durably (tmp, fsync, rename, fsync dir) by StartTerm.
//	synced:  a = synced watermark. Rewritten durably by MarkSynced.
//	applied: a = applied watermark, b = boot id. Overwritten in place
//	         without fsync: it is trusted only within the same boot, when
//	         the page cache that holds the store's applied changes survived.
const (
	stateSize    = 32
	stateVersion = 1
	termMagic    = 0x746a6c67 // "gljt"
	syncedMagic  = 0x796a6c67 // "gljy"
	appliedMagic = 0x616a6c67 // "glja"
	termFile     = "term"
	syncedFile   = "synced"
	appliedFile  = "applied"
	lockFile     = "lock"
	tmpSuffix    = ".tmp"
	bootIDFile   = "/proc/sys/kernel/random/boot_id"
)

func encodeState(magic uint32, a, b uint64) []byte {
	buf := make([]byte, stateSize)
	le := binary.LittleEndian
	le.PutUint32(buf[0:], magic)
	le.PutUint16(buf[4:], stateVersion)
	le.PutUint64(buf[8:], a)
	le.PutUint64(buf[16:], b)
	le.PutUint64(buf[24:], xxhash.Sum64(buf[:24]))
	return buf
}

var errBadState = errors.New("damaged state file")

func decodeState(buf []byte, magic uint32) (a, b uint64, err error) {
	le := binary.LittleEndian
	if len(buf) != stateSize || le.Uint32(buf) != magic || le.Uint64(buf[24:]) != xxhash.Sum64(buf[:24]) {
		return 0, 0, errBadState
	}
	if v := le.Uint16(buf[4:]); v != stateVersion {
		return 0, 0, fmt.Errorf("state file version %d, this build reads %d", v, stateVersion)
	}
	return le.Uint64(buf[8:]), le.Uint64(buf[16:]), nil
}

// readState reads a state file; ok is false if it does not exist.
func readState(dir, name string, magic uint32) (a, b uint64, ok bool, err error) {
	buf, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	a, b, err = decodeState(buf, magic)
	if err != nil {
		return 0, 0, false, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(dir, name), err)
	}
	return a, b, true, nil
}

// writeStateDurable replaces a state file atomically and durably.
func writeStateDurable(dir *os.File, name string, magic uint32, a, b uint64) error {
	path := filepath.Join(dir.Name(), name)
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeState(magic, a, b))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = dir.Sync()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: write %s: %w", path, err)
	}
	return nil
}

// bootID identifies the running kernel boot; 0 when unknown, which makes
// the applied file untrusted.
func bootID() uint64 {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return 0
	}
	return xxhash.Sum64String(strings.TrimSpace(string(b)))
}
