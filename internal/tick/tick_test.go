package tick

import (
	"context"
	"testing"
	"time"
)

func TestEveryStopsWhenFnSays(t *testing.T) {
	n := 0
	Every(context.Background(), time.Millisecond, func() bool {
		n++
		return n < 3
	})
	if n != 3 {
		t.Fatalf("fn called %d times, want 3", n)
	}
}

func TestEveryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	Every(ctx, time.Millisecond, func() bool {
		n++
		if n == 2 {
			cancel()
		}
		return true
	})
	if n != 2 {
		t.Fatalf("fn called %d times after cancel, want 2", n)
	}
}

func TestEveryCancelledNeverCalls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Every(ctx, time.Hour, func() bool {
		t.Error("fn called on a cancelled context")
		return true
	})
}
