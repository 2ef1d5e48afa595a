package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// What the console (package console, served by a central peer) needs of
// its peer: the certificate it serves, and connections made with a
// user's own credentials.

// ServerTLS is the TLS config of a listener that clients dial with the
// peer's certificate, following its reloads (ReloadTLS); nil for a peer
// without TLS. Call it after Start.
func (p *Peer) ServerTLS() *tls.Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.certs == nil {
		return nil
	}
	return p.certs.server()
}

// DialAs connects to the peer in process, not through the network,
// authenticated by the credentials in opts like any client (in operator
// mode too): the console's connection on behalf of a logged-in user. It
// returns ErrNotStarted before Start or after Close.
func (p *Peer) DialAs(ctx context.Context, opts ...nats.Option) (*nats.Conn, error) {
	srv := p.Server()
	if srv == nil || !p.ready.Load() {
		return nil, ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o := append([]nats.Option{nats.InProcessServer(bufferedProvider{srv})}, opts...)
	if dl, ok := ctx.Deadline(); ok {
		o = append(o, nats.Timeout(max(time.Until(dl), time.Millisecond)))
	}
	nc, err := nats.Connect("", o...)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return nc, nil
}

// bufferedProvider gives nats.go in-process connections whose writes do
// not wait for the server to read. An in-process connection is a
// net.Pipe, which has no buffer: a client refused at CONNECT is still
// writing its PING while the server writes its -ERR, and both wait until
// the server's write deadline (10 s) closes the pipe. With the client's
// writes buffered, the refusal arrives at once.
type bufferedProvider struct {
	srv interface{ InProcessConn() (net.Conn, error) }
}

func (b bufferedProvider) InProcessConn() (net.Conn, error) {
	c, err := b.srv.InProcessConn()
	if err != nil {
		return nil, err
	}
	bc := &bufferedConn{Conn: c}
	bc.cond = sync.NewCond(&bc.mu)
	go bc.pump()
	return bc, nil
}

// maxBuffered bounds what a bufferedConn holds for a server that does not
// read.
const maxBuffered = 8 << 20

var errBufferFull = errors.New("in-process connection: the server reads nothing")

// bufferedConn is a net.Conn whose writes go to a buffer that pump
// writes to the pipe. pump ends when the connection is closed or a
// write fails.
type bufferedConn struct {
	net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	err    error
	closed bool
}

func (b *bufferedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.err != nil:
		return 0, b.err
	case b.closed:
		return 0, net.ErrClosed
	case len(b.buf)+len(p) > maxBuffered:
		return 0, errBufferFull
	}
	b.buf = append(b.buf, p...)
	b.cond.Signal()
	return len(p), nil
}

func (b *bufferedConn) pump() {
	for {
		b.mu.Lock()
		for len(b.buf) == 0 && !b.closed {
			b.cond.Wait()
		}
		if len(b.buf) == 0 {
			b.mu.Unlock()
			return
		}
		data := b.buf
		b.buf = nil
		b.mu.Unlock()
		if _, err := b.Conn.Write(data); err != nil {
			b.mu.Lock()
			b.err = err
			b.mu.Unlock()
			return
		}
	}
}

func (b *bufferedConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.cond.Signal()
	b.mu.Unlock()
	return b.Conn.Close()
}
