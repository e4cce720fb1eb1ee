// Package proxy is the loopback TCP proxy that the herd command puts in
// front of a store's server, so that a phase of a run can make the server
// unreachable from the command's clients, then reachable again, while the
// server itself runs on and the rest of the run is not disturbed.
//
// A [Proxy] forwards every connection made to its address to the server. A
// [Proxy.Cut] makes the server unreachable in one of two ways ([Fault]):
// [Hang], a server that stopped answering (a stopped process, a network
// that drops packets), or [Refuse], a server that is gone (connections
// closed, new ones refused). [Proxy.Restore] ends the fault.
//
// Costs: four goroutines and two sockets per connection forwarded, and one
// copy of every byte. Every method is safe for concurrent use; [Proxy.Close]
// closes every connection and waits for every goroutine the proxy started.
package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// A Fault is how a cut server looks to its clients.
type Fault int

// The faults of [Proxy.Cut].
const (
	// Hang keeps every connection open, and takes new ones, but delivers
	// nothing either way until Restore, which delivers what was held: a
	// server process that was stopped and then continued, or a network
	// that dropped packets for a while. A client finds out only by its
	// own timeouts.
	Hang Fault = iota + 1
	// Refuse closes every connection and refuses new ones until Restore:
	// a server that exited. A client finds out at once.
	Refuse
)

// String is the fault's name, as the command's flag spells it.
func (f Fault) String() string {
	switch f {
	case Hang:
		return "hang"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// ParseFault returns the fault that s names: "hang" or "refuse".
func ParseFault(s string) (Fault, error) {
	switch s {
	case "hang":
		return Hang, nil
	case "refuse":
		return Refuse, nil
	}
	return 0, fmt.Errorf("unknown fault %q: want hang or refuse", s)
}

// ErrClosed is returned by [Proxy.Restore] after [Proxy.Close].
var ErrClosed = errors.New("proxy: closed")

// A Proxy forwards the connections made to its loopback address to a
// server. Build it with [Start].
type Proxy struct {
	addr   string
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	ln     net.Listener // nil while refusing, or closed
	fault  Fault        // 0 while forwarding
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Start listens on a free loopback port and forwards every connection
// made to it to target, a host:port.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{addr: ln.Addr().String(), target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(func() { p.accept(ln) })
	return p, nil
}

// Addr is the proxy's address, 127.0.0.1:port: the server's address for
// the clients that go through the proxy.
func (p *Proxy) Addr() string { return p.addr }

// Target is the address of the server the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut makes the server unreachable through the proxy, as f says, until
// Restore. Cutting a proxy already cut changes nothing.
func (p *Proxy) Cut(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.fault != 0 {
		return
	}
	p.fault = f
	if f == Refuse {
		_ = p.ln.Close()
		p.ln = nil
		p.closeConns()
	}
}

// Restore ends the fault of Cut: the proxy forwards again, on the same
// port. After a Hang, it delivers what it held. It returns an error if the
// port cannot be listened on again, or after Close.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.fault == Refuse {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("proxy: listen again on %s: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Go(func() { p.accept(ln) })
	}
	p.fault = 0
	p.cond.Broadcast()
	return nil
}

// Close stops the proxy: it closes its listener and every connection, and
// waits for its goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		if p.ln != nil {
			_ = p.ln.Close()
			p.ln = nil
		}
		p.closeConns()
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}

// closeConns closes every connection; p.mu is held.
func (p *Proxy) closeConns() {
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	p.cond.Broadcast()
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed || p.fault == Refuse {
			p.mu.Unlock()
			_ = client.Close()
			_ = server.Close()
			continue
		}
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.pipe(server, client)
		p.pipe(client, server)
	}
}

// pipe forwards what src sends to dst: a reader that never stops reading
// (so that a hung side does not fill the other's socket buffers), and a
// writer that delivers what was read unless the proxy hangs.
func (p *Proxy) pipe(dst, src net.Conn) {
	var (
		queue [][]byte
		eof   bool
	)
	p.wg.Go(func() {
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			p.mu.Lock()
			if n > 0 {
				queue = append(queue, buf[:n])
			}
			eof = err != nil
			p.mu.Unlock()
			p.cond.Broadcast()
			if err != nil {
				return
			}
		}
	})
	p.wg.Go(func() {
		defer func() {
			_ = dst.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			p.mu.Unlock()
		}()
		for {
			p.mu.Lock()
			// Wait while there is nothing to deliver or the proxy hangs,
			// unless it closed or the source ended with nothing left.
			for !p.closed && (len(queue) > 0 || !eof) && (p.fault == Hang || len(queue) == 0) {
				p.cond.Wait()
			}
			if p.closed || len(queue) == 0 {
				p.mu.Unlock()
				return
			}
			chunk := queue[0]
			queue = queue[1:]
			p.mu.Unlock()
			if _, err := dst.Write(chunk); err != nil {
				return
			}
		}
	})
}
