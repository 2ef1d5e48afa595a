// Package wan is a TCP proxy that can cut the connections it carries, as a
// WAN outage does to a site's leaf link: for benchmarks and tests.
package wan

import (
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
			buf := make([]byte, 64<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 && !p.dropping() {
					if _, werr := dst.Write(buf[:n]); werr != nil {
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
