// Package tcpproxy is a TCP proxy for tests: it counts the connections it
// forwards, and can silence them the way a network that forgets a
// connection does, without closing it.
package tcpproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards every connection it accepts to one target.
type Proxy struct {
	ln       net.Listener
	accepted atomic.Int64

	mu    sync.Mutex
	conns []net.Conn
	quiet []*atomic.Bool
}

// Start listens on a loopback port and forwards to target (host:port)
// until the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcpproxy: %v", err)
	}
	p := &Proxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		// Kept-alive connections would otherwise copy until the
		// server's idle timeout.
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			quiet := &atomic.Bool{}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.quiet = append(p.quiet, quiet)
			p.mu.Unlock()
			wg.Go(func() { pipe(up, c, quiet) })
			wg.Go(func() { pipe(c, up, quiet) })
		}
	})
	return p
}

// pipe copies src to dst, dropping what it reads once quiet.
func pipe(dst, src net.Conn, quiet *atomic.Bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !quiet.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is how many connections the proxy has taken.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Silence makes every connection forwarded so far drop what it carries,
// both ways, without closing. Later connections work.
func (p *Proxy) Silence() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range p.quiet {
		q.Store(true)
	}
}
