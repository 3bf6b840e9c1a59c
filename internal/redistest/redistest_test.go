package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CloseShared()
	// Every process this package started must have been stopped and reaped
	// by now; anything left would be a leak in Stop/Close/Cleanup wiring.
	if leaked := livePIDs(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "redistest: processes still running after tests: %v\n", leaked)
		code = 1
	}
	os.Exit(code)
}

// processGone reports whether pid no longer exists. Our processes are reaped
// by the Wait goroutine, so a pid that still exists (even as a zombie) means
// Stop did not finish.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// eventually retries f for up to timeout; used where clients legitimately
// need a moment to notice a topology change.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestParseCommandCalls(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_evalsha:calls=7,usec=10,usec_per_call=1.43,rejected_calls=0,failed_calls=1\r\n" +
		"cmdstat_script|load:calls=2,usec=5,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_eval:calls=3,usec=1,usec_per_call=0.33,rejected_calls=0,failed_calls=0\r\n"
	for name, want := range map[string]int64{"evalsha": 7, "EVAL": 3, "script|load": 2, "get": 0} {
		got, err := parseCommandCalls(info, name)
		if err != nil || got != want {
			t.Errorf("parseCommandCalls(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
}

func TestServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t)
	if s.Addr != "127.0.0.1:"+strconv.Itoa(s.Port) || s.Dir == "" || s.PID() == 0 {
		t.Fatalf("bad server %+v pid %d", s, s.PID())
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()

	// CommandCalls counts exactly what the client under test sent.
	if err := s.ResetStats(ctx); err != nil {
		t.Fatal(err)
	}
	const script = "return 1"
	sha, err := c.ScriptLoad(ctx, script).Result()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Eval(ctx, script, nil).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.EvalSha(ctx, sha, nil).Err(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"eval": 2, "evalsha": 1, "script|load": 1, "evalsha_ro": 0} {
		if got, err := s.CommandCalls(ctx, name); err != nil || got != want {
			t.Errorf("CommandCalls(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if err := s.ResetStats(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CommandCalls(ctx, "eval"); err != nil || got != 0 {
		t.Errorf("CommandCalls(eval) after ResetStats = %d, %v", got, err)
	}

	// CPUTime grows when the server burns CPU (more than one 10 ms tick).
	before, err := s.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	busy := "local i = 0 while i < 20000000 do i = i + 1 end return i"
	if err := c.Eval(ctx, busy, nil).Err(); err != nil {
		t.Fatal(err)
	}
	after, err := s.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("CPUTime did not grow: %v -> %v", before, after)
	}

	// Restart: same port, new pid, no data, script cache empty.
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	oldPID, port := s.PID(), s.Port
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.PID() == oldPID || s.PID() == 0 || s.Port != port {
		t.Fatalf("after Restart pid %d (was %d) port %d (was %d)", s.PID(), oldPID, s.Port, port)
	}
	if !processGone(oldPID) {
		t.Errorf("old pid %d still exists after Restart", oldPID)
	}
	// The client's pooled connection died with the old process; go-redis
	// retries on a new connection.
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Errorf("GET after Restart: %v, want redis.Nil", err)
	}
	if err := c.EvalSha(ctx, sha, nil).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Errorf("EVALSHA after Restart: %v, want NOSCRIPT", err)
	}

	// Stop is idempotent and the process is gone afterwards.
	pid := s.PID()
	s.Stop()
	s.Stop()
	if s.PID() != 0 || !processGone(pid) {
		t.Errorf("pid %d still there after Stop", pid)
	}
	if _, err := s.CPUTime(); err == nil {
		t.Error("CPUTime of a stopped server succeeded")
	}

	// Restart of a stopped server simply starts it again on its port.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestNewServerExtraArgs(t *testing.T) {
	t.Parallel()
	Require(t)
	s, err := NewServer(t.TempDir(), "--maxmemory", "10mb")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	got, err := c.ConfigGet(context.Background(), "maxmemory").Result()
	if err != nil || got["maxmemory"] != strconv.Itoa(10<<20) {
		t.Fatalf("CONFIG GET maxmemory = %v, %v", got, err)
	}
}

