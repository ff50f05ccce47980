// Package volfile reads, writes, generates and builds translator graphs in
// GlusterFS volfile syntax:
//
//	volume NAME
//	    type CATEGORY/TRANSLATOR
//	    option KEY VALUE
//	    subvolumes CHILD1 CHILD2 ...
//	end-volume
//
// One statement per line; '#' starts a comment. A value with spaces, '#',
// '"' or '\' is written in double quotes, with \" and \\ escapes. Every
// child is defined before the volume that uses it, every volume but the
// last is used, and the last is the graph's top.
package volfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Graph is a translator graph in definition order: children first, the
// top last.
type Graph struct {
	Nodes []*Node
}

// Node is one "volume" section.
type Node struct {
	Name       string
	Type       string   // CATEGORY/TRANSLATOR, e.g. storage/posix
	Options    []Option // in file order; keys are unique
	Subvolumes []string // children, by name
	Line       int      // line of the "volume" statement; 0 when generated
}

// Option is one "option KEY VALUE" statement.
type Option struct {
	Key, Value string
}

// Option returns the value of key.
func (n *Node) Option(key string) (string, bool) {
	for _, o := range n.Options {
		if o.Key == key {
			return o.Value, true
		}
	}
	return "", false
}

// OptionMap returns the options as a map.
func (n *Node) OptionMap() map[string]string {
	m := make(map[string]string, len(n.Options))
	for _, o := range n.Options {
		m[o.Key] = o.Value
	}
	return m
}

// Top returns the graph's top (its last node), or nil for an empty graph.
func (g *Graph) Top() *Node {
	if len(g.Nodes) == 0 {
		return nil
	}
	return g.Nodes[len(g.Nodes)-1]
}

// Node returns the node called name, or nil.
func (g *Graph) Node(name string) *Node {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Subgraph returns the graph below and including the node called name,
// which becomes its top. Nodes are shared with g.
func (g *Graph) Subgraph(name string) (*Graph, error) {
	if g.Node(name) == nil {
		return nil, fmt.Errorf("volfile: no volume %q", name)
	}
	need := map[string]bool{name: true}
	var keep []*Node
	// Walking backwards visits every parent before its children.
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		if !need[n.Name] {
			continue
		}
		keep = append(keep, n)
		for _, c := range n.Subvolumes {
			need[c] = true
		}
	}
	sub := &Graph{Nodes: make([]*Node, len(keep))}
	for i, n := range keep {
		sub.Nodes[len(keep)-1-i] = n
	}
	return sub, nil
}

// Parse reads a volfile. Errors name the line.
func Parse(r io.Reader) (*Graph, error) {
	g := &Graph{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	var cur *Node // the open "volume" section
	var hasSub bool
	line := 0
	for sc.Scan() {
		line++
		toks, err := tokenize(strings.TrimSuffix(sc.Text(), "\r"))
		if err != nil {
			return nil, fmt.Errorf("volfile: line %d: %v", line, err)
		}
		if len(toks) == 0 {
			continue
		}
		fail := func(format string, args ...any) (*Graph, error) {
			return nil, fmt.Errorf("volfile: line %d: "+format, append([]any{line}, args...)...)
		}
		kw, args := toks[0], toks[1:]
		if kw.quoted {
			return fail("unexpected quoted string %q", kw.s)
		}
		if cur == nil {
			switch {
			case kw.s != "volume":
				return fail("want \"volume NAME\", got %q", kw.s)
			case len(args) != 1 || args[0].quoted:
				return fail("want \"volume NAME\"")
			}
			cur, hasSub = &Node{Name: args[0].s, Line: line}, false
			continue
		}
		switch kw.s {
		case "type":
			if cur.Type != "" {
				return fail("volume %q: second type", cur.Name)
			}
			if len(args) != 1 || args[0].quoted {
				return fail("want \"type CATEGORY/TRANSLATOR\"")
			}
			cur.Type = args[0].s
		case "option":
			if len(args) != 2 || args[0].quoted {
				return fail("want \"option KEY VALUE\" (quote a value with spaces)")
			}
			if _, dup := cur.Option(args[0].s); dup {
				return fail("volume %q: option %q given twice", cur.Name, args[0].s)
			}
			cur.Options = append(cur.Options, Option{Key: args[0].s, Value: args[1].s})
		case "subvolumes":
			if hasSub {
				return fail("volume %q: second subvolumes statement", cur.Name)
			}
			if len(args) == 0 {
				return fail("want \"subvolumes NAME...\"")
			}
			for _, a := range args {
				if a.quoted {
					return fail("unexpected quoted string %q", a.s)
				}
				cur.Subvolumes = append(cur.Subvolumes, a.s)
			}
			hasSub = true
		case "end-volume":
			if len(args) != 0 {
				return fail("unexpected %q after end-volume", args[0].s)
			}
			g.Nodes = append(g.Nodes, cur)
			cur = nil
		case "volume":
			return fail("volume %q inside volume %q (line %d lacks end-volume)", args0(args), cur.Name, cur.Line)
		default:
			return fail("unknown statement %q in volume %q", kw.s, cur.Name)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("volfile: line %d: too long", line+1)
		}
		return nil, fmt.Errorf("volfile: %w", err)
	}
	if cur != nil {
		return nil, fmt.Errorf("volfile: line %d: volume %q has no end-volume", cur.Line, cur.Name)
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

func args0(args []token) string {
	if len(args) == 0 {
		return ""
	}
	return args[0].s
}

type token struct {
	s      string
	quoted bool
}

// tokenize splits a line into words and double-quoted strings, dropping a
// trailing comment.
func tokenize(line string) ([]token, error) {
	if !utf8.ValidString(line) {
		return nil, errors.New("not valid UTF-8")
	}
	var toks []token
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			i++
			continue
		case c == '#':
			return toks, nil
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++
					if j == len(line) || line[j] != '"' && line[j] != '\\' {
						return nil, errors.New(`bad escape in quoted string (only \" and \\)`)
					}
				}
				b.WriteByte(line[j])
			}
			if j == len(line) {
				return nil, errors.New("unterminated quoted string")
			}
			j++
			if j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '#' {
				return nil, errors.New("quoted string runs into the next word")
			}
			if err := printable(b.String()); err != nil {
				return nil, err
			}
			toks = append(toks, token{s: b.String(), quoted: true})
			i = j
		default:
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '#' {
				if line[j] == '"' {
					return nil, errors.New("quote inside a word")
				}
				j++
			}
			if err := printable(line[i:j]); err != nil {
				return nil, err
			}
			toks = append(toks, token{s: line[i:j]})
			i = j
		}
	}
	return toks, nil
}

