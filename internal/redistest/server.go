// Package redistest starts real redis-server processes (standalone servers,
// clusters and sentinel setups) for the tests and benchmarks of scripthook.
//
// Everything binds to 127.0.0.1 on randomly picked free ports, never to the
// default 6379, so tests can run next to a system Redis and next to other
// test binaries. Every process is started in the foreground by this package
// and stopped by its pid; on Linux the processes are additionally killed by
// the kernel if the test binary dies (see sysProcAttr), so a timed-out or
// crashed test does not leave servers behind.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// requireEnv turns a missing redis-server from a skip into a failure, so
	// CI cannot silently pass by skipping every integration test.
	requireEnv = "SCRIPTHOOK_REQUIRE_REDIS"

	startAttempts  = 5                      // fresh ports tried when one turns out to be taken
	restartTimeout = 10 * time.Second       // how long Restart retries a port that is still taken
	shutdownGrace  = 5 * time.Second        // SHUTDOWN may wait for replicas to catch up
	stopGrace      = 5 * time.Second        // SIGTERM is graceful in Redis 7, too
	pollInterval   = 10 * time.Millisecond  // readiness polling; servers start in a few ms
	clientTimeout  = 5 * time.Second        // admin client dial/read/write timeouts
	confName       = "redis.conf"           // config file of data servers, target of CONFIG REWRITE
	logName        = "redis.log"            // stdout+stderr of every run, appended
	dialTimeout    = 200 * time.Millisecond // for readiness probes against a local port
)

// fastReplicationArgs make replicas usable within about a second instead of
// about ten, for clusters and sentinel setups:
//   - repl-diskless-sync-delay 0: a primary otherwise waits 5 s for more
//     replicas before starting a full sync.
//   - repl-ping-replica-period 1: a cluster node lists a replica in CLUSTER
//     SLOTS only once the replica's replication offset is non-zero, and on an
//     idle primary only these pings (every 10 s by default) advance it.
var fastReplicationArgs = []string{
	"--repl-diskless-sync-delay", "0",
	"--repl-ping-replica-period", "1",
}

// Available reports whether a server program is there (see BinEnv).
func Available() bool { return serverBin() != "" }

// Require skips the test with a clear message when redis-server is not on
// PATH. When the environment variable SCRIPTHOOK_REQUIRE_REDIS is "1" it
// calls t.Fatal instead, so that CI, which is supposed to have Redis, fails
// loudly instead of reporting skipped integration tests as a pass.
func Require(t testing.TB) {
	t.Helper()
	requireBinary(t, serverBin(), "redis-server (or valkey-server)")
}

// requireBinary implements Require for any binary (clusters also need the
// cli): path is where it was found, "" if nowhere.
func requireBinary(t testing.TB, path, name string) {
	t.Helper()
	if path != "" {
		return
	}
	msg := fmt.Sprintf("redistest: %s not found on PATH or in $%s; install Redis >= 7 to run this test", name, BinEnv)
	if os.Getenv(requireEnv) == "1" {
		t.Fatal(msg + " (failing instead of skipping because " + requireEnv + "=1)")
	}
	t.Skip(msg + " (set " + requireEnv + "=1 to fail instead of skip)")
}

// Server is one redis-server process (a data server or a sentinel) listening
// on 127.0.0.1. Addr, Port and Dir never change, not even across Restart.
type Server struct {
	// Addr is "127.0.0.1:<Port>", ready to be used as go-redis Options.Addr.
	Addr string
	// Port is the TCP port the server listens on.
	Port int
	// Dir is the server's own working directory; it holds its config file,
	// its log (redis.log) and, for cluster nodes, nodes.conf.
	Dir string

	conf string   // config file, first argv element; CONFIG REWRITE writes it
	args []string // argv after conf, identical on every (re)start

	mu   sync.Mutex // serializes Restart and Stop
	proc *process   // nil while stopped
}

// Start runs a redis-server on a free 127.0.0.1 port with its own directory
// (t.TempDir), persistence disabled (--save "" --appendonly no) and the given
// extra arguments (for example "--cluster-enabled", "yes"). It returns once
// the server answers PING and stops the server in t.Cleanup. It skips the
// test (see Require) when redis-server is not installed.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	Require(t)
	// t.TempDir registers its removal before our Stop, and cleanups run last
	// in, first out, so the process is gone before its directory is removed.
	s, err := NewServer(t.TempDir(), extraArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	t.Logf("redistest: %s on %s", ServerVersion(), s.Addr)
	return s
}

