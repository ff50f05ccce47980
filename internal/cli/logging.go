package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the process logger: text for people, json for log
// collectors.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// zapLogger adapts slog for the etcd libraries, which log through zap, so
// that their lines share our format and level. Entries below min are
// dropped: etcd is chatty at info. While mute is set (if not nil) nothing
// is logged: etcd reports its own orderly shutdown as errors.
func zapLogger(l *slog.Logger, min zapcore.Level, mute *atomic.Bool) *zap.Logger {
	return zap.New(&zapCore{log: l, min: min, mute: mute})
}

type zapCore struct {
	log  *slog.Logger
	min  zapcore.Level
	mute *atomic.Bool
}

func (c *zapCore) Enabled(lv zapcore.Level) bool {
	if c.mute != nil && c.mute.Load() {
		return false
	}
	return lv >= c.min && c.log.Enabled(context.Background(), slogLevel(lv))
}

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log.With(zapAttrs(fields)...), min: c.min, mute: c.mute}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	args := zapAttrs(fields)
	if e.LoggerName != "" {
		args = append(args, "logger", e.LoggerName)
	}
	c.log.Log(context.Background(), slogLevel(e.Level), e.Message, args...)
	return nil
}

func (c *zapCore) Sync() error { return nil }

func slogLevel(lv zapcore.Level) slog.Level {
	switch {
	case lv <= zapcore.DebugLevel:
		return slog.LevelDebug
	case lv == zapcore.InfoLevel:
		return slog.LevelInfo
	case lv == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func zapAttrs(fields []zapcore.Field) []any {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, enc.Fields[k])
	}
	return args
}

// prefixWriter copies a child process's output into ours line by line,
// each line tagged so that interleaved brick logs stay readable.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i]); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes a trailing partial line.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}
