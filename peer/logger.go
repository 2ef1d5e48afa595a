package peer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// serverLogger writes nats-server's log to slog: notices as Info, warnings
// as Warn, errors and fatals as Error, debug and trace as Debug. nats-server
// only calls Debugf and Tracef when SetLoggerV2 enables them.
type serverLogger struct {
	log     *slog.Logger
	fatal   chan string // the first fatal message, for Start
	dataDir string
	full    *atomic.Bool // the out-of-space explanation was logged
}

func newServerLogger(log *slog.Logger, dataDir string) serverLogger {
	return serverLogger{log: log, fatal: make(chan string, 1), dataDir: dataDir, full: new(atomic.Bool)}
}

func (l serverLogger) logf(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}

func (l serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v) }
func (l serverLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v) }
func (l serverLogger) Errorf(format string, v ...any) {
	l.logf(slog.LevelError, format, v)
	if l.full != nil && strings.Contains(format, "will be DISABLED") && l.full.CompareAndSwap(false, true) {
		// nats-server's own line does not say what to do.
		l.log.Error("this peer's data dir is out of space (or its JetStream limits are reached): it stopped storing and serves no stream; the other members of its cluster keep serving. It starts storing again by itself once the data dir has room (peer/disk.go).",
			"data_dir", l.dataDir, "server", fmt.Sprintf(format, v...))
	}
}
func (l serverLogger) Debugf(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }
func (l serverLogger) Tracef(format string, v ...any) { l.logf(slog.LevelDebug-4, format, v) }

// Fatalf logs at Error and does not exit: the embedding process decides.
// The first fatal message is handed to Start, which fails with it.
func (l serverLogger) Fatalf(format string, v ...any) {
	l.logf(slog.LevelError, "fatal: "+format, v)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
