package xl

import (
	"context"
	"syscall"
)

// Op numbers every operation. The numbers are on the wire and in journals:
// append, never renumber.
type Op uint8

const (
	OpInvalid Op = iota
	OpLookup
	OpGetattr
	OpSetattr
	OpAccess
	OpReadlink
	OpMknod
	OpMkdir
	OpSymlink
	OpLink
	OpUnlink
	OpRmdir
	OpRename
	OpCreate
	OpOpen
	OpRead
	OpWrite
	OpTruncate
	OpFallocate
	OpLseek
	OpFlush
	OpFsync
	OpRelease
	OpOpendir
	OpReaddir
	OpReleasedir
	OpStatfs
	OpGetxattr
	OpSetxattr
	OpListxattr
	OpRemovexattr
	OpIpc
	opCount
)

// OpInfo describes one op.
type OpInfo struct {
	Name string
	// Mutating ops change the store and are journaled and replicated.
	// Open with O_TRUNC also mutates; see Fop.Mutates.
	Mutating bool
	// FdBased ops name their object through Fop.Fd.
	FdBased bool
}

// Ops is the op table, indexed by Op.
var Ops = [opCount]OpInfo{
	OpLookup:      {Name: "Lookup"},
	OpGetattr:     {Name: "Getattr"},
	OpSetattr:     {Name: "Setattr", Mutating: true},
	OpAccess:      {Name: "Access"},
	OpReadlink:    {Name: "Readlink"},
	OpMknod:       {Name: "Mknod", Mutating: true},
	OpMkdir:       {Name: "Mkdir", Mutating: true},
	OpSymlink:     {Name: "Symlink", Mutating: true},
	OpLink:        {Name: "Link", Mutating: true},
	OpUnlink:      {Name: "Unlink", Mutating: true},
	OpRmdir:       {Name: "Rmdir", Mutating: true},
	OpRename:      {Name: "Rename", Mutating: true},
	OpCreate:      {Name: "Create", Mutating: true},
	OpOpen:        {Name: "Open"},
	OpRead:        {Name: "Read", FdBased: true},
	OpWrite:       {Name: "Write", Mutating: true, FdBased: true},
	OpTruncate:    {Name: "Truncate", Mutating: true},
	OpFallocate:   {Name: "Fallocate", Mutating: true, FdBased: true},
	OpLseek:       {Name: "Lseek", FdBased: true},
	OpFlush:       {Name: "Flush", FdBased: true},
	OpFsync:       {Name: "Fsync", FdBased: true},
	OpRelease:     {Name: "Release", FdBased: true},
	OpOpendir:     {Name: "Opendir"},
	OpReaddir:     {Name: "Readdir", FdBased: true},
	OpReleasedir:  {Name: "Releasedir", FdBased: true},
	OpStatfs:      {Name: "Statfs"},
	OpGetxattr:    {Name: "Getxattr"},
	OpSetxattr:    {Name: "Setxattr", Mutating: true},
	OpListxattr:   {Name: "Listxattr"},
	OpRemovexattr: {Name: "Removexattr", Mutating: true},
	OpIpc:         {Name: "Ipc"},
}

// Valid reports whether o is a known op.
func (o Op) Valid() bool { return o > OpInvalid && o < opCount }

func (o Op) String() string {
	if !o.Valid() {
		return "Op(" + itoa(int(o)) + ")"
	}
	return Ops[o].Name
}

// OpByName finds an op by its method name.
func OpByName(name string) (Op, bool) {
	for i := range Ops {
		if Ops[i].Name == name && Op(i).Valid() {
			return Op(i), true
		}
	}
	return OpInvalid, false
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for ; i > 0; i /= 10 {
		n--
		b[n] = byte('0' + i%10)
	}
	return string(b[n:])
}

