// Package volume keeps gluon's volume definitions and brick liveness in
// etcd, as GlusterD 2.0 did: one JSON record per volume, and one key per
// running brick attached to that brick's lease, so a dead brick drops out
// on its own.
//
// Keys, all under Prefix:
//
//	/gluon/volumes/<name>          JSON Volume, options included
//	/gluon/volumes/<name>/...      the volume's own keys (its DHT2 layout)
//	/gluon/bricks/<name>/<index>   JSON registration of a running brick (leased)
//	/gluon/rebalance/<name>        JSON Rebalance: a rebalance or remove-brick
//	/gluon/rebalance-worker/<name> host:pid of the process running it (leased)
//
// (Replica sets' elections live beside them, under /gluon/jbr/; see
// package election.)
package volume

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Volume states.
const (
	StateCreated = "created"
	StateStarted = "started"
	StateStopped = "stopped"
)

// MaxNameLen bounds a volume name.
const MaxNameLen = 64

// ErrNotFound is returned (wrapped) for a volume that does not exist.
var ErrNotFound = errors.New("does not exist")

// Brick is one export directory, written HOST:PATH.
type Brick struct {
	Host string `json:"host"`
	Path string `json:"path"`
}

func (b Brick) String() string {
	if strings.Contains(b.Host, ":") {
		return "[" + b.Host + "]:" + b.Path
	}
	return b.Host + ":" + b.Path
}

// ParseBrick parses HOST:PATH. PATH must be absolute and is cleaned; an
// IPv6 host is written in brackets, [::1]:/bricks/b0.
func ParseBrick(s string) (Brick, error) {
	var host, path string
	if rest, ok := strings.CutPrefix(s, "["); ok {
		h, p, ok := strings.Cut(rest, "]:")
		if !ok {
			return Brick{}, fmt.Errorf("brick %q: want [IPV6]:PATH", s)
		}
		host, path = h, p
	} else {
		h, p, ok := strings.Cut(s, ":")
		if !ok {
			return Brick{}, fmt.Errorf("brick %q: want HOST:PATH", s)
		}
		host, path = h, p
	}
	b := Brick{Host: host, Path: path}
	if err := b.validate(); err != nil {
		return Brick{}, err
	}
	b.Path = filepath.Clean(b.Path)
	return b, nil
}

func (b Brick) validate() error {
	switch {
	case b.Host == "":
		return fmt.Errorf("brick %q: empty host", b)
	case strings.ContainsFunc(b.Host, func(r rune) bool {
		return unicode.IsSpace(r) || r == '/' || r == '[' || r == ']' || r == '"' || r == '#' || !unicode.IsPrint(r)
	}):
		return fmt.Errorf("brick %q: bad host %q", b, b.Host)
	case !filepath.IsAbs(b.Path):
		return fmt.Errorf("brick %q: path %q is not absolute", b, b.Path)
	case strings.ContainsFunc(b.Path, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '#' || !unicode.IsPrint(r) }):
		// The path names the brick in volfiles, where these split words.
		return fmt.Errorf("brick %q: path has spaces, quotes, '#' or control characters", b)
	case filepath.Clean(b.Path) == "/":
		return fmt.Errorf("brick %q: the root directory cannot be a brick", b)
	}
	return nil
}

// Volume is a volume definition. Bricks are grouped into replica sets of
// Replica consecutive bricks.
type Volume struct {
	Name    string            `json:"name"`
	ID      string            `json:"id"`
	Replica int               `json:"replica"`
	Bricks  []Brick           `json:"bricks"`
	State   string            `json:"state"`
	Options map[string]string `json:"options,omitempty"`
	Created time.Time         `json:"created"`
}

// ValidName reports whether name is a legal volume name: 1 to MaxNameLen
// characters from [a-zA-Z0-9_-].
func ValidName(name string) error {
	if name == "" {
		return errors.New("empty volume name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("volume name %.20q...: longer than %d characters", name, MaxNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("volume name %q: only letters, digits, '_' and '-' are allowed", name)
		}
	}
	return nil
}

// Validate checks the definition: name, replica count, bricks (at least
// one, a multiple of Replica, no brick listed twice or nested inside
// another on the same host), state, and options (known keys, valid
// values).
func (v *Volume) Validate() error {
	if err := ValidName(v.Name); err != nil {
		return err
	}
	if v.Replica < 1 {
		return fmt.Errorf("volume %s: replica count %d, want at least 1", v.Name, v.Replica)
	}
	if len(v.Bricks) == 0 {
		return fmt.Errorf("volume %s: no bricks", v.Name)
	}
	if len(v.Bricks)%v.Replica != 0 {
		return fmt.Errorf("volume %s: %d bricks is not a multiple of replica count %d", v.Name, len(v.Bricks), v.Replica)
	}
	for i, b := range v.Bricks {
		if err := b.validate(); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		for _, o := range v.Bricks[:i] {
			if o.Host != b.Host {
				continue
			}
			if nested(o.Path, b.Path) || nested(b.Path, o.Path) {
				if filepath.Clean(o.Path) == filepath.Clean(b.Path) {
					return fmt.Errorf("volume %s: brick %s listed twice", v.Name, b)
				}
				return fmt.Errorf("volume %s: bricks %s and %s overlap", v.Name, o, b)
			}
		}
	}
	switch v.State {
	case StateCreated, StateStarted, StateStopped:
	default:
		return fmt.Errorf("volume %s: bad state %q", v.Name, v.State)
	}
	for _, k := range slices.Sorted(maps.Keys(v.Options)) {
		if err := CheckOption(v, k, v.Options[k]); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
	}
	// A failed leader's followers must be free of their promises to it
	// by the time its successor is elected.
	if d, ttl := v.Duration(OptLeaseDuration), v.Duration(OptLeaseTTL); d >= ttl {
		return fmt.Errorf("volume %s: %s %v must be below %s %v", v.Name, OptLeaseDuration, d, OptLeaseTTL, ttl)
	}
	return nil
}

// nested reports whether dir is p or an ancestor of p.
func nested(dir, p string) bool {
	dir, p = filepath.Clean(dir), filepath.Clean(p)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func validOption(k, v string) error {
	if k == "" {
		return errors.New("empty option name")
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("option name %q: only letters, digits, '.', '_' and '-' are allowed", k)
		}
	}
	if strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return fmt.Errorf("option %s: value has control characters", k)
	}
	return nil
}

// Sets returns the number of replica sets.
func (v *Volume) Sets() int { return len(v.Bricks) / v.Replica }
