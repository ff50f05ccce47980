package xl

import "context"

// Call is the per-request metadata that rides in the context: who is
// asking, and request-only key/values. It is immutable once attached.
type Call struct {
	Uid, Gid uint32
	Groups   []uint32
	Pid      uint32
	Client   [16]byte // the mount that owns fds; also the dedup key's prefix
	Seq      uint64   // per-client request sequence, for retries
	Xdata    Xdata
}

type callKey struct{}

var rootCall = &Call{}

// WithCall attaches c to ctx.
func WithCall(ctx context.Context, c *Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// CallFrom returns the Call in ctx, or a root caller's Call; never nil.
func CallFrom(ctx context.Context) *Call {
	if c, ok := ctx.Value(callKey{}).(*Call); ok && c != nil {
		return c
	}
	return rootCall
}

// InGroup reports whether gid is the caller's primary or a supplementary group.
func (c *Call) InGroup(gid uint32) bool {
	if c.Gid == gid {
		return true
	}
	for _, g := range c.Groups {
		if g == gid {
			return true
		}
	}
	return false
}
