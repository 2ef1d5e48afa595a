package peer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serverLogger writes nats-server's log to slog: notices as Info, warnings
// as Warn, errors and fatals as Error, debug and trace as Debug. nats-server
// only calls Debugf and Tracef when SetLoggerV2 enables them.
type serverLogger struct {
	log     *slog.Logger
	fatal   chan string // the first fatal message, for Start
	dataDir string
	full    *atomic.Bool // the out-of-space explanation was logged
	repeats *repeats     // warnings and errors said lately
}

func newServerLogger(log *slog.Logger, dataDir string) serverLogger {
	return serverLogger{log: log, fatal: make(chan string, 1), dataDir: dataDir, full: new(atomic.Bool),
		repeats: &repeats{last: map[string]*repeat{}, now: time.Now}}
}

func (l serverLogger) logf(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	msg := fmt.Sprintf(format, v...)
	if level < slog.LevelWarn || l.repeats == nil {
		l.log.Log(context.Background(), level, msg)
		return
	}
	if n, ok := l.repeats.say(msg); ok {
		if n > 0 {
			l.log.Log(context.Background(), level, msg, "repeated", n, "within", repeatWindow)
		} else {
			l.log.Log(context.Background(), level, msg)
		}
	}
}

// repeatWindow is how long a warning or an error of the server is not
// logged again once said: a site whose link to central fails (a TLS
// handshake refused, say) dials again every 250 ms and logged the same
// lines four times a second, forever.
const repeatWindow = time.Minute

// repeats are the warnings and errors of the server said lately, by their
// text without its digits (connection ids, ports, attempt counts), so
// that one failure that repeats is logged once a repeatWindow with how
// often it came meanwhile, and a different one at once.
type repeats struct {
	mu   sync.Mutex
	now  func() time.Time
	last map[string]*repeat
}

type repeat struct {
	at      time.Time // when it was last logged
	dropped int       // since
}

// say reports whether msg is to be logged now, and how many of its
// repeats were not since it last was.
func (r *repeats) say(msg string) (dropped int, ok bool) {
	key := strings.Map(func(c rune) rune {
		if c >= '0' && c <= '9' {
			return -1
		}
		return c
	}, msg)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.last) > 1000 {
		for k, e := range r.last {
			if now.Sub(e.at) >= repeatWindow {
				delete(r.last, k)
			}
		}
	}
	e, seen := r.last[key]
	if seen && now.Sub(e.at) < repeatWindow {
		e.dropped++
		return 0, false
	}
	if !seen {
		e = &repeat{}
		r.last[key] = e
	}
	dropped, e.at, e.dropped = e.dropped, now, 0
	return dropped, true
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