// NewServer is Start without testing.TB, for TestMain, shared fixtures and
// benchmarks: dir is created if needed and becomes the server's Dir. The
// caller must call Stop.
func NewServer(dir string, extraArgs ...string) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Data servers get a (initially empty) config file so that CONFIG
	// REWRITE works: Sentinel uses it when it reconfigures replicas, and a
	// role stored there survives Restart.
	conf := filepath.Join(dir, confName)
	f, err := os.OpenFile(conf, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	_ = f.Close()
	args := append([]string{"--save", "", "--appendonly", "no"}, extraArgs...)
	return launch(dir, conf, args)
}

// launch starts a server with config file conf and args on a fresh port,
// trying another port when the picked one was taken in the meantime.
func launch(dir, conf string, args []string) (*Server, error) {
	var lastErr error
	for range startAttempts {
		port, err := pickPort()
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: localAddr(port), Port: port, Dir: dir, conf: conf}
		// Port, bind and dir come last because the last occurrence of an
		// option wins: extra arguments must not move the server off the
		// port we report or off loopback.
		s.args = append(slices.Clone(args),
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--dir", dir,
		)
		s.mu.Lock()
		err = s.start()
		s.mu.Unlock()
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	return nil, lastErr
}

// PID returns the pid of the running process, or 0 while stopped. It changes
// on Restart.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid()
}

// Restart shuts the server down with SHUTDOWN NOSAVE (falling back to
// killing it), waits for the process to exit, and starts it again on the
// same port with the same arguments and directory, waiting for PING. Because
// persistence is off the data and the script cache are gone afterwards;
// cluster identity (nodes.conf) and a role written by CONFIG REWRITE are
// kept. It retries for a while if the port is briefly unavailable. On a
// primary with replicas it takes up to about a second, because Redis 7's
// SHUTDOWN waits for the replicas to acknowledge the latest offset.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.proc; p != nil {
		s.proc = nil
		// On success the server just closes the connection, so the reply is
		// normally an EOF error. An error reply means it refused to shut
		// down, and waiting for it to exit would be pointless.
		_, err := rawCommand(s.Addr, clientTimeout, "SHUTDOWN", "NOSAVE")
		var refused replyError
		if errors.As(err, &refused) {
			_ = p.cmd.Process.Kill()
		}
		p.stop(shutdownGrace)
	}
	deadline := time.Now().Add(restartTimeout)
	for {
		err := s.start()
		if err == nil {
			return nil
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return fmt.Errorf("redistest: restart %s: %w", s.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop terminates the process by pid (SIGTERM, then SIGKILL after a grace
// period) and waits for it to exit. It is idempotent and safe to call on a
// server that already exited by itself.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.terminate()
	s.proc.stop(stopGrace)
	s.proc = nil
}

// CPUTime returns the user plus system CPU time the server process has used
// so far, read from /proc/<pid>/stat. Benchmarks use deltas of it to measure
// the server-side cost of a workload. It only works on Linux.
func (s *Server) CPUTime() (time.Duration, error) {
	pid := s.PID()
	if pid == 0 {
		return 0, fmt.Errorf("redistest: %s is not running", s.Addr)
	}
	return procCPUTime(pid)
}

// CommandCalls returns the calls counter of INFO commandstats for a command
// such as "eval", "evalsha" or "script|load" (subcommands use "|" in Redis
// 7), or 0 if the command has not been called since start or ResetStats.
// It uses its own client without hooks, so it does not count itself except
// under "info" and "hello".
func (s *Server) CommandCalls(ctx context.Context, name string) (int64, error) {
	c := s.adminClient()
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("redistest: INFO commandstats on %s: %w", s.Addr, err)
	}
	return parseCommandCalls(info, name)
}

// parseCommandCalls extracts calls=N from the cmdstat_<name> line.
func parseCommandCalls(info, name string) (int64, error) {
	prefix := "cmdstat_" + strings.ToLower(name) + ":"
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		if !ok {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				return strconv.ParseInt(v, 10, 64)
			}
		}
		return 0, fmt.Errorf("redistest: no calls= in %q", line)
	}
	return 0, nil
}

// ResetStats runs CONFIG RESETSTAT, zeroing commandstats among others.
func (s *Server) ResetStats(ctx context.Context) error {
	c := s.adminClient()
	defer c.Close()
	return c.ConfigResetStat(ctx).Err()
}
