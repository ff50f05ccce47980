package volfile

import (
	"reflect"
	"strings"
	"testing"
)

const sample = `# A hand-written brick graph.
volume v-posix
    type storage/posix
    option directory /bricks/b0   # trailing comment
end-volume

volume /bricks/b0
	type features/access
	subvolumes v-posix
end-volume
volume v-client-0
    type protocol/client
    option remote-host srv1
    option remote-subvolume "/bricks/with \"quote\" and \\ space"
    option ping-timeout 42
    option empty ""
end-volume
volume top
    type debug/io-stats
    subvolumes /bricks/b0 v-client-0
end-volume
`

func TestParse(t *testing.T) {
	g, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := &Graph{Nodes: []*Node{
		{Name: "v-posix", Type: "storage/posix", Options: []Option{{"directory", "/bricks/b0"}}, Line: 2},
		{Name: "/bricks/b0", Type: "features/access", Subvolumes: []string{"v-posix"}, Line: 7},
		{Name: "v-client-0", Type: "protocol/client", Options: []Option{
			{"remote-host", "srv1"},
			{"remote-subvolume", `/bricks/with "quote" and \ space`},
			{"ping-timeout", "42"},
			{"empty", ""},
		}, Line: 11},
		{Name: "top", Type: "debug/io-stats", Subvolumes: []string{"/bricks/b0", "v-client-0"}, Line: 18},
	}}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("Parse:\n got %s\nwant %s", g, want)
	}
	if g.Top().Name != "top" || g.Node("v-client-0") != g.Nodes[2] || g.Node("nope") != nil {
		t.Fatal("Top or Node lookup wrong")
	}
	if v, ok := g.Nodes[2].Option("ping-timeout"); !ok || v != "42" {
		t.Fatalf("Option(ping-timeout) = %q, %v", v, ok)
	}
	if m := g.Nodes[2].OptionMap(); len(m) != 4 || m["empty"] != "" {
		t.Fatalf("OptionMap = %v", m)
	}

	// CRLF line ends read the same.
	crlf, err := Parse(strings.NewReader(strings.ReplaceAll(sample, "\n", "\r\n")))
	if err != nil || !reflect.DeepEqual(crlf, want) {
		t.Fatalf("Parse with CRLF = %s, %v", crlf, err)
	}
}

