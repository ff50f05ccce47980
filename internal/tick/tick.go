// Package tick runs periodic work until its context ends.
package tick

import (
	"context"
	"time"
)

// Every calls fn every d, the first time after d, until ctx ends or fn
// returns false; it never calls fn once ctx is done, even if a tick is
// pending. It returns then, with its ticker stopped.
func Every(ctx context.Context, d time.Duration, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil || !fn() {
			return
		}
	}
}
