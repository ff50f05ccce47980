package recon

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gluon-fs/gluon/volume"
)

// ScrubStats counts what a scrub found and repaired, over all its rounds.
type ScrubStats struct {
	Rounds   int   `json:"rounds"`
	Found    int   `json:"found"`
	Repaired Moved `json:"repaired"`
	// Left counts the differences still there at the end of the last
	// round (a replica offline, a repair that failed).
	Left int `json:"left"`
}

// ScrubOptions tune Scrub.
type ScrubOptions struct {
	Logger *slog.Logger // default slog.Default()
	// Once runs one round and returns.
	Once bool
	// Round, if set, is told about each round's reports.
	Round func(sets []SetReport, st ScrubStats)
}

// Scrub heals silent divergence in a running volume: every
// volume.OptScrubInterval it compares each replica with its set's leader
// by checksum, data and metadata per GFID, reading each brick at most
// volume.OptScrubRate bytes per second, and repairs what differs from the
// leader (Run), logging each finding. The options are read again each
// round. It returns when ctx ends (with the counts so far and ctx's
// error) or after one round with Once.
func Scrub(ctx context.Context, cli *clientv3.Client, vol string, opts ScrubOptions) (ScrubStats, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	store := volume.NewStore(cli)
	var st ScrubStats
	for {
		v, err := store.Get(ctx, vol)
		if err != nil {
			return st, err
		}
		rate, interval := ScrubSettings(v)
		start := time.Now()
		sets, err := Run(ctx, cli, vol, VolumeOptions{Logger: log, Set: -1, BytesPerSec: rate})
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			log.Warn("recon scrub: round failed", "volume", vol, "err", err)
		}
		st.Rounds++
		st.Left = 0
		for _, s := range sets {
			if s.Error != "" {
				log.Warn("recon scrub: replica set not scrubbed", "volume", vol, "set", s.Set, "err", s.Error)
				st.Left++
			}
			for _, b := range s.Bricks {
				if b.Moved != nil {
					st.Found += b.Found
					st.Repaired = st.Repaired.Add(*b.Moved)
				}
				st.Left += len(b.Diffs)
				if b.Error != "" {
					st.Left++
				}
			}
		}
		log.Info("recon scrub: round done", "volume", vol, "took", time.Since(start).Round(time.Millisecond),
			"found", st.Found, "repaired", st.Repaired, "left", st.Left)
		if opts.Round != nil {
			opts.Round(sets, st)
		}
		if opts.Once {
			return st, nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return st, ctx.Err()
		case <-t.C:
		}
	}
}

// ScrubSettings reads a volume's scrub rate (bytes per second, 0 for
// unbounded) and interval, as Scrub and the bricks' own scrubs use them.
func ScrubSettings(v *volume.Volume) (rate int64, interval time.Duration) {
	interval = v.Duration(volume.OptScrubInterval)
	if interval <= 0 {
		interval = time.Hour
	}
	r, err := strconv.ParseInt(v.Option(volume.OptScrubRate), 10, 64)
	if err != nil || r < 0 {
		r = 0 // CheckOption refuses this; read unbounded rather than not at all
	}
	return r, interval
}