// Fop is the generic form of a request. Which fields an op uses:
//
//	GFID   ino, parent or oldParent
//	Name   name, oldName, xattr name
//	GFID2  new object's gfid (create, mkdir, symlink, mknod); newParent (link, rename)
//	Name2  newName (link, rename), symlink target
//	Fd     fd-based ops
//	Flags  open flags, access mask, rename/setxattr flags, fallocate mode, lseek whence, fsync datasync (1)
//	Mode, Rdev, Setattr, Data (write data, xattr value), Xdata (ipc input)
//	Off    file offset, readdir cookie
//	Len    read size, fallocate length, truncate size, readdir max
type Fop struct {
	Op      Op
	GFID    GFID
	GFID2   GFID
	Name    string
	Name2   string
	Fd      Fd
	Flags   uint32
	Mode    uint32
	Rdev    uint64
	Off     int64
	Len     int64
	Data    []byte
	Setattr SetattrIn
	Xdata   Xdata
}

// Mutates reports whether f changes the store.
func (f *Fop) Mutates() bool {
	if f.Op == OpOpen {
		return f.Flags&syscall.O_TRUNC != 0
	}
	return f.Op.Valid() && Ops[f.Op].Mutating
}

// Target is the object the request acts on (the parent for entry ops).
func (f *Fop) Target() GFID {
	if f.Op.Valid() && Ops[f.Op].FdBased {
		return f.Fd.GFID
	}
	return f.GFID
}

// Result is the generic form of a reply.
type Result struct {
	Errno   syscall.Errno
	Attr    Attr
	Fd      Fd
	N       int64 // bytes read or written, lseek offset
	Data    []byte
	Names   []string
	Dirents []Dirent
	Statfs  Statfs
	Xdata   Xdata
}

// Dispatch performs f on x and returns the generic reply. A Read uses
// f.Data as its buffer when it is large enough.
func Dispatch(ctx context.Context, x Xlator, f *Fop) *Result {
	r := &Result{}
	switch f.Op {
	case OpLookup:
		r.Attr, r.Errno = x.Lookup(ctx, f.GFID, f.Name)
	case OpGetattr:
		r.Attr, r.Errno = x.Getattr(ctx, f.GFID)
	case OpSetattr:
		r.Attr, r.Errno = x.Setattr(ctx, f.GFID, f.Setattr)
	case OpAccess:
		r.Errno = x.Access(ctx, f.GFID, f.Flags)
	case OpReadlink:
		var s string
		s, r.Errno = x.Readlink(ctx, f.GFID)
		r.Data = []byte(s)
	case OpMknod:
		r.Attr, r.Errno = x.Mknod(ctx, f.GFID, f.Name, f.GFID2, f.Mode, f.Rdev)
	case OpMkdir:
		r.Attr, r.Errno = x.Mkdir(ctx, f.GFID, f.Name, f.GFID2, f.Mode)
	case OpSymlink:
		r.Attr, r.Errno = x.Symlink(ctx, f.GFID, f.Name, f.GFID2, f.Name2)
	case OpLink:
		r.Attr, r.Errno = x.Link(ctx, f.GFID, f.GFID2, f.Name2)
	case OpUnlink:
		r.Errno = x.Unlink(ctx, f.GFID, f.Name)
	case OpRmdir:
		r.Errno = x.Rmdir(ctx, f.GFID, f.Name)
	case OpRename:
		r.Errno = x.Rename(ctx, f.GFID, f.Name, f.GFID2, f.Name2, f.Flags)
	case OpCreate:
		r.Fd, r.Attr, r.Errno = x.Create(ctx, f.GFID, f.Name, f.GFID2, f.Flags, f.Mode)
	case OpOpen:
		r.Fd, r.Errno = x.Open(ctx, f.GFID, f.Flags)
	case OpRead:
		if f.Len < 0 || f.Len > MaxIO {
			r.Errno = syscall.EINVAL
			break
		}
		buf := f.Data
		if int64(cap(buf)) < f.Len {
			buf = make([]byte, f.Len)
		}
		var n int
		n, r.Errno = x.Read(ctx, f.Fd, buf[:f.Len], f.Off)
		r.N, r.Data = int64(n), buf[:n]
	case OpWrite:
		var n int
		n, r.Errno = x.Write(ctx, f.Fd, f.Data, f.Off)
		r.N = int64(n)
	case OpTruncate:
		r.Attr, r.Errno = x.Truncate(ctx, f.GFID, uint64(f.Len))
	case OpFallocate:
		r.Errno = x.Fallocate(ctx, f.Fd, f.Flags, f.Off, f.Len)
	case OpLseek:
		r.N, r.Errno = x.Lseek(ctx, f.Fd, f.Off, f.Flags)
	case OpFlush:
		r.Errno = x.Flush(ctx, f.Fd)
	case OpFsync:
		r.Errno = x.Fsync(ctx, f.Fd, f.Flags&1 != 0)
	case OpRelease:
		r.Errno = x.Release(ctx, f.Fd)
	case OpOpendir:
		r.Fd, r.Errno = x.Opendir(ctx, f.GFID)
	case OpReaddir:
		r.Dirents, r.Errno = x.Readdir(ctx, f.Fd, uint64(f.Off), int(f.Len))
	case OpReleasedir:
		r.Errno = x.Releasedir(ctx, f.Fd)
	case OpStatfs:
		r.Statfs, r.Errno = x.Statfs(ctx, f.GFID)
	case OpGetxattr:
		r.Data, r.Errno = x.Getxattr(ctx, f.GFID, f.Name)
	case OpSetxattr:
		r.Errno = x.Setxattr(ctx, f.GFID, f.Name, f.Data, f.Flags)
	case OpListxattr:
		r.Names, r.Errno = x.Listxattr(ctx, f.GFID)
	case OpRemovexattr:
		r.Errno = x.Removexattr(ctx, f.GFID, f.Name)
	case OpIpc:
		r.Xdata, r.Errno = x.Ipc(ctx, IpcOp(f.Name), f.Xdata)
	default:
		r.Errno = syscall.ENOSYS
	}
	return r
}

