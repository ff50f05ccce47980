package dht2

import (
	"context"
	"sync/atomic"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Request ids. A replicated set deduplicates mutating requests by their
// xl.Call's (Client, Seq): jbr-server answers a second request with the
// id of a committed one with the first one's reply, without applying it,
// because it takes it for a retry. One request from above often becomes
// several mutating requests on one set (a mkdir's anchor directory and
// its stub when both live on the parent's home, a remove's probe and
// stub, a create retried after a dangling stub was removed): sent under
// the caller's Call, every one after the first would be answered as a
// retry and never applied. So each mutating request DHT2 sends gets a
// Seq of its own; the set's own retries (jbr-client resends with the
// same ctx) keep it, so a retried request is still recognised.

// ownSeq marks the request ids DHT2 hands out, keeping them apart from
// the per-mount sequence (fuse counts up from 1) under the same Client.
const ownSeq = 1 << 63

// seqs numbers DHT2's requests in this process: every DHT2 of a mount
// (a volume graph rebuilt after add-brick runs two for a while) shares
// the mount's Client, so one counter serves them all.
var seqs atomic.Uint64

// reqIDs gives each mutating request sent to next a request id of its
// own. A Call without a Seq (DHT2's own housekeeping, internal callers)
// is left as it is: the set gives it one.
func reqIDs(next xl.Xlator) xl.Xlator {
	return xl.Funnel{H: func(ctx context.Context, f *xl.Fop) *xl.Result {
		if f.Mutates() {
			if c := xl.CallFrom(ctx); c.Seq != 0 {
				own := *c
				own.Seq = ownSeq | seqs.Add(1)
				ctx = xl.WithCall(ctx, &own)
			}
		}
		return xl.Dispatch(ctx, next, f)
	}}
}
