package cli

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseMountArgs(t *testing.T) {
	def := fuseFlags{attr: time.Second, entry: time.Second}
	tests := []struct {
		args      []string
		endpoints []string
		vol, dir  string
		fuse      fuseFlags
		h         helperFlags
		logFile   string
	}{
		{
			args:      []string{"etcd1:/vol0", "/mnt/v"},
			endpoints: []string{"etcd1:2379"}, vol: "vol0", dir: "/mnt/v", fuse: def,
		},
		{
			args:      []string{"etcd1:12379:/vol0", "/mnt/v", "-o", "rw,_netdev,nofail,defaults"},
			endpoints: []string{"etcd1:12379"}, vol: "vol0", dir: "/mnt/v", fuse: def,
		},
		{
			args:      []string{"[::1]:/vol0", "/mnt/v", "-oauto,noauto,user,users,x-systemd.automount"},
			endpoints: []string{"[::1]:2379"}, vol: "vol0", dir: "/mnt/v", fuse: def,
		},
		{
			args:      []string{"x:/v", "/m", "-o", "etcd=a:1,etcd=b:2", "-o", "attribute-timeout=0,entry-timeout=0.5,negative-timeout=2s,allow_other", "-n", "-v"},
			endpoints: []string{"a:1", "b:2"}, vol: "v", dir: "/m",
			fuse: fuseFlags{attr: 0, entry: 500 * time.Millisecond, negative: 2 * time.Second, allowOther: true},
			h:    helperFlags{verbose: true},
		},
		{
			args:      []string{"-f", "-t", "gluon", "h:/v", "/m", "-o", "log-file=/tmp/x.log"},
			endpoints: []string{"h:2379"}, vol: "v", dir: "/m", fuse: def, h: helperFlags{fake: true}, logFile: "/tmp/x.log",
		},
		{
			args:      []string{"-s", "h:/v", "/m", "-o", "bogus,ro"},
			endpoints: []string{"h:2379"}, vol: "v", dir: "/m", fuse: def, h: helperFlags{sloppy: true},
		},
	}
	for _, tt := range tests {
		req, h, err := parseMountArgs(tt.args)
		if err != nil {
			t.Errorf("parseMountArgs(%q): %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(req.endpoints, tt.endpoints) || req.volume != tt.vol || req.dir != tt.dir ||
			req.fuse != tt.fuse || h != tt.h || req.logFile != tt.logFile {
			t.Errorf("parseMountArgs(%q) = %+v %+v", tt.args, *req, h)
		}
	}
	// /proc/mounts shows the source as mount(8) was given it.
	if req, _, _ := parseMountArgs([]string{"etcd1:/vol0", "/m"}); req.fsName != "etcd1:/vol0" {
		t.Errorf("fsname %q", req.fsName)
	}
}

func TestParseMountArgsErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"h:/v"},
		{"h:/v", "/m", "/extra"},
		{"novolume", "/m"},
		{":/v", "/m"},
		{"h:/", "/m"},
		{"h:/a/b", "/m"},
		{"h:/v", "/m", "-o"},
		{"h:/v", "/m", "-o", "bogus"},
		{"h:/v", "/m", "-o", "ro"},
		{"h:/v", "/m", "-o", "etcd"},
		{"h:/v", "/m", "-o", "etcd="},
		{"h:/v", "/m", "-o", "attribute-timeout=-1"},
		{"h:/v", "/m", "-o", "attribute-timeout=soon"},
		{"h:/v", "/m", "-o", "timeout=0"},
		{"h:/v", "/m", "-o", "log-level=loud"},
		{"h:/v", "/m", "-x"},
		{"h:/v", "/m", "-N", "/proc/1/ns/mnt"},
	} {
		if req, _, err := parseMountArgs(args); err == nil {
			t.Errorf("parseMountArgs(%q) = %+v, want error", args, *req)
		}
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"unknown command \"upp\" for \"gluon\"\n\nDid you mean this?\n\tup\n", `unknown command "upp" for "gluon" (did you mean up?)`},
		{"a\nb\n", "a; b"},
	}
	for _, tt := range tests {
		if got := oneLine(tt.in); got != tt.want {
			t.Errorf("oneLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoopbackDefault(t *testing.T) {
	tests := []struct{ in, want string }{
		{"9567", "127.0.0.1:9567"},
		{":9567", "127.0.0.1:9567"},
		{"0.0.0.0:9567", "0.0.0.0:9567"},
		{"[::1]:1", "[::1]:1"},
		{"bad", ""},
		{"h:port", ""},
		{"h:70000", ""},
	}
	for _, tt := range tests {
		got, err := loopbackDefault(tt.in)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("loopbackDefault(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDebugFlagsRejectPublicPprof(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", "10.0.0.1:6060", "example.com:6060"} {
		d := debugFlags{pprof: addr}
		if err := d.check(); err == nil {
			t.Errorf("--pprof %s accepted", addr)
		}
	}
	d := debugFlags{pprof: "6060", metrics: "0.0.0.0:9567"}
	if err := d.check(); err != nil || d.pprof != "127.0.0.1:6060" {
		t.Errorf("check: %v, pprof %q", err, d.pprof)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/mnt/a\040b\134c\011`); got != "/mnt/a b\\c\t" {
		t.Errorf("unescapeMount = %q", got)
	}
	if got := unescapeMount(`/x\04`); got != `/x\04` {
		t.Errorf("unescapeMount(truncated) = %q", got)
	}
}

func TestDefaultLogFile(t *testing.T) {
	for in, want := range map[string]string{
		"/mnt/vol0": "/var/log/gluon/mnt-vol0.log",
		"/":         "/var/log/gluon/root.log",
		"/a/b/":     "/var/log/gluon/a-b.log",
	} {
		if got := defaultLogFile(in); got != want {
			t.Errorf("defaultLogFile(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCreate(t *testing.T) {
	v, err := parseCreate([]string{"v0", "replica", "2", "a:/b0", "b:/b0", "a:/b1", "b:/b1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "v0" || v.Replica != 2 || len(v.Bricks) != 4 || v.Bricks[3].Host != "b" || v.Bricks[3].Path != "/b1" {
		t.Errorf("parseCreate = %+v", v)
	}
	for _, args := range [][]string{
		{"v0"},
		{"v0", "replica"},
		{"v0", "replica", "0", "a:/b"},
		{"v0", "replica", "x", "a:/b"},
		{"v0", "replica", "3", "a:/b", "b:/b"},
		{"v0", "a:/b", "a:/b"},
		{"v0", "a:/b", "a:/b/c"},
		{"v0", "nocolon"},
		{"v0", "a:relative"},
		{"v 0", "a:/b"},
	} {
		if _, err := parseCreate(args); err == nil {
			t.Errorf("parseCreate(%q): no error", args)
		}
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: "b0: "}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\nthree"))
	w.Flush()
	if got, want := out.String(), "b0: one\nb0: two\nb0: three\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestZapLogger(t *testing.T) {
	var out bytes.Buffer
	lg := zapLogger(slog.New(slog.NewTextHandler(&out, nil)), zapcore.WarnLevel, nil)
	lg.Info("dropped")
	lg.With(zap.String("member", "m1")).Warn("kept", zap.String("peer", "p1"))
	got := out.String()
	if strings.Contains(got, "dropped") || !strings.Contains(got, "msg=kept") ||
		!strings.Contains(got, "member=m1") || !strings.Contains(got, "peer=p1") || !strings.Contains(got, "level=WARN") {
		t.Errorf("zap bridge wrote %q", got)
	}
}

func TestNewLogger(t *testing.T) {
	var out bytes.Buffer
	lg, err := newLogger(&out, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("no")
	lg.Warn("yes")
	if got := out.String(); strings.Contains(got, `"no"`) || !strings.Contains(got, `"msg":"yes"`) {
		t.Errorf("json logger wrote %q", got)
	}
	if _, err := newLogger(&out, "loud", "text"); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := newLogger(&out, "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
}