// MaxIO is the largest read or write a single request may carry.
const MaxIO = 4 << 20

// Handler performs a generic request.
type Handler func(ctx context.Context, f *Fop) *Result

// Funnel is an Xlator that turns every typed call into a Fop and hands it
// to H: the protocol client sends it, a tracer logs it.
type Funnel struct{ H Handler }

var _ Xlator = Funnel{}

func (x Funnel) Lookup(ctx context.Context, parent GFID, name string) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpLookup, GFID: parent, Name: name})
	return r.Attr, r.Errno
}

func (x Funnel) Getattr(ctx context.Context, ino GFID) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpGetattr, GFID: ino})
	return r.Attr, r.Errno
}

func (x Funnel) Setattr(ctx context.Context, ino GFID, in SetattrIn) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpSetattr, GFID: ino, Setattr: in})
	return r.Attr, r.Errno
}

func (x Funnel) Access(ctx context.Context, ino GFID, mask uint32) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpAccess, GFID: ino, Flags: mask}).Errno
}

func (x Funnel) Readlink(ctx context.Context, ino GFID) (string, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpReadlink, GFID: ino})
	return string(r.Data), r.Errno
}

func (x Funnel) Mknod(ctx context.Context, parent GFID, name string, gfid GFID, mode uint32, rdev uint64) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpMknod, GFID: parent, Name: name, GFID2: gfid, Mode: mode, Rdev: rdev})
	return r.Attr, r.Errno
}

func (x Funnel) Mkdir(ctx context.Context, parent GFID, name string, gfid GFID, mode uint32) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpMkdir, GFID: parent, Name: name, GFID2: gfid, Mode: mode})
	return r.Attr, r.Errno
}

func (x Funnel) Symlink(ctx context.Context, parent GFID, name string, gfid GFID, target string) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpSymlink, GFID: parent, Name: name, GFID2: gfid, Name2: target})
	return r.Attr, r.Errno
}

func (x Funnel) Link(ctx context.Context, ino GFID, newParent GFID, newName string) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpLink, GFID: ino, GFID2: newParent, Name2: newName})
	return r.Attr, r.Errno
}

func (x Funnel) Unlink(ctx context.Context, parent GFID, name string) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpUnlink, GFID: parent, Name: name}).Errno
}

func (x Funnel) Rmdir(ctx context.Context, parent GFID, name string) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpRmdir, GFID: parent, Name: name}).Errno
}

