package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gluon-fs/gluon/client"
	"github.com/gluon-fs/gluon/recon"
	"github.com/gluon-fs/gluon/xlators/fdl/journal"
	jbrserver "github.com/gluon-fs/gluon/xlators/jbr-server"
	"github.com/gluon-fs/gluon/xlators/xl"
)

func reconMain(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(append([]string{"gluon"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestReconUsage(t *testing.T) {
	for _, args := range [][]string{
		{"recon", "verify"},
		{"recon", "verify", "a", "b"},
		{"recon", "verify", "bad/name"},
		{"recon", "run", "v", "--set", "-2"},
		{"recon", "run", "v", "--rate", "-1"},
		{"recon", "status"},
		{"recon", "scrub"},
		{"recon", "replay", "/x"},
	} {
		if code, _, stderr := reconMain(args...); code != exitUsage || stderr == "" {
			t.Errorf("gluon %v: exit %d, stderr %q; want a usage error", args, code, stderr)
		}
	}
}

// replay applies a journal written by the fdl translator to a new store.
func TestReconReplay(t *testing.T) {
	jdir := filepath.Join(t.TempDir(), "journal")
	j, err := journal.Open(jdir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.StartTerm(1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g := xl.NewGFID()
	for _, f := range []xl.Fop{
		{Op: xl.OpCreate, GFID: xl.RootGFID, Name: "hello", GFID2: g, Mode: 0o640, Flags: syscall.O_WRONLY | syscall.O_CREAT},
		{Op: xl.OpWrite, Fd: xl.Fd{GFID: g, H: 3, Flags: syscall.O_WRONLY}, Data: []byte("hello, world\n")},
	} {
		if _, err := j.Append(ctx, &journal.Record{Fop: f}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	into := filepath.Join(t.TempDir(), "store")
	code, out, stderr := reconMain("recon", "replay", jdir, "--into", into)
	if code != 0 || !strings.Contains(out, "2 entries applied") {
		t.Fatalf("replay: exit %d, %s%s", code, out, stderr)
	}
	b, err := os.ReadFile(filepath.Join(into, "hello"))
	if err != nil || string(b) != "hello, world\n" {
		t.Errorf("replayed file: %q, %v", b, err)
	}
}

func TestReconStatusText(t *testing.T) {
	sets := []recon.SetState{{
		Set: 0, Leader: 1, Term: 9, Reconciled: false,
		IDs: map[int]uint64{0: 0xabc, 1: 0xabc},
		Bricks: []recon.BrickState{
			{BrickStatus: client.BrickStatus{Index: 0, Brick: "h:/b0", Online: true, Lag: 0, JBR: &jbrserver.Status{Role: "follower", LastTerm: 9, LastIndex: 40, Commit: 40, Applied: 40}}},
			{BrickStatus: client.BrickStatus{Index: 1, Brick: "h:/b1", Online: true, Lag: 0, JBR: &jbrserver.Status{Role: "leader", LastTerm: 9, LastIndex: 40, Commit: 40, Applied: 40}},
				Journal: &jbrserver.JournalStat{FirstIndex: 1, LastIndex: 40, Bytes: 40 << 10}},
			{BrickStatus: client.BrickStatus{Index: 2, Brick: "h:/b2", Online: true, Lag: 30, JBR: &jbrserver.Status{Role: "follower", LastTerm: 7, LastIndex: 10, Commit: 10, Applied: 10}},
				LagBytes: 30 << 10},
		},
		Plan: &recon.Plan{Authority: 1, Committed: 40, Catchups: []recon.Catchup{{ID: 2, ShipFrom: 11, ShipTo: 40}}},
	}}
	var b bytes.Buffer
	if err := writeReconStatus(&b, "v", sets); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Volume v, replica set 0: leader brick 1, term 9, reconciled: no",
		"2 h:/b2  Y       follower  7/10",
		"30 (~30.0 KiB)",
		"40.0 KiB, 1-40",
		"entries 11-40",
		"never verified",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

func TestStatusLine(t *testing.T) {
	var buf strings.Builder
	l := statusLine{w: &buf, tty: true}
	l.done()
	if buf.Len() != 0 {
		t.Fatalf("done before any draw wrote %q", buf.String())
	}
	if !l.due() {
		t.Fatal("first due: false, want true")
	}
	l.draw("applied %d entries", 3)
	l.done()
	if want := "\r\033[Kapplied 3 entries\r\033[K"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
	if (&statusLine{w: &buf}).due() {
		t.Error("due off a terminal: true, want false")
	}
}
