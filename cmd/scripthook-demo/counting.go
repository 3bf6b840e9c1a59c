package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// wireCounter adds up the bytes that really crossed the sockets of one
// client, in both directions. It is what the table reports, so the saving is
// measured at the socket rather than estimated from command sizes: RESP
// framing, the connection handshake and anything the hook adds are all in.
type wireCounter struct {
	written atomic.Int64
	read    atomic.Int64
}

// snapshot returns the totals so far; phases subtract two snapshots.
func (w *wireCounter) snapshot() (written, read int64) {
	return w.written.Load(), w.read.Load()
}

// dialer returns a go-redis Dialer that opens a TCP connection the way
// go-redis would and wraps it so every byte is counted. It is set on
// Options.Dialer (or ClusterOptions.Dialer, where it serves every node), the
// innermost layer below all hooks, so nothing on the wire escapes it.
func (w *wireCounter) dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, w: w}, nil
	}
}

// countingConn is a net.Conn that reports its traffic to a wireCounter.
// Counting after the call, with the count the call returned, counts what
// the kernel accepted or delivered, not what was attempted.
type countingConn struct {
	net.Conn
	w *wireCounter
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.written.Add(int64(n))
	return n, err
}

// NetConn exposes the socket underneath, the way crypto/tls.Conn does, for
// code that looks for it.
func (c *countingConn) NetConn() net.Conn { return c.Conn }

// bodyObserver is a go-redis hook that counts the commands that carry a
// script body (EVAL, EVAL_RO, SCRIPT LOAD) as they leave the client. It is
// added after scripthook, so it sees the commands scripthook actually sends
// (rewritten EVALSHA, its reloads), not the ones the caller wrote. For the
// plain run this is the "bodies sent" column; for the hook run it is a cross
// check of Stats().BodiesSent, made by someone other than the hook itself.
type bodyObserver struct {
	bodies atomic.Int64
}

var _ redis.Hook = (*bodyObserver)(nil)

func (o *bodyObserver) DialHook(next redis.DialHook) redis.DialHook { return next }

func (o *bodyObserver) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		o.count(cmd)
		return next(ctx, cmd)
	}
}

func (o *bodyObserver) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			o.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// count adds one if cmd carries a script body. Args()[0] is used rather than
// Name() because it is what is written to the socket.
func (o *bodyObserver) count(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 2 {
		return
	}
	name, _ := args[0].(string)
	switch strings.ToLower(name) {
	case "eval", "eval_ro":
		o.bodies.Add(1)
	case "script":
		if sub, _ := args[1].(string); strings.EqualFold(sub, "load") {
			o.bodies.Add(1)
		}
	}
}

// observeNodes adds the observer to every node of a cluster client, those
// that exist and those created later. It must be called after the hook is
// installed, so that on every node the observer comes after (inside) the
// scripthook node hook and sees what that hook sends.
func (o *bodyObserver) observeNodes(ctx context.Context, cc *redis.ClusterClient) error {
	var seen sync.Map // *redis.Client -> struct{}: OnNewNode and ForEachShard may both report a node
	add := func(node *redis.Client) {
		if _, dup := seen.LoadOrStore(node, struct{}{}); !dup {
			node.AddHook(o)
		}
	}
	cc.OnNewNode(add)
	return cc.ForEachShard(ctx, func(_ context.Context, node *redis.Client) error {
		add(node)
		return nil
	})
}
