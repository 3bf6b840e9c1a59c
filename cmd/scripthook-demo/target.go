package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
)

const (
	// dialTimeout bounds every connection attempt of the demo's clients.
	dialTimeout = 2 * time.Second
	// pingTimeout bounds the reachability check, so that a wrong -addr is
	// reported within seconds instead of after go-redis's retries.
	pingTimeout = 3 * time.Second
)

// dialFunc is the type of go-redis's Options.Dialer.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// target is where the workload runs: an embedded miniredis, a standalone
// Redis or a Redis Cluster. Each run gets a fresh client from newClient;
// admin is a separate client with neither hook nor byte counting, for the
// work that is not part of the measurement (flushing scripts, deleting
// keys), so it cannot distort the numbers.
type target struct {
	desc      string // what the report's header says we ran against
	admin     redis.UniversalClient
	newClient func(dial dialFunc) redis.UniversalClient
	stop      func() // stops an embedded server; nil otherwise
}

// openTarget builds the target the flags ask for and checks that it answers
// PING. Errors are phrased to follow "scripthook-demo: " on one line.
func openTarget(ctx context.Context, cfg config) (*target, error) {
	var t *target
	var where string // what "cannot reach" names
	switch {
	case cfg.cluster != "":
		addrs := strings.Split(cfg.cluster, ",")
		where = cfg.cluster
		t = &target{
			desc: "Redis Cluster " + cfg.cluster,
			newClient: func(dial dialFunc) redis.UniversalClient {
				return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Dialer: dial, DialTimeout: dialTimeout})
			},
			admin: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: dialTimeout}),
		}
	case cfg.addr != "":
		where = cfg.addr
		t = &target{
			desc: fmt.Sprintf("Redis %s, db %d", cfg.addr, cfg.db),
			newClient: func(dial dialFunc) redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: cfg.addr, DB: cfg.db, Dialer: dial, DialTimeout: dialTimeout})
			},
			admin: adminClient(cfg.addr, cfg.db),
		}
	default:
		m, err := miniredis.Run() // listens on a random 127.0.0.1 port
		if err != nil {
			return nil, fmt.Errorf("cannot start miniredis: %w", err)
		}
		where = m.Addr()
		t = &target{
			// The port is random, so it stays out of the report: the output
			// is then the same from one run to the next.
			desc: "embedded miniredis",
			newClient: func(dial dialFunc) redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: m.Addr(), Dialer: dial, DialTimeout: dialTimeout})
			},
			admin: adminClient(m.Addr(), 0),
			stop:  m.Close,
		}
	}
	// Reachability first, with a bare PING: go-redis would log its dial
	// failure on stderr on top of our one-line message.
	for _, addr := range strings.Split(where, ",") {
		if err := probe(ctx, addr); err != nil {
			t.close()
			return nil, fmt.Errorf("cannot reach %s: %w", addr, err)
		}
	}
	// Then through go-redis, which also selects the database or, for a
	// cluster, fetches the slot map.
	if err := t.ping(ctx); err != nil {
		t.close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return t, nil
}

// probe sends one RESP PING over a plain TCP connection and expects PONG,
// all within pingTimeout.
func probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no reply to PING: %w", err)
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("unexpected reply to PING: %q", line)
	}
	return nil
}

// ping checks, within pingTimeout, that the admin client works.
func (t *target) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	var err error
	if cc, ok := t.admin.(*redis.ClusterClient); ok {
		// A ClusterClient's PING reaches one node; pinging every master
		// also proves that the seeds serve a slot map.
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = t.admin.Ping(ctx).Err()
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %v", pingTimeout)
	}
	return err
}

// adminClient returns a standalone client for the unmeasured work. It never
// retries: everything it does is quick and local to the demo, and a failure
// should be reported, not hidden.
func adminClient(addr string, db int) *redis.Client {
	o := &redis.Options{Addr: addr, DB: db, DialTimeout: dialTimeout, MaxRetries: -1}
	oneDial(o)
	return redis.NewClient(o)
}

// oneDial sets o.DialerRetries to 1 (one dial per attempt, no retries)
// where go-redis has the field: v9.16 added it, with 5 retries by default.
// By reflection, so that the demo builds on the older go-redis releases
// the library supports (README, "Supported versions").
func oneDial(o *redis.Options) {
	if f := reflect.ValueOf(o).Elem().FieldByName("DialerRetries"); f.IsValid() && f.CanSet() {
		f.SetInt(1)
	}
}

// flushScripts empties the script cache of every server the workload uses:
// the event scripthook must survive (a restart, a failover, an operator's
// SCRIPT FLUSH), caused behind the measured client's back.
func (t *target) flushScripts(ctx context.Context) error {
	if cc, ok := t.admin.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ScriptFlush(ctx).Err()
		})
	}
	return t.admin.ScriptFlush(ctx).Err()
}

// deleteKeys removes the workload's keys, one DEL per key because several
// keys in one DEL would cross slots on a cluster.
func (t *target) deleteKeys(ctx context.Context) error {
	for _, k := range demoKeys() {
		if err := t.admin.Del(ctx, k).Err(); err != nil {
			return fmt.Errorf("deleting %s: %w", k, err)
		}
	}
	return nil
}

// install puts the hook and the observer on a fresh client, in that order,
// so the observer sees what the hook sends. A nil hook gives the plain
// client, with the observer only.
func (t *target) install(rdb redis.UniversalClient, h *scripthook.Hook, obs *bodyObserver) error {
	switch c := rdb.(type) {
	case *redis.Client:
		if h != nil {
			c.AddHook(h)
		}
		c.AddHook(obs)
		return nil
	case *redis.ClusterClient:
		if h != nil {
			// What scripthook.Instrument does, keeping the Hook for its
			// Stats: a tracing hook on the ClusterClient and a rewriting
			// hook on every node.
			if err := h.Install(c); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
		defer cancel()
		return obs.observeNodes(ctx, c)
	}
	return fmt.Errorf("unexpected client type %T", rdb)
}

func (t *target) close() {
	_ = t.admin.Close()
	if t.stop != nil {
		t.stop()
	}
}
