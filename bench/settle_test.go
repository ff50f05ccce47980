package bench

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestSettleLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := settle(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Fatalf("settle left %v behind (err %v)", ents, err)
	}
}

func TestSettleStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := settle(ctx, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Fatalf("settle with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestSettleNeedsItsDirectory(t *testing.T) {
	if _, err := settle(context.Background(), "/nonexistent/gluon-bench"); err == nil {
		t.Fatal("settle in a missing directory succeeded")
	}
}
