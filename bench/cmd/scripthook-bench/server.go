package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
)

// server is the redis-server the suite measures: one it started itself
// through internal/redistest, or the one given with -addr.
type server struct {
	Addr    string
	Version redistest.Version
	Started bool // true when this program started (and will stop) it

	pid int               // -addr: from INFO, 0 when its CPU cannot be read
	rt  *redistest.Server // the server this program started
	dir string            // its directory, removed by Stop (NewServer leaves it)
}

// PID is the server's process id, 0 when unknown (server CPU is then not
// reported).
func (s *server) PID() int {
	if s.rt != nil {
		return s.rt.PID()
	}
	return s.pid
}

// startServer runs a redis-server (or valkey-server) on a free 127.0.0.1
// port in a temporary directory, without persistence, with
// internal/redistest: SCRIPTHOOK_REDIS_BIN names the directory of the
// binary, PATH is searched otherwise.
func startServer() (*server, error) {
	if !redistest.Available() {
		return nil, fmt.Errorf("redis-server not found on PATH or in $%s (install Redis >= 7, or pass -addr)", redistest.BinEnv)
	}
	dir, err := os.MkdirTemp("", "scripthook-bench-redis-")
	if err != nil {
		return nil, err
	}
	rt, err := redistest.NewServer(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return fromRedistest(rt, dir), nil
}

// fromRedistest wraps a server started by internal/redistest (dir, if not
// empty, is removed by Stop).
func fromRedistest(rt *redistest.Server, dir string) *server {
	return &server{Addr: rt.Addr, Version: redistest.ServerVersion(), Started: true, rt: rt, dir: dir}
}

// Stop ends the server this program started, by its pid, and removes its
// directory. A server given with -addr is left alone.
func (s *server) Stop() {
	if s == nil || s.rt == nil {
		return
	}
	s.rt.Stop()
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// attachServer uses an existing server at addr, which must be on loopback.
// Its pid comes from INFO server; its CPU can be read when it runs on this
// machine (and in this pid namespace).
func attachServer(ctx context.Context, addr string) (*server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IP.IsLoopback() {
			return nil, fmt.Errorf("-addr %q: only loopback servers are benchmarked (resolved to %s)", addr, ip.IP)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	s := &server{Addr: addr, Version: redistest.VersionFromInfo(info)}
	if pid, err := strconv.Atoi(redistest.InfoField(info, "process_id")); err == nil {
		if _, _, err := readServerCPU(pid); err == nil {
			s.pid = pid
		}
	}
	return s, nil
}
