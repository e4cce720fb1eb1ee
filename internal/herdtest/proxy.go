package herdtest

import (
	"net"
	"sync"
	"testing"
)

// A Proxy forwards a loopback port to a server, and can be cut and
// restored on the same port, or stalled, so that one client loses its
// connection (or its server stops answering) while the server and the other
// clients go on. Its methods are safe for concurrent use.
type Proxy struct {
	t      testing.TB
	addr   string
	target string

	mu      sync.Mutex
	ln      net.Listener
	conns   []net.Conn
	stalled chan struct{} // closed on Resume; nil while forwarding
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to target on a free loopback port; it is cut at
// the end of the test.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, addr: ln.Addr().String(), target: target}
	p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

// Addr is the proxy's address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.addr }

// Restore listens on the proxy's port again after a Cut.
func (p *Proxy) Restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln {
				// Cut while the connection was being made: Cut closed the
				// connections it knew and waits for their forwarding, so
				// this one must not start.
				p.mu.Unlock()
				_ = c.Close()
				_ = s.Close()
				return
			}
			p.conns = append(p.conns, c, s)
			p.wg.Go(func() { p.pipe(c, s) })
			p.wg.Go(func() { p.pipe(s, c) })
			p.mu.Unlock()
		}
	})
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() { _ = src.Close() }()
	defer func() { _ = dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			p.gate()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}

// Stall stops forwarding bytes, keeping every connection open: a server
// that hangs.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Resume forwards again what Stall held back.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// gate waits while the proxy is stalled.
func (p *Proxy) gate() {
	p.mu.Lock()
	ch := p.stalled
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Cut closes the listener and every forwarded connection, and waits for
// the forwarding goroutines. Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.Resume()
	p.mu.Lock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// Proxied remembers the proxies through which each store (or client) of a
// test reaches its servers, so that a suite's Cut cuts that one alone.
type Proxied[S comparable] struct {
	mu      sync.Mutex
	proxies map[S][]*Proxy
}

// Add records that s reaches its servers through ps.
func (p *Proxied[S]) Add(s S, ps ...*Proxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proxies == nil {
		p.proxies = make(map[S][]*Proxy)
	}
	p.proxies[s] = ps
}

// Cut cuts every proxy of s and returns what restores them: the shape of
// the storetest suites' Cut.
func (p *Proxied[S]) Cut(_ *testing.T, s S) func() {
	p.mu.Lock()
	ps := p.proxies[s]
	p.mu.Unlock()
	for _, x := range ps {
		x.Cut()
	}
	return func() {
		for _, x := range ps {
			x.Restore()
		}
	}
}
