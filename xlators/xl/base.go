package xl

// Base forwards every op to its one child (GlusterFS's default_* fops).
// Embed it and override the ops a translator cares about:
//
//	type readOnly struct{ xl.Base }
//	func (readOnly) Write(context.Context, xl.Fd, []byte, int64) (int, syscall.Errno) { return 0, syscall.EROFS }
//
// A Base with a nil child panics on first use; constructors check.
type Base struct{ Xlator }

// Unsupported answers ENOSYS to every op. Translators with several
// children (replication, distribution) embed it so that a forgotten op
// fails loudly instead of reaching one child by accident.
type Unsupported struct{ Funnel }

var (
	_ Xlator = Base{}
	_ Xlator = Unsupported{}
)
