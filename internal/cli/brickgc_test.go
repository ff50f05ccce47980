package cli

import (
	"runtime/debug"
	"testing"
)

// The brick daemon collects at GOGC=400, unless the user set GOGC.
func TestBrickGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	brickGC()
	if got := debug.SetGCPercent(100); got != brickGOGC {
		t.Errorf("without GOGC: GC percent %d, want %d", got, brickGOGC)
	}
	t.Setenv("GOGC", "100")
	brickGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100: GC percent %d, want the user's 100", got)
	}
}
