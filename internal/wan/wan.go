// Package wan is a TCP proxy that can cut the connections it carries, as a
// WAN outage does to a site's leaf link: for benchmarks and tests.
package wan

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections to one address and can be cut, as a WAN
// outage cuts a site's leaf link: loudly (Cut), closing every connection it
// carries, or silently (Drop), as a link that loses packets does.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool // new connections are closed at once
	drop  bool // what connections carry is lost
	delay time.Duration
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			out, stop := p.delayLine(dst)
			defer stop()
			buf := make([]byte, 64<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 && !p.dropping() {
					if werr := out(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(u, c) })
		p.wg.Go(func() { pipe(c, u) })
	}
}

// delayLine returns how a pipe writes to dst: at once, or, with a delay
// set, through a queue that writes each chunk the delay after it was read
// (a link's latency, not a limit on its rate). stop ends the queue.
func (p *Proxy) delayLine(dst net.Conn) (out func([]byte) error, stop func()) {
	p.mu.Lock()
	delay := p.delay
	p.mu.Unlock()
	if delay <= 0 {
		return func(b []byte) error { _, err := dst.Write(b); return err }, func() {}
	}
	type chunk struct {
		due  time.Time
		data []byte
	}
	q := make(chan chunk, 4096)
	failed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				close(failed)
				for range q {
				}
				return
			}
		}
	}()
	out = func(b []byte) error {
		select {
		case q <- chunk{due: time.Now().Add(delay), data: bytes.Clone(b)}:
			return nil
		case <-failed:
			return net.ErrClosed
		}
	}
	return out, func() { close(q); <-done }
}

// Delay sets the latency, each way, of the connections made from now on
// (0: none).
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

func (p *Proxy) dropping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drop
}

// Cut starts (true) or ends (false) a loud outage: the connections the
// proxy carries are closed, and new ones are closed at once until it ends.
func (p *Proxy) Cut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.drop = cut, false
	if cut {
		p.closeAll()
	}
}

// Drop starts (true) or ends (false) a silent outage: the connections the
// proxy carries stay open but lose what they carry, in both directions,
// until their ends give up on them; new ones are closed at once. When it
// ends, the connections that lived through it are closed: what they lost
// cannot be resent.
func (p *Proxy) Drop(drop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.drop = drop, drop
	if !drop {
		p.closeAll()
	}
}

// closeAll closes every connection the proxy carries. p.mu is held.
func (p *Proxy) closeAll() {
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut(true)
	p.wg.Wait()
}