// checkCluster verifies state and routing through a real cluster client.
func checkCluster(t *testing.T, c *Cluster, primaries, replicas int) {
	t.Helper()
	ctx := context.Background()
	for _, s := range c.Servers {
		cl := s.adminClient()
		info, err := cl.ClusterInfo(ctx).Result()
		_ = cl.Close()
		if err != nil || infoField(info, "cluster_state") != "ok" {
			t.Fatalf("%s: cluster_state not ok: %v %q", s.Addr, err, info)
		}
	}
	if p, err := c.Primaries(ctx); err != nil || len(p) != primaries {
		t.Errorf("Primaries = %d, %v; want %d", len(p), err, primaries)
	}
	if r, err := c.Replicas(ctx); err != nil || len(r) != replicas {
		t.Errorf("Replicas = %d, %v; want %d", len(r), err, replicas)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer cc.Close()
	// Enough keys to hit every primary's slot range.
	for i := range 20 {
		k := fmt.Sprintf("%s-key-%d", t.Name(), i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := cc.Get(ctx, k).Int(); err != nil || got != i {
			t.Fatalf("GET %s = %d, %v", k, got, err)
		}
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	Require(t)
	start := time.Now()
	c, err := NewCluster(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NewCluster(3, 1) took %v", time.Since(start))
	defer c.Close() // in case of t.Fatal; Close is idempotent
	if len(c.Servers) != 6 || len(c.Addrs) != 6 {
		t.Fatalf("got %d servers, %d addrs", len(c.Servers), len(c.Addrs))
	}
	checkCluster(t, c, 3, 3)

	// A restarted node keeps its identity (nodes.conf in its Dir) and the
	// cluster heals without a failover, as node-timeout is not reached.
	ctx := context.Background()
	primaries, err := c.Primaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := primaries[0].Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart of a primary took %v", time.Since(start))
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart of a primary + WaitHealthy took %v", time.Since(start))
	checkCluster(t, c, 3, 3)

	var pids []int
	for _, s := range c.Servers {
		pids = append(pids, s.PID())
	}
	start = time.Now()
	c.Close()
	t.Logf("Close took %v", time.Since(start))
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("pid %d still exists after Close", pid)
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir %s not removed: %v", c.dir, err)
	}
}

func TestSharedCluster(t *testing.T) {
	t.Parallel()
	a := SharedCluster(t)
	if b := SharedCluster(t); a != b {
		t.Fatal("SharedCluster returned two different clusters")
	}
	checkCluster(t, a, 3, 3)
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	sn := StartSentinel(t)
	t.Logf("StartSentinel took %v", time.Since(start))
	if len(sn.SentinelAddrs) != 3 || len(sn.Sentinels) != 3 {
		t.Fatalf("got %d sentinels", len(sn.SentinelAddrs))
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sn.MasterName, SentinelAddrs: sn.SentinelAddrs})
	defer fc.Close()

	// servedBy reports which data server the failover client writes to.
	servedBy := func() (int, error) {
		info, err := fc.Info(ctx, "server").Result()
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(infoField(info, "tcp_port"))
	}
	if err := fc.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if port, err := servedBy(); err != nil || port != sn.Primary.Port {
		t.Fatalf("failover client on port %d, %v; want primary %d", port, err, sn.Primary.Port)
	}
	// Make sure the write reached the replica before it gets promoted.
	if n, err := fc.Wait(ctx, 1, time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}

	for round := range 2 {
		oldPrimary, oldReplica := sn.Primary, sn.Replica
		start = time.Now()
		if err := sn.Failover(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Failover %d took %v", round, time.Since(start))
		if sn.Primary != oldReplica || sn.Replica != oldPrimary {
			t.Fatal("Failover did not swap Primary and Replica")
		}
		if r, err := sn.Primary.role(ctx); err != nil || r != "master" {
			t.Fatalf("new primary ROLE %q, %v", r, err)
		}
		if r, err := sn.Replica.role(ctx); err != nil || r != "slave" {
			t.Fatalf("old primary ROLE %q, %v", r, err)
		}
		// The client learns about the switch asynchronously (+switch-master
		// or a READONLY error), so give it a moment.
		key := fmt.Sprintf("after-%d", round)
		eventually(t, 10*time.Second, func() error {
			if err := fc.Set(ctx, key, "1", 0).Err(); err != nil {
				return err
			}
			if port, err := servedBy(); err != nil || port != sn.Primary.Port {
				return fmt.Errorf("served by port %d, %v; want %d", port, err, sn.Primary.Port)
			}
			return nil
		})
		if got, err := fc.Get(ctx, "before").Result(); err != nil || got != "1" {
			t.Fatalf("GET before = %q, %v", got, err)
		}
	}
}
