package faults_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errLost is the network failure the lossy connection stages.
var errLost = errors.New("faults test: connection lost before the reply")

// lossy dials connections that, once armed, let the nth write (handshakes
// not counted) through to the server and then fail every read: the server
// runs what was written and its reply is lost, as when a connection dies at
// that moment.
type lossy struct {
	writes atomic.Int64 // writes since arming
	nth    int64        // 0: not armed
	broken atomic.Bool
}

func (l *lossy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, l: l}, nil
}

type lossyConn struct {
	net.Conn
	l *lossy
}

func (c *lossyConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	// A new connection's handshake (HELLO, CLIENT SETINFO) does not count:
	// go-redis may dial one for a pipeline.
	if handshake := strings.Contains(string(p), "hello") || strings.Contains(string(p), "setinfo"); !handshake {
		if w := c.l.writes.Add(1); c.l.nth > 0 && w == c.l.nth {
			c.l.broken.Store(true)
		}
	}
	return n, err
}

func (c *lossyConn) Read(p []byte) (int, error) {
	if c.l.broken.Load() {
		// The reply arrives (so the server ran the commands) and is
		// thrown away with the connection.
		_, _ = c.Conn.Read(p)
		_ = c.Conn.Close()
		return 0, errLost
	}
	return c.Conn.Read(p)
}

// A pipeline's retry ran on the server and its reply was lost: the caller
// gets the network error (the call may have run, as for any lost reply),
// never the NOSCRIPT of the first attempt, which would say it did not run.
// go-redis gives a network error only to commands that have no error yet.
func TestPipelineRetryLostReply(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	body := "return redis.call('INCR', KEYS[1]) -- " + strings.Repeat("l", 60)
	l := &lossy{}
	rdb := testkit.Client(t, srv, &redis.Options{Dialer: l.dial, PoolSize: 1, MaxRetries: -1})
	rdb.AddHook(scripthook.New(scripthook.WithTracing(false)))
	admin := testkit.Client(t, srv, nil)

	require.NoError(t, rdb.Eval(ctx, body, []string{"lost:k"}).Err(), "the hook learns the body")
	require.NoError(t, admin.ScriptFlush(ctx).Err()) // another client's flush
	l.writes.Store(0)
	l.nth = 2 // the pipeline, then its retry
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.EvalSha(ctx, testkit.SHA1(body), []string{"lost:k"})
		p.EvalSha(ctx, testkit.SHA1(body), []string{"lost:k"})
		return nil
	})
	require.True(t, l.broken.Load(), "the retry went out")
	require.Len(t, cmds, 2)
	assert.ErrorIs(t, err, errLost)
	for i, c := range cmds {
		// The first command of a batch whose read fails gets the error
		// from go-redis directly, the later ones only if they have none.
		assert.ErrorIs(t, c.Err(), errLost, "command %d: %v", i, c.Err())
	}
	assert.Equal(t, "3", admin.Get(ctx, "lost:k").Val(), "the retry ran both once on the server")
}