func (x Funnel) Rename(ctx context.Context, oldParent GFID, oldName string, newParent GFID, newName string, flags uint32) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpRename, GFID: oldParent, Name: oldName, GFID2: newParent, Name2: newName, Flags: flags}).Errno
}

func (x Funnel) Create(ctx context.Context, parent GFID, name string, gfid GFID, flags, mode uint32) (Fd, Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpCreate, GFID: parent, Name: name, GFID2: gfid, Flags: flags, Mode: mode})
	return r.Fd, r.Attr, r.Errno
}

func (x Funnel) Open(ctx context.Context, ino GFID, flags uint32) (Fd, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpOpen, GFID: ino, Flags: flags})
	return r.Fd, r.Errno
}

func (x Funnel) Read(ctx context.Context, fd Fd, dst []byte, off int64) (int, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpRead, Fd: fd, Off: off, Len: int64(len(dst)), Data: dst})
	n := copy(dst, r.Data) // no-op when the handler read into dst
	return n, r.Errno
}

func (x Funnel) Write(ctx context.Context, fd Fd, data []byte, off int64) (int, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpWrite, Fd: fd, Off: off, Data: data})
	return int(r.N), r.Errno
}

func (x Funnel) Truncate(ctx context.Context, ino GFID, size uint64) (Attr, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpTruncate, GFID: ino, Len: int64(size)})
	return r.Attr, r.Errno
}

func (x Funnel) Fallocate(ctx context.Context, fd Fd, mode uint32, off, length int64) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpFallocate, Fd: fd, Flags: mode, Off: off, Len: length}).Errno
}

func (x Funnel) Lseek(ctx context.Context, fd Fd, off int64, whence uint32) (int64, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpLseek, Fd: fd, Off: off, Flags: whence})
	return r.N, r.Errno
}

func (x Funnel) Flush(ctx context.Context, fd Fd) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpFlush, Fd: fd}).Errno
}

func (x Funnel) Fsync(ctx context.Context, fd Fd, datasync bool) syscall.Errno {
	var fl uint32
	if datasync {
		fl = 1
	}
	return x.call(ctx, &Fop{Op: OpFsync, Fd: fd, Flags: fl}).Errno
}

func (x Funnel) Release(ctx context.Context, fd Fd) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpRelease, Fd: fd}).Errno
}

func (x Funnel) Opendir(ctx context.Context, ino GFID) (Fd, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpOpendir, GFID: ino})
	return r.Fd, r.Errno
}

func (x Funnel) Readdir(ctx context.Context, fd Fd, off uint64, max int) ([]Dirent, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpReaddir, Fd: fd, Off: int64(off), Len: int64(max)})
	return r.Dirents, r.Errno
}

func (x Funnel) Releasedir(ctx context.Context, fd Fd) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpReleasedir, Fd: fd}).Errno
}

func (x Funnel) Statfs(ctx context.Context, ino GFID) (Statfs, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpStatfs, GFID: ino})
	return r.Statfs, r.Errno
}

func (x Funnel) Getxattr(ctx context.Context, ino GFID, name string) ([]byte, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpGetxattr, GFID: ino, Name: name})
	return r.Data, r.Errno
}

func (x Funnel) Setxattr(ctx context.Context, ino GFID, name string, value []byte, flags uint32) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpSetxattr, GFID: ino, Name: name, Data: value, Flags: flags}).Errno
}

func (x Funnel) Listxattr(ctx context.Context, ino GFID) ([]string, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpListxattr, GFID: ino})
	return r.Names, r.Errno
}

func (x Funnel) Removexattr(ctx context.Context, ino GFID, name string) syscall.Errno {
	return x.call(ctx, &Fop{Op: OpRemovexattr, GFID: ino, Name: name}).Errno
}

func (x Funnel) Ipc(ctx context.Context, op IpcOp, in Xdata) (Xdata, syscall.Errno) {
	r := x.call(ctx, &Fop{Op: OpIpc, Name: string(op), Xdata: in})
	return r.Xdata, r.Errno
}

func (x Funnel) call(ctx context.Context, f *Fop) *Result {
	if x.H == nil {
		return &Result{Errno: syscall.ENOSYS}
	}
	return x.H(ctx, f)
}
