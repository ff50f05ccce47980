package dht2

import (
	"context"
	"errors"
)

// MigrateProgress reports a migration's progress.
type MigrateProgress struct {
	Token uint16
	Dirs  int   // directories copied
	Files int   // files copied
	Bytes int64 // file data copied
	Done  bool
}

// MigrateToken moves every directory and file homed at token to set to.
func (d *DHT2) MigrateToken(ctx context.Context, token uint16, to int, progress func(MigrateProgress)) error {
	return errors.New("dht2: MigrateToken not implemented yet")
}
