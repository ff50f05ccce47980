package xl

import (
	"syscall"
	"time"
)

// Timespec is a time with nanoseconds, as stat(2) reports it.
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// TimespecOf converts a time.Time.
func TimespecOf(t time.Time) Timespec {
	return Timespec{Sec: t.Unix(), Nsec: uint32(t.Nanosecond())}
}

// Time converts back to a time.Time.
func (t Timespec) Time() time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// Attr is an object's attributes (GlusterFS iatt). Mode carries the file
// type bits (syscall.S_IFREG and so on).
type Attr struct {
	GFID                GFID
	Mode                uint32
	Nlink               uint32
	Uid, Gid            uint32
	Rdev                uint64
	Size                uint64
	Blocks              uint64 // 512-byte blocks
	Blksize             uint32
	Atime, Mtime, Ctime Timespec
}

// IsDir reports whether the attributes describe a directory.
func (a *Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// Setattr valid bits: which fields of SetattrIn apply.
const (
	SetMode     = 1 << iota
	SetUid      // chown uid
	SetGid      // chown gid
	SetSize     // truncate
	SetAtime    // atime from SetattrIn.Atime
	SetMtime    // mtime from SetattrIn.Mtime
	SetAtimeNow // UTIME_NOW for atime
	SetMtimeNow // UTIME_NOW for mtime
)

// SetattrIn is a setattr request. Fields whose bit is absent from Valid are
// left alone (UTIME_OMIT for times).
type SetattrIn struct {
	Valid        uint32
	Mode         uint32
	Uid, Gid     uint32
	Size         uint64
	Atime, Mtime Timespec
}

// Fd names an open file or directory. H is allocated by the layer that
// opened it (the brick's posix store); GFID and Flags let a store reopen it
// anonymously, e.g. after a brick restart, as GlusterFS's anonymous fds do.
type Fd struct {
	GFID  GFID
	H     uint64
	Flags uint32
}

// Dirent is one readdir entry with its attributes (readdirplus). Off is the
// cookie to pass to Readdir to continue after this entry.
type Dirent struct {
	Name string
	Off  uint64
	Attr Attr
	// NoXattrs reports that the object had no extended attribute a client
	// can see when it was listed, so a getxattr of any name would have
	// answered ENODATA. False means nothing is known: ask. A translator
	// that replaces Attr with another object's must clear it.
	NoXattrs bool
}

// Statfs is statfs(2) for a volume.
type Statfs struct {
	Blocks, Bfree, Bavail uint64
	Files, Ffree          uint64
	Bsize, Frsize         uint32
	NameLen               uint32
}

// Rename flags (renameat2).
const (
	RenameNoreplace = 1 << 0
	RenameExchange  = 1 << 1
)

// IpcOp names a translator-private call. Each translator that answers Ipc
// declares its ops as constants; an unknown op gets ENOTSUP.
type IpcOp string

// Xdata carries key/values for Ipc calls and per-request metadata.
type Xdata map[string][]byte
