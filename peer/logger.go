package peer

import (
	"context"
	"fmt"
	"log/slog"
)

// serverLogger writes nats-server's log to slog: notices as Info, warnings
// as Warn, errors and fatals as Error, debug and trace as Debug. nats-server
// only calls Debugf and Tracef when SetLoggerV2 enables them.
type serverLogger struct {
	log   *slog.Logger
	fatal chan string // the first fatal message, for Start
}

func newServerLogger(log *slog.Logger) serverLogger {
	return serverLogger{log: log, fatal: make(chan string, 1)}
}

func (l serverLogger) logf(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}

func (l serverLogger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v) }
func (l serverLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v) }
func (l serverLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v) }
func (l serverLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v) }
func (l serverLogger) Tracef(format string, v ...any)  { l.logf(slog.LevelDebug-4, format, v) }

// Fatalf logs at Error and does not exit: the embedding process decides.
// The first fatal message is handed to Start, which fails with it.
func (l serverLogger) Fatalf(format string, v ...any) {
	l.logf(slog.LevelError, "fatal: "+format, v)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
