package dht2

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gluon-fs/gluon/internal/etcdtest"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func TestTokenInGFID(t *testing.T) {
	for _, tok := range []uint16{0, 1, 0x1234, 0xffff} {
		g := NewGFID(tok)
		if TokenOf(g) != tok {
			t.Errorf("TokenOf(NewGFID(%#x)) = %#x", tok, TokenOf(g))
		}
		if g[6]>>4 != 4 || g[8]>>6 != 2 {
			t.Errorf("NewGFID(%#x) = %v: not a version 4 UUID", tok, g)
		}
	}
	if TokenOf(xl.RootGFID) != 0 {
		t.Error("the root's token is not 0")
	}
}

func checkEven(t *testing.T, l *Layout, sets int) {
	t.Helper()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	c := l.Counts()
	if len(c) != sets {
		t.Fatalf("%d sets, want %d", len(c), sets)
	}
	for s, n := range c {
		if n < Tokens/sets || n > Tokens/sets+1 {
			t.Errorf("set %d owns %d tokens, want %d or %d", s, n, Tokens/sets, Tokens/sets+1)
		}
	}
}

func TestLayoutEvenRebalancedDrained(t *testing.T) {
	l := Even(3)
	checkEven(t, l, 3)
	r := l.Rebalanced(4)
	checkEven(t, r, 4)
	if r.Version != l.Version+1 {
		t.Errorf("version %d, want %d", r.Version, l.Version+1)
	}
	// Minimal: only what the new set needs moves, and only to it.
	moves := l.Moves(r)
	if len(moves) != r.Counts()[3] {
		t.Errorf("%d tokens moved, the new set owns %d", len(moves), r.Counts()[3])
	}
	for _, tok := range moves {
		if r.Set(tok) != 3 {
			t.Fatalf("token %d moved to set %d, not the new one", tok, r.Set(tok))
		}
	}
	dr := r.Drained(1)
	if dr.Counts()[1] != 0 {
		t.Fatalf("drained set owns %d tokens", dr.Counts()[1])
	}
	for _, tok := range r.Moves(dr) {
		if r.Set(tok) != 1 {
			t.Fatalf("draining set 1 moved token %d of set %d", tok, r.Set(tok))
		}
	}
	if _, err := r.Without(1); err == nil {
		t.Error("Without removed a set that owns tokens")
	}
	w, err := dr.Without(1)
	if err != nil {
		t.Fatal(err)
	}
	checkEven(t, w, 3)
	for tok := range Tokens {
		want := dr.Owner[tok]
		if want > 1 {
			want--
		}
		if w.Owner[tok] != want {
			t.Fatalf("token %d on set %d after Without, want %d", tok, w.Owner[tok], want)
		}
	}
}

func TestLayoutMarshal(t *testing.T) {
	l := Even(3).Rebalanced(5)
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var m Layout
	if err := m.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if m.Version != l.Version || m.Sets != l.Sets || len(l.Moves(&m)) != 0 {
		t.Fatal("round trip changed the layout")
	}
	for _, bad := range [][]byte{nil, []byte("DHT2L1"), b[:len(b)-1], append(b[:len(b):len(b)], b[len(b)-6:]...)} {
		if err := new(Layout).UnmarshalBinary(bad); err == nil {
			t.Errorf("accepted a malformed layout of %d bytes", len(bad))
		}
	}
	bad := l.Clone()
	bad.Owner[7] = 9
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("marshalled a layout naming a set beyond Sets")
	}
}

// TestBalance100k places 100,000 directories with each policy: every set
// gets its third within 5%. Files take their directory's token, so this
// is also the spread of files over directories of equal size.
func TestBalance100k(t *testing.T) {
	l := Even(3)
	for _, p := range []Policy{new(Spread), RandomToken{}} {
		n := make([]int, 3)
		for range 100000 {
			n[l.Set(p.DirToken(l, xl.RootGFID, "d", xl.NewGFID()))]++
		}
		for s, c := range n {
			if c < 100000/3*95/100 || c > 100000/3*105/100 {
				t.Errorf("%T: set %d got %d of 100000", p, s, c)
			}
		}
	}
}

func TestEtcdStore(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := NewEtcdStore(cli, "v")
	if _, err := s.Load(ctx); !errors.Is(err, ErrNoLayout) {
		t.Fatalf("load of nothing: %v", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w := s.Watch(wctx)
	l := Even(3)
	if err := s.Save(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, l); !errors.Is(err, ErrConflict) {
		t.Errorf("second save of version 1: %v, want ErrConflict", err)
	}
	r := l.Rebalanced(4)
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil || got.Version != r.Version || got.Sets != 4 {
		t.Fatalf("load: %+v, %v", got, err)
	}
	for want := uint64(2); ; {
		select {
		case g := <-w:
			if g.Version == want {
				wcancel()
				for range w { // closed once the watch ends
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("watch did not deliver version 2")
		}
	}
}