func printable(s string) error {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Errorf("unprintable character %U", r)
		}
	}
	return nil
}

// Validate checks what Parse guarantees, for graphs built in code: legal
// unique names and types, unique option keys, printable values, children
// defined before use, and every node but the top used.
func (g *Graph) Validate() error {
	if len(g.Nodes) == 0 {
		return errors.New("volfile: no volumes")
	}
	defined := make(map[string]*Node, len(g.Nodes))
	used := make(map[string]bool, len(g.Nodes))
	for _, n := range g.Nodes {
		at := func(format string, args ...any) error {
			msg := fmt.Sprintf("volume %q: "+format, append([]any{n.Name}, args...)...)
			if n.Line > 0 {
				return fmt.Errorf("volfile: line %d: %s", n.Line, msg)
			}
			return errors.New("volfile: " + msg)
		}
		if err := word(n.Name); err != nil {
			return at("bad name: %v", err)
		}
		if prev, dup := defined[n.Name]; dup {
			return at("defined twice (first at line %d)", prev.Line)
		}
		if n.Type == "" {
			return at("no type")
		}
		if err := validType(n.Type); err != nil {
			return at("%v", err)
		}
		keys := make(map[string]bool, len(n.Options))
		for _, o := range n.Options {
			if err := word(o.Key); err != nil {
				return at("bad option key %q: %v", o.Key, err)
			}
			if keys[o.Key] {
				return at("option %q given twice", o.Key)
			}
			keys[o.Key] = true
			if !utf8.ValidString(o.Value) {
				return at("option %q: value is not valid UTF-8", o.Key)
			}
			if err := printable(o.Value); err != nil {
				return at("option %q: %v", o.Key, err)
			}
		}
		seen := make(map[string]bool, len(n.Subvolumes))
		for _, c := range n.Subvolumes {
			if _, ok := defined[c]; !ok {
				if c == n.Name {
					return at("lists itself as a subvolume")
				}
				return at("subvolume %q is not defined before it", c)
			}
			if seen[c] {
				return at("subvolume %q listed twice", c)
			}
			seen[c] = true
			used[c] = true
		}
		defined[n.Name] = n
	}
	top := g.Top()
	for _, n := range g.Nodes[:len(g.Nodes)-1] {
		if !used[n.Name] {
			err := fmt.Sprintf("volume %q is not a subvolume of any volume (the top is %q, the last one)", n.Name, top.Name)
			if n.Line > 0 {
				return fmt.Errorf("volfile: line %d: %s", n.Line, err)
			}
			return errors.New("volfile: " + err)
		}
	}
	return nil
}

// word checks a name or key: non-empty, printable, no spaces, quotes or '#'.
func word(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r == '"' || r == '#' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

func validType(t string) error {
	cat, name, ok := strings.Cut(t, "/")
	bad := func(s string) bool {
		return s == "" || strings.ContainsFunc(s, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		})
	}
	if !ok || bad(cat) || bad(name) {
		return fmt.Errorf("type %q: want CATEGORY/TRANSLATOR in lower case, e.g. storage/posix", t)
	}
	return nil
}

// String formats g as a volfile that Parse reads back to the same graph.
func (g *Graph) String() string {
	var b strings.Builder
	for i, n := range g.Nodes {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "volume %s\n", n.Name)
		fmt.Fprintf(&b, "    type %s\n", n.Type)
		for _, o := range n.Options {
			fmt.Fprintf(&b, "    option %s %s\n", o.Key, quote(o.Value))
		}
		if len(n.Subvolumes) > 0 {
			fmt.Fprintf(&b, "    subvolumes %s\n", strings.Join(n.Subvolumes, " "))
		}
		b.WriteString("end-volume\n")
	}
	return b.String()
}

func quote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\"#\\") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}
