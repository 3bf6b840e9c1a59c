package faults_test

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// stallProxy stands between clients and a server and forwards their bytes
// both ways. Armed with a marker, it holds back the server's replies on the
// first connection whose request carries the marker, until released: one
// slow server reply, on one connection, while every other connection goes
// on. (A slow script would make every connection wait: a server runs one
// command at a time.)
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	marker  []byte        // lower case; nil: disarmed
	held    chan struct{} // closed once a connection is held
	release chan struct{} // closed to let its replies through
	relOnce func()        // closes release once
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// newStallProxy listens on a free loopback port for target until the test
// ends.
func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is where clients dial.
func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

// Arm holds the replies of the next connection whose request contains
// marker (compared in lower case, as RESP carries go-redis's command names).
// held is closed when that request went to the server; release lets the
// replies through (and those held after it).
func (p *stallProxy) Arm(marker string) (held <-chan struct{}, release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.relOnce != nil {
		p.relOnce() // what an earlier arming held goes on
	}
	p.marker = bytes.ToLower([]byte(marker))
	p.held, p.release = make(chan struct{}), make(chan struct{})
	rel := p.release
	var once sync.Once
	p.relOnce = func() { once.Do(func() { close(rel) }) }
	return p.held, p.relOnce
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		var hold atomic.Pointer[chan struct{}]
		done := make(chan struct{})
		go p.up(c, s, &hold, done)
		go p.down(s, c, &hold, done)
	}
}

// up forwards requests; the one that carries the marker sets hold before it
// goes out, so that its reply, which can only come after, is held.
func (p *stallProxy) up(c, s net.Conn, hold *atomic.Pointer[chan struct{}], done chan struct{}) {
	defer p.wg.Done()
	defer close(done)
	defer s.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.marker != nil && bytes.Contains(bytes.ToLower(buf[:n]), p.marker) {
				rel := p.release
				hold.Store(&rel)
				close(p.held)
				p.marker = nil
			}
			p.mu.Unlock()
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// down forwards replies, waiting for the release while held; a held reply
// whose client went away is dropped.
func (p *stallProxy) down(s, c net.Conn, hold *atomic.Pointer[chan struct{}], done chan struct{}) {
	defer p.wg.Done()
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if rel := hold.Load(); rel != nil {
				select {
				case <-*rel:
				case <-done:
					return
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // the server or the client closed
		}
	}
}

func (p *stallProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	if p.relOnce != nil {
		p.relOnce()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