func TestParseErrors(t *testing.T) {
	const posix = "volume p\n type storage/posix\nend-volume\n"
	cases := []struct{ in, want string }{
		{"", "no volumes"},
		{"# only a comment\n\n", "no volumes"},
		{"type storage/posix\n", `line 1: want "volume NAME", got "type"`},
		{"volume\n", `line 1: want "volume NAME"`},
		{"volume a b\n", `line 1: want "volume NAME"`},
		{`volume "a"` + "\n", `line 1: want "volume NAME"`},
		{"volume a\n type storage/posix\n", `line 1: volume "a" has no end-volume`},
		{"volume a\n type storage/posix\nvolume b\n", `line 3: volume "b" inside volume "a" (line 1 lacks end-volume)`},
		{"volume a\nend-volume\n", `line 1: volume "a": no type`},
		{"volume a\n type posix\nend-volume\n", `line 1: volume "a": type "posix": want CATEGORY/TRANSLATOR`},
		{"volume a\n type Storage/Posix\nend-volume\n", `type "Storage/Posix"`},
		{"volume a\n type storage/posix\n type storage/posix\nend-volume\n", `line 3: volume "a": second type`},
		{"volume a\n type\nend-volume\n", `line 2: want "type CATEGORY/TRANSLATOR"`},
		{"volume a\n type x/y\n option k\nend-volume\n", `line 3: want "option KEY VALUE"`},
		{"volume a\n type x/y\n option k two words\nend-volume\n", `line 3: want "option KEY VALUE" (quote a value with spaces)`},
		{"volume a\n type x/y\n option \"k\" v\nend-volume\n", `line 3: want "option KEY VALUE"`},
		{"volume a\n type x/y\n option k 1\n option k 2\nend-volume\n", `line 4: volume "a": option "k" given twice`},
		{"volume a\n type x/y\n option k \"open\nend-volume\n", "line 3: unterminated quoted string"},
		{"volume a\n type x/y\n option k \"a\"b\nend-volume\n", "line 3: quoted string runs into the next word"},
		{"volume a\n type x/y\n option k a\"b\nend-volume\n", "line 3: quote inside a word"},
		{"volume a\n type x/y\n option k \"\\n\"\nend-volume\n", `line 3: bad escape`},
		{"volume a\n type x/y\n option k \x01\nend-volume\n", "line 3: unprintable character U+0001"},
		{"volume a\n type x/y\n option k \xff\nend-volume\n", "line 3: not valid UTF-8"},
		{"volume a\n type x/y\n subvolumes\nend-volume\n", `line 3: want "subvolumes NAME..."`},
		{"volume a\n type x/y\n subvolumes a\nend-volume\n", `line 1: volume "a": lists itself as a subvolume`},
		{"volume a\n type x/y\n subvolumes b\nend-volume\nvolume b\n type x/y\nend-volume\n", `line 1: volume "a": subvolume "b" is not defined before it`},
		{posix + "volume a\n type x/y\n subvolumes p\n subvolumes p\nend-volume\n", `line 7: volume "a": second subvolumes statement`},
		{posix + "volume a\n type x/y\n subvolumes p p\nend-volume\n", `line 4: volume "a": subvolume "p" listed twice`},
		{posix + "volume a\n type x/y\n subvolumes \"p\"\nend-volume\n", `line 6: unexpected quoted string "p"`},
		{posix + posix, `line 4: volume "p": defined twice (first at line 1)`},
		{posix + "volume a\n type x/y\nend-volume\n", `line 1: volume "p" is not a subvolume of any volume (the top is "a", the last one)`},
		{"volume a\n type x/y\n sub-volumes b\nend-volume\n", `line 3: unknown statement "sub-volumes" in volume "a"`},
		{"volume a\n type x/y\nend-volume junk\n", `line 3: unexpected "junk" after end-volume`},
		{"volume a\n type x/y\n \"type\" x/y\nend-volume\n", `line 3: unexpected quoted string "type"`},
		{"volume a\n type x/y\n option k " + strings.Repeat("v", 1<<20) + "\nend-volume\n", "line 3: too long"},
	}
	for _, c := range cases {
		g, err := Parse(strings.NewReader(c.in))
		if err == nil {
			t.Errorf("Parse(%.60q) = %s, want error %q", c.in, g, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "volfile: ") {
			t.Errorf("Parse(%.60q) error %q, want %q", c.in, err, c.want)
		}
	}
}

// Formatting and parsing again gives the same graph.
func TestRoundTrip(t *testing.T) {
	g, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	text := g.String()
	back, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse(String()) = %v\n%s", err, text)
	}
	if !reflect.DeepEqual(stripLines(back), stripLines(g)) {
		t.Fatalf("round trip changed the graph:\n%s\n---\n%s", g, back)
	}
	if back.String() != text {
		t.Fatalf("String is not stable:\n%s\n---\n%s", text, back)
	}
	const want = `volume v-client-0
    type protocol/client
    option remote-host srv1
    option remote-subvolume "/bricks/with \"quote\" and \\ space"
    option ping-timeout 42
    option empty ""
end-volume
`
	if !strings.Contains(text, want) {
		t.Fatalf("String:\n%s\nwant it to contain\n%s", text, want)
	}
}

func stripLines(g *Graph) *Graph {
	for _, n := range g.Nodes {
		n.Line = 0
	}
	return g
}

func TestSubgraph(t *testing.T) {
	g, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := g.Subgraph("/bricks/b0")
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Nodes) != 2 || sub.Nodes[0].Name != "v-posix" || sub.Top().Name != "/bricks/b0" {
		t.Fatalf("Subgraph = %s", sub)
	}
	if err := sub.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Subgraph("nope"); err == nil {
		t.Fatal("Subgraph(nope) succeeded")
	}
}

func TestValidateGenerated(t *testing.T) {
	for _, c := range []struct {
		g    *Graph
		want string
	}{
		{&Graph{}, "no volumes"},
		{&Graph{Nodes: []*Node{{Name: "a b", Type: "x/y"}}}, `volume "a b": bad name`},
		{&Graph{Nodes: []*Node{{Name: "a", Type: "x/y", Options: []Option{{"k", "a\nb"}}}}}, `option "k": unprintable`},
		{&Graph{Nodes: []*Node{{Name: "a", Type: "x/y", Options: []Option{{"", "v"}}}}}, `bad option key ""`},
	} {
		if err := c.g.Validate(); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "line") {
			t.Errorf("Validate(%s) = %v, want %q without a line number", c.g, err, c.want)
		}
	}
}
