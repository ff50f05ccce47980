package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"testing/quick"

	"github.com/gluon-fs/gluon/xlators/xl"
)

// randomValue fills every field of a T with random data, so a field added
// to xl.Fop, xl.Result or xl.Call that the codec forgets breaks the
// round trip below.
func randomValue[T any](rng *rand.Rand) T {
	v, ok := quick.Value(reflect.TypeFor[T](), rng)
	if !ok {
		panic("quick.Value failed")
	}
	return v.Interface().(T)
}

func randomFop(rng *rand.Rand) *xl.Fop {
	f := randomValue[xl.Fop](rng)
	f.Op = xl.Op(1 + rng.Intn(int(xl.OpIpc)))
	return &f
}

func randomResult(rng *rand.Rand) *xl.Result {
	r := randomValue[xl.Result](rng)
	r.Errno = syscall.Errno(rng.Intn(4096))
	return &r
}

// splitFrame checks a frame's header and returns its metadata; data is
// what the sender puts on the wire after it.
func splitFrame(t testing.TB, frame, data []byte, typ Type, id uint64) []byte {
	t.Helper()
	h, err := ParseHeader(frame, DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != typ || h.ID != id || int(h.Len) != len(frame)-HeaderSize+len(data) || int(h.DataLen) != len(data) {
		t.Fatalf("header %+v for %d metadata and %d data bytes", h, len(frame)-HeaderSize, len(data))
	}
	return frame[HeaderSize:]
}

func TestRequestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := range 2000 {
		c := randomValue[xl.Call](rng)
		f := randomFop(rng)
		if i%3 == 0 { // sparse requests exercise the presence bits
			c = xl.Call{Uid: c.Uid}
			*f = xl.Fop{Op: f.Op, Name: f.Name}
		}
		frame := AppendRequest(nil, uint64(i), &c, f)
		meta := splitFrame(t, frame, f.Data, TypeRequest, uint64(i))
		var gc xl.Call
		var gf xl.Fop
		if err := DecodeRequest(meta, bytes.Clone(f.Data), &gc, &gf); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(gc, c) {
			t.Fatalf("case %d: call\n got %+v\nwant %+v", i, gc, c)
		}
		if !reflect.DeepEqual(&gf, f) {
			t.Fatalf("case %d: fop\n got %+v\nwant %+v", i, gf, *f)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := range 2000 {
		r := randomResult(rng)
		if i%3 == 0 {
			*r = xl.Result{Errno: r.Errno}
		}
		frame := AppendReply(nil, uint64(i), r)
		meta := splitFrame(t, frame, r.Data, TypeReply, uint64(i))
		var got xl.Result
		if err := DecodeResult(meta, bytes.Clone(r.Data), &got); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(&got, r) {
			t.Fatalf("case %d:\n got %+v\nwant %+v", i, got, *r)
		}
	}
}

// Nil and empty differ for callers (an empty xattr value is not an absent
// one), so both survive the trip.
func TestNilAndEmptyDiffer(t *testing.T) {
	for _, r := range []*xl.Result{
		{},
		{Data: []byte{}, Names: []string{}, Dirents: []xl.Dirent{}, Xdata: xl.Xdata{}},
	} {
		var got xl.Result
		meta := AppendResult(nil, r)
		if err := DecodeResult(meta, nil, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, r) {
			t.Errorf("got %#v, want %#v", got, *r)
		}
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := Hello{Version: Version, Volume: "vol0", MaxFrame: DefaultMaxFrame, PingTimeout: 10e9}
	meta := splitFrame(t, AppendHello(nil, 1, &h), nil, TypeHandshake, 1)
	var gh Hello
	if err := DecodeHello(meta, &gh); err != nil || gh != h {
		t.Fatalf("hello %+v, %v; want %+v", gh, err, h)
	}
	w := Welcome{Errno: syscall.ENOENT, Reason: "no such volume", MaxFrame: 1 << 20}
	meta = splitFrame(t, AppendWelcome(nil, 1, &w), nil, TypeHandshake, 1)
	var gw Welcome
	if err := DecodeWelcome(meta, &gw); err != nil || gw != w {
		t.Fatalf("welcome %+v, %v; want %+v", gw, err, w)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := AppendHeader(nil, Header{Type: TypeRequest, ID: 9, Len: 100, DataLen: 10})
	if _, err := ParseHeader(good, 1000); err != nil {
		t.Fatal(err)
	}
	if h, err := ParseHeader(AppendHeader(nil, Header{Type: TypeCancel, ID: 5}), 1000); err != nil || h.ID != 5 {
		t.Fatalf("cancel frame: %+v, %v", h, err)
	}
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for name, b := range map[string][]byte{
		"short":          good[:HeaderSize-1],
		"magic":          mod(func(b []byte) { b[0] ^= 1 }),
		"type zero":      mod(func(b []byte) { b[5] = 0 }),
		"type unknown":   mod(func(b []byte) { b[5] = 200 }),
		"flags":          mod(func(b []byte) { b[6] = 4 }),
		"no-reply reply": mod(func(b []byte) { b[5], b[6] = byte(TypeReply), 1 }),
		"over max frame": mod(func(b []byte) { binary.LittleEndian.PutUint32(b[16:], 1001) }),
		"data over len":  mod(func(b []byte) { binary.LittleEndian.PutUint32(b[20:], 101) }),
		"ping payload":   mod(func(b []byte) { b[5] = byte(TypePing) }),
		"cancel payload": mod(func(b []byte) { b[5] = byte(TypeCancel) }),
		"handshake data": mod(func(b []byte) { b[5] = byte(TypeHandshake) }),
	} {
		if _, err := ParseHeader(b, 1000); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	if h, err := ParseHeader(mod(SetNoReply), 1000); err != nil || h.Flags != FlagNoReply {
		t.Errorf("no-reply request: %+v, %v", h, err)
	}
	h, err := ParseHeader(mod(func(b []byte) { b[4] = Version + 1 }), 1000)
	if !errors.Is(err, ErrVersion) || h.ID != 9 || h.Version != Version+1 {
		t.Errorf("other version: %+v, %v", h, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	write := AppendFop(nil, &xl.Fop{Op: xl.OpWrite, Name: "x", Data: []byte("abc")})
	uv := binary.AppendUvarint
	cases := map[string]struct {
		meta, data []byte
	}{
		"empty":           {nil, nil},
		"unknown op":      {[]byte{0xee, 0}, nil},
		"op zero":         {[]byte{0, 0}, nil},
		"unknown field":   {uv([]byte{byte(xl.OpLookup)}, fopEnd), nil},
		"truncated":       {write[:len(write)-1], []byte("abc")},
		"trailing":        {append(bytes.Clone(write), 0), []byte("abc")},
		"data, no field":  {AppendFop(nil, &xl.Fop{Op: xl.OpLookup}), []byte("abc")},
		"bad varint":      {append([]byte{byte(xl.OpLookup)}, bytes.Repeat([]byte{0xff}, 11)...), nil},
		"uint32 overflow": {uv(uv([]byte{byte(xl.OpLookup)}, fopFlags), 1<<32), nil},
		"long string":     {uv(uv([]byte{byte(xl.OpLookup)}, fopName), MaxString+1), nil},
		"string past end": {uv(uv([]byte{byte(xl.OpLookup)}, fopName), 50), nil},
		"huge xdata":      {uv(uv([]byte{byte(xl.OpIpc)}, fopXdata), 1<<40), nil},
		"dup xdata": {append(uv(uv([]byte{byte(xl.OpIpc)}, fopXdata), 2),
			1, 'k', 0, 1, 'k', 0), nil},
	}
	for name, c := range cases {
		var f xl.Fop
		if err := DecodeFop(c.meta, c.data, &f); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
	// A dirent flag this side does not know is a newer peer's: refused,
	// not dropped.
	dirent := AppendResult(nil, &xl.Result{Dirents: []xl.Dirent{{Name: "x", Off: 1, NoXattrs: true}}})
	dirent[len(dirent)-1] = direntEnd
	if err := DecodeResult(dirent, nil, &xl.Result{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown dirent flag: err %v, want ErrMalformed", err)
	}
	// Counts claiming more entries than the bytes could hold fail before
	// anything is allocated for them.
	for name, meta := range map[string][]byte{
		"names":   uv(uv(nil, resNames), MaxList),
		"dirents": append(uv(uv(nil, resDirents), 1000), make([]byte, 100)...),
	} {
		// TotalAlloc counts the whole process's allocations, so the
		// least of a few tries is the decoder's own.
		var err error
		least := uint64(math.MaxUint64)
		for range 5 {
			var r xl.Result
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err = DecodeResult(meta, nil, &r)
			runtime.ReadMemStats(&after)
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if !errors.Is(err, ErrMalformed) || least > 4096 {
			t.Errorf("%s: err %v after allocating %d bytes", name, err, least)
		}
	}
	groups := append(uv(uv(nil, callGroups), MaxGroups), byte(xl.OpLookup), 0)
	if err := DecodeRequest(groups, nil, &xl.Call{}, &xl.Fop{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("groups: err %v, want ErrMalformed", err)
	}
}

// TestXdataOutOfLine: big xdata values of a request without data travel
// in the data section, sent from the caller's slices and decoded as slices
// of the section, and come out as they went in.
func TestXdataOutOfLine(t *testing.T) {
	big, bigger := bytes.Repeat([]byte{'b'}, OutOfLine), bytes.Repeat([]byte{'c'}, 3*OutOfLine)
	f := &xl.Fop{Op: xl.OpIpc, Name: "op", Xdata: xl.Xdata{"s": []byte("small"), "z": big, "a": bigger}}
	frame := AppendRequest(nil, 5, &xl.Call{Uid: 1}, f)
	SetNoReply(frame)
	h, err := ParseHeader(frame, 1<<20)
	if err != nil || h.Flags != FlagNoReply|FlagXdataData || int(h.DataLen) != len(big)+len(bigger) {
		t.Fatalf("header %+v, %v", h, err)
	}
	d := RequestData(f)
	if len(d) != 2 || &d[0][0] != &bigger[0] || &d[1][0] != &big[0] {
		t.Fatalf("data section is not the values themselves, by key")
	}
	data := bytes.Join(d, nil)
	var c xl.Call
	var g xl.Fop
	if err := DecodeRequest(frame[HeaderSize:len(frame)], data, &c, &g); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&g, f) || g.Data != nil {
		t.Fatalf("decoded %+v", g)
	}
	if &g.Xdata["a"][0] != &data[0] || cap(g.Xdata["a"]) != len(bigger) {
		t.Errorf("out-of-line value is not a slice of the data section")
	}
	// Small values, and every value of a request with data, stay inline.
	for _, f := range []*xl.Fop{
		{Op: xl.OpIpc, Xdata: xl.Xdata{"k": make([]byte, OutOfLine-1)}},
		{Op: xl.OpWrite, Data: []byte("x"), Xdata: xl.Xdata{"k": big}},
	} {
		h, err := ParseHeader(AppendRequest(nil, 1, &xl.Call{}, f), 1<<20)
		if err != nil || h.Flags != 0 || int(h.DataLen) != len(f.Data) {
			t.Errorf("%v: header %+v, %v", f.Op, h, err)
		}
	}
	uv := binary.AppendUvarint
	out := func(m []byte, n int) []byte { // one out-of-line value "k" of n bytes
		return uv(append(uv(m, 1), 1, 'k'), uint64(n))
	}
	for name, c := range map[string]struct{ meta, data []byte }{
		"short section": {out(uv([]byte{byte(xl.OpIpc)}, fopXdataOut), 3), []byte("ab")},
		"long section":  {out(uv([]byte{byte(xl.OpIpc)}, fopXdataOut), 3), []byte("abcd")},
		"none":          {uv(uv([]byte{byte(xl.OpIpc)}, fopXdataOut), 0), nil},
		"with data":     {out(uv([]byte{byte(xl.OpIpc)}, fopData|fopXdataOut), 1), []byte("a")},
		"dup inline": {out(append(uv(uv([]byte{byte(xl.OpIpc)}, fopXdata|fopXdataOut), 1), 1, 'k', 0), 1),
			[]byte("a")},
	} {
		if err := DecodeFop(c.meta, c.data, &xl.Fop{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

func TestDecodedValuesDoNotAlias(t *testing.T) {
	meta := AppendFop(nil, &xl.Fop{Op: xl.OpIpc, Name: "op", Xdata: xl.Xdata{"k": []byte("value")}})
	var f xl.Fop
	if err := DecodeFop(meta, nil, &f); err != nil {
		t.Fatal(err)
	}
	for i := range meta {
		meta[i] = 'X'
	}
	if f.Name != "op" || string(f.Xdata["k"]) != "value" {
		t.Fatalf("decoded values changed with the buffer: %+v", f)
	}
}

func TestTypeString(t *testing.T) {
	if s := TypeRequest.String(); s != "request" {
		t.Errorf("TypeRequest = %q", s)
	}
	if s := Type(99).String(); !strings.Contains(s, "99") {
		t.Errorf("Type(99) = %q", s)
	}
}
