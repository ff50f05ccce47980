package volfile

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are volfile
// errors, and that whatever it accepts formats and parses back to the same
// graph. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		g, err := Parse(strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "volfile: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		text := g.String()
		back, err := Parse(strings.NewReader(text))
		if err != nil {
			t.Fatalf("Parse(String()) = %v\n%s", err, text)
		}
		if !reflect.DeepEqual(stripLines(back), stripLines(g)) {
			t.Fatalf("round trip changed the graph:\n%s\n---\n%s", text, back)
		}
		if back.String() != text {
			t.Fatalf("String not stable:\n%s\n---\n%s", text, back)
		}
	})
}
