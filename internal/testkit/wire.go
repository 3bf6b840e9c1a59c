package testkit

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Wire counts the bytes a client writes to its server, for redis.Options.
// Dialer: the measure of "never more bytes than plain EVAL".
type Wire struct {
	written atomic.Int64
}

// Dialer dials like go-redis and counts what is written on the connection.
func (w *Wire) Dialer(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc := countingConn{Conn: c, n: &w.written}
	if _, ok := c.(syscall.Conn); ok {
		// go-redis checks a pooled connection's health through its socket
		// before using it; hiding the socket would hand it dead ones.
		return countingSysConn{cc}, nil
	}
	return cc, nil
}

// Written returns the bytes written so far.
func (w *Wire) Written() int64 { return w.written.Load() }

// Options returns base with the counting dialer.
func (w *Wire) Options(base *redis.Options) *redis.Options {
	o := redis.Options{}
	if base != nil {
		o = *base
	}
	o.Dialer = w.Dialer
	return &o
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// NetConn returns the counted connection.
func (c countingConn) NetConn() net.Conn { return c.Conn }

type countingSysConn struct{ countingConn }

func (c countingSysConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}
