package dht2

import (
	"context"
	"time"
)

// ScrubStats counts what one Scrub found and removed.
type ScrubStats struct {
	Dirs          int // directories walked
	Entries       int // names examined
	Orphans       int // anchor names without a stub, removed
	DanglingStubs int // stubs without an anchor name, removed
	Skipped       int // unmatched but younger than the grace period
	Errors        int // removals that failed (retried next time)
}

type scrubber struct{}

func (s *scrubber) init(opts Options) error { return nil }

// Scrub walks every set once and removes the leftovers of interrupted
// two-step ops.
func (d *DHT2) Scrub(ctx context.Context) (ScrubStats, error) {
	return ScrubStats{}, nil
}

func (d *DHT2) scrubLoop(ctx context.Context, every time.Duration) {
	defer d.wg.Done()
}
