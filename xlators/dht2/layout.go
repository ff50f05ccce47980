package dht2

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// Tokens is the size of the token space: the high 16 bits of a GFID.
const Tokens = 1 << 16

// MaxSets bounds the number of sets a layout may name.
const MaxSets = 4096

// TokenOf is the token a GFID carries in its two high bytes. The root's
// token is 0.
func TokenOf(g xl.GFID) uint16 { return binary.BigEndian.Uint16(g[:2]) }

// NewGFID returns a random GFID carrying token. The version and variant
// bits stay those of a random (version 4) UUID.
func NewGFID(token uint16) xl.GFID {
	var g xl.GFID
	if _, err := rand.Read(g[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	binary.BigEndian.PutUint16(g[:2], token)
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// Layout maps every token to the index of the set (subvolume) that is its
// home. It is immutable once published: changes make a new Layout with a
// higher Version.
type Layout struct {
	Version uint64
	Sets    int
	Owner   []uint16 // len Tokens: token -> set index
}

// Even spreads the tokens over sets in contiguous ranges whose sizes
// differ by at most one.
func Even(sets int) *Layout {
	if sets < 1 || sets > MaxSets {
		panic(fmt.Sprintf("dht2: Even(%d): sets must be 1..%d", sets, MaxSets))
	}
	l := &Layout{Version: 1, Sets: sets, Owner: make([]uint16, Tokens)}
	for t := range l.Owner {
		l.Owner[t] = uint16(t * sets / Tokens)
	}
	return l
}

// Counts is how many tokens each set owns.
func (l *Layout) Counts() []int {
	c := make([]int, l.Sets)
	for _, s := range l.Owner {
		c[s]++
	}
	return c
}

// Set is the home of token t.
func (l *Layout) Set(t uint16) int { return int(l.Owner[t]) }

// Clone copies l with the same version.
func (l *Layout) Clone() *Layout {
	return &Layout{Version: l.Version, Sets: l.Sets, Owner: slices.Clone(l.Owner)}
}

// Rebalanced is the layout that spreads the tokens evenly over sets sets
// (sets >= l.Sets: add-brick) moving as few tokens as possible, with the
// version bumped. It is the migration target; Moves lists what differs.
func (l *Layout) Rebalanced(sets int) *Layout {
	return l.spread(sets, -1)
}

// Drained is the layout with no token on set, the others spread evenly
// over the remaining sets with as few moves as possible (remove-brick,
// first step). Once the data has moved, Without renumbers the sets.
func (l *Layout) Drained(set int) *Layout {
	return l.spread(l.Sets, set)
}

// Without removes the empty set from the numbering: sets above it shift
// down by one (remove-brick, second step). It fails while set owns tokens.
func (l *Layout) Without(set int) (*Layout, error) {
	if set < 0 || set >= l.Sets || l.Sets == 1 {
		return nil, fmt.Errorf("dht2: cannot remove set %d of %d", set, l.Sets)
	}
	n := &Layout{Version: l.Version + 1, Sets: l.Sets - 1, Owner: make([]uint16, Tokens)}
	for t, s := range l.Owner {
		switch {
		case int(s) == set:
			return nil, fmt.Errorf("dht2: set %d still owns token %d", set, t)
		case int(s) > set:
			n.Owner[t] = s - 1
		default:
			n.Owner[t] = s
		}
	}
	return n, nil
}

// spread moves tokens off over-full sets (and all of skip's) onto
// under-full ones.
func (l *Layout) spread(sets, skip int) *Layout {
	if sets < l.Sets || sets > MaxSets {
		panic(fmt.Sprintf("dht2: cannot spread %d sets over %d", l.Sets, sets))
	}
	live := sets
	if skip >= 0 {
		live--
	}
	if live < 1 {
		panic("dht2: no set left to hold the tokens")
	}
	want := make([]int, sets)
	k := 0
	for s := range want {
		if s == skip {
			continue
		}
		want[s] = Tokens / live
		if k < Tokens%live {
			want[s]++
		}
		k++
	}
	n := &Layout{Version: l.Version + 1, Sets: sets, Owner: slices.Clone(l.Owner)}
	have := make([]int, sets)
	for _, s := range n.Owner {
		have[s]++
	}
	var free []int // tokens to place
	for t := len(n.Owner) - 1; t >= 0; t-- {
		s := n.Owner[t]
		if have[s] > want[s] {
			have[s]--
			free = append(free, t)
		}
	}
	s := 0
	for _, t := range free {
		for have[s] >= want[s] {
			s++
		}
		n.Owner[t] = uint16(s)
		have[s]++
	}
	return n
}

// Moves lists the tokens whose home differs between l and next.
func (l *Layout) Moves(next *Layout) []uint16 {
	var m []uint16
	for t := range l.Owner {
		if l.Owner[t] != next.Owner[t] {
			m = append(m, uint16(t))
		}
	}
	return m
}

// Validate checks that l is well formed.
func (l *Layout) Validate() error {
	if l.Sets < 1 || l.Sets > MaxSets {
		return fmt.Errorf("dht2: layout names %d sets, want 1..%d", l.Sets, MaxSets)
	}
	if len(l.Owner) != Tokens {
		return fmt.Errorf("dht2: layout maps %d tokens, want %d", len(l.Owner), Tokens)
	}
	for t, s := range l.Owner {
		if int(s) >= l.Sets {
			return fmt.Errorf("dht2: token %d on set %d of %d", t, s, l.Sets)
		}
	}
	return nil
}

const layoutMagic = "DHT2L1"

// MarshalBinary encodes l as runs of tokens with the same home.
func (l *Layout) MarshalBinary() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	b := append([]byte(layoutMagic), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint64(b[len(layoutMagic):], l.Version)
	binary.BigEndian.PutUint16(b[len(layoutMagic)+8:], uint16(l.Sets))
	for t := 0; t < Tokens; {
		r := t
		for r < Tokens && l.Owner[r] == l.Owner[t] {
			r++
		}
		b = binary.BigEndian.AppendUint16(b, l.Owner[t])
		b = binary.BigEndian.AppendUint32(b, uint32(r-t))
		t = r
	}
	return b, nil
}

var errLayoutFormat = errors.New("dht2: malformed layout")

// UnmarshalBinary decodes what MarshalBinary encoded and validates it.
func (l *Layout) UnmarshalBinary(b []byte) error {
	h := len(layoutMagic) + 10
	if len(b) < h || string(b[:len(layoutMagic)]) != layoutMagic || (len(b)-h)%6 != 0 {
		return errLayoutFormat
	}
	n := Layout{
		Version: binary.BigEndian.Uint64(b[len(layoutMagic):]),
		Sets:    int(binary.BigEndian.Uint16(b[len(layoutMagic)+8:])),
		Owner:   make([]uint16, 0, Tokens),
	}
	for p := h; p < len(b); p += 6 {
		s := binary.BigEndian.Uint16(b[p:])
		c := int(binary.BigEndian.Uint32(b[p+2:]))
		if c > Tokens-len(n.Owner) {
			return errLayoutFormat
		}
		for range c {
			n.Owner = append(n.Owner, s)
		}
	}
	if err := n.Validate(); err != nil {
		return err
	}
	*l = n
	return nil
}
