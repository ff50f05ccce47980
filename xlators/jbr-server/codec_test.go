package jbrserver

import (
	"reflect"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/xlators/jbr-server/core"
	"github.com/gluon-fs/gluon/xlators/protocol/wire"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func sampleMessages() []core.Message {
	c := &xl.Call{Uid: 1000, Gid: 100, Groups: []uint32{4, 27}, Pid: 9, Client: [16]byte{1, 2}, Seq: 77, Xdata: xl.Xdata{"k": []byte("v")}}
	f := &xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID, H: 3, Flags: syscall.O_APPEND}, Off: 12, Data: []byte("payload")}
	data, _ := encodeRequest(c, f)
	return []core.Message{
		{Type: core.MsgAppend, From: 0, To: 2, Term: 5, Index: 9, LogTerm: 4, Commit: 8, Round: 3, Sync: 10, AckSynced: true,
			Entries: []core.Entry{
				{Term: 5, Index: 10, Req: core.ReqID{Client: [16]byte{1, 2}, Seq: 77}, Key: xl.RootGFID, Data: data},
				{Term: 5, Index: 11}, // a no-op
			}},
		{Type: core.MsgAppendResp, From: 2, To: 0, Term: 5, Index: 11, Round: 3, Sync: 10},
		{Type: core.MsgAppendResp, From: 2, To: 0, Term: 6, Reject: true, LastIndex: 4},
		{Type: core.MsgProbeResp, From: 1, To: 0, Term: 5, LastTerm: 4, LastIndex: 9, Resyncing: true},
	}
}

var testSet = setID{volume: "vol", set: 3}

func TestMessagesRoundTrip(t *testing.T) {
	ms := sampleMessages()
	id, got, err := decodeMessages(encodeMessages(testSet, ms))
	if err != nil {
		t.Fatal(err)
	}
	if id != testSet {
		t.Errorf("set %+v, want %+v", id, testSet)
	}
	if !reflect.DeepEqual(got, ms) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, ms)
	}
	var c xl.Call
	var f xl.Fop
	if err := decodeRequest(got[0].Entries[0].Data, &c, &f); err != nil {
		t.Fatal(err)
	}
	if c.Seq != 77 || c.Xdata["k"] == nil || f.Op != xl.OpWrite || string(f.Data) != "payload" || f.Fd.Flags != syscall.O_APPEND {
		t.Fatalf("request round trip: %+v %+v", c, f)
	}
	for _, bad := range [][]byte{nil, {9}, {codecVersion, 1, 0, 0, 0}, append(encodeMessages(testSet, ms)[stepKey], 0)} {
		if _, _, err := decodeMessages(xl.Xdata{stepKey: bad}); err == nil {
			t.Errorf("decoded %x", bad)
		}
	}
	// A read has no business in the log.
	rd, _ := encodeRequest(&xl.Call{}, &xl.Fop{Op: xl.OpRead, Len: 4})
	if err := decodeRequest(rd, &c, &f); err == nil {
		t.Error("an entry holding a read was accepted")
	}
}

// TestBigEntriesOutOfLine: a big entry's data is not copied into the
// batch but sent as a value of its own, the entry's own slice, and comes
// back as it went, among entries sent inline.
func TestBigEntriesOutOfLine(t *testing.T) {
	big, _ := encodeRequest(&xl.Call{Seq: 1}, &xl.Fop{Op: xl.OpWrite, Fd: xl.Fd{GFID: xl.RootGFID}, Data: make([]byte, wire.OutOfLine)})
	small := sampleMessages()[0].Entries[0].Data
	ms := []core.Message{
		{Type: core.MsgAppend, From: 0, To: 1, Term: 2, Entries: []core.Entry{{Term: 2, Index: 1, Data: big}, {Term: 2, Index: 2, Data: small}}},
		{Type: core.MsgAppend, From: 0, To: 1, Term: 2, Entries: []core.Entry{{Term: 2, Index: 3, Data: big}}},
	}
	x := encodeMessages(testSet, ms)
	if len(x) != 3 || &x[dataKey(0)][0] != &big[0] || &x[dataKey(1)][0] != &big[0] || len(x[stepKey]) > 1000 {
		t.Fatalf("big entries were not sent out of line: %d values, batch of %d bytes", len(x), len(x[stepKey]))
	}
	_, got, err := decodeMessages(x)
	if err != nil || !reflect.DeepEqual(got, ms) {
		t.Fatalf("round trip: %v", err)
	}
	for name, bad := range map[string]xl.Xdata{
		"missing":     {stepKey: x[stepKey], dataKey(0): big},
		"extra":       {stepKey: x[stepKey], dataKey(0): big, dataKey(1): big, dataKey(2): big},
		"empty":       {stepKey: x[stepKey], dataKey(0): big, dataKey(1): {}},
		"misnumbered": {stepKey: x[stepKey], dataKey(0): big, dataKey(2): big},
	} {
		if _, _, err := decodeMessages(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// Decoding never panics, and what decodes re-encodes to the same bytes.
func FuzzDecodeMessages(f *testing.F) {
	f.Add(encodeMessages(testSet, sampleMessages())[stepKey])
	f.Add(encodeMessages(setID{}, nil)[stepKey])
	f.Add(encodeMessages(testSet, sampleMessages()[1:2])[stepKey])
	f.Add([]byte{codecVersion, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ms, err := decodeMessages(xl.Xdata{stepKey: b})
		if err != nil {
			return
		}
		again := encodeMessages(id, ms)
		id2, ms2, err := decodeMessages(again)
		if err != nil || id2 != id || !reflect.DeepEqual(ms, ms2) {
			t.Fatalf("re-decoding failed: %v", err)
		}
		for _, m := range ms {
			for _, e := range m.Entries {
				if len(e.Data) > 0 {
					var c xl.Call
					var f xl.Fop
					decodeRequest(e.Data, &c, &f) // must not panic
				}
			}
		}
	})
}
