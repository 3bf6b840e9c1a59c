package scripthook

import (
	"net"
	"sync/atomic"
	"syscall"
)

// trackedConn reports its own Close to the server state. A dial that follows a
// closed connection is how a restart, a failover or a broken link shows
// itself, so it is what makes the hook forget what the server had loaded;
// the dials that merely grow the pool at start-up are not.
type trackedConn struct {
	net.Conn
	srv    *server
	closed atomic.Bool
}

// Close closes the connection and records that one was lost.
func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.srv.connClosed()
	}
	return c.Conn.Close()
}

// NetConn returns the wrapped connection, so go-redis's health checks can
// reach the socket (they walk NetConn, as for crypto/tls.Conn).
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// trackedSysConn is a trackedConn over a connection that exposes its socket
// (a plain TCP or Unix connection), so go-redis keeps treating it as direct.
type trackedSysConn struct {
	*trackedConn
}

// SyscallConn returns the wrapped socket's raw connection.
func (c trackedSysConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// track wraps a freshly dialled connection.
func track(conn net.Conn, srv *server) net.Conn {
	t := &trackedConn{Conn: conn, srv: srv}
	if _, ok := conn.(syscall.Conn); ok {
		return trackedSysConn{t}
	}
	return t
}
