package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// sentinelMasterName is the name the sentinels monitor the primary under,
	// for redis.FailoverOptions.MasterName.
	sentinelMasterName = "mymaster"
	numSentinels       = 3
	// sentinelReadyTimeout bounds the wait for sentinels to discover each
	// other, which they do through hello messages published every 2 s.
	sentinelReadyTimeout = 30 * time.Second
	// failoverTimeout is used when Failover's ctx has no deadline.
	failoverTimeout = 60 * time.Second
)

// Sentinel is a primary with one replica monitored by three Redis Sentinel
// processes (quorum 2, down-after-milliseconds 1000, failover-timeout 5000),
// all on 127.0.0.1.
type Sentinel struct {
	// MasterName is the monitored name, for redis.FailoverOptions.
	MasterName string
	// Primary and Replica are the data servers in their current roles;
	// Failover swaps them.
	Primary, Replica *Server
	// Sentinels are the redis-server --sentinel processes.
	Sentinels []*Server
	// SentinelAddrs are their addresses, for redis.FailoverOptions.
	SentinelAddrs []string
}

// StartSentinel starts a primary, a replica of it and three sentinels
// monitoring it, and returns once every sentinel knows the primary, the
// healthy replica and the two other sentinels, so that clients and Failover
// work right away. Everything is stopped in t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	Require(t)
	ctx := context.Background()
	s := &Sentinel{
		MasterName: sentinelMasterName,
		Primary:    Start(t, fastReplicationArgs...),
		Replica:    Start(t, fastReplicationArgs...),
	}
	if err := replicaOf(ctx, s.Replica, s.Primary); err != nil {
		t.Fatal(err)
	}
	for range numSentinels {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		// Sentinel rewrites its config file (it persists discovered peers
		// there), so it must be a writable file of its own.
		text := fmt.Sprintf("bind 127.0.0.1\n"+
			"sentinel resolve-hostnames no\n"+
			"sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", s.MasterName, s.Primary.Port)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		sv, err := launch(dir, conf, []string{"--sentinel"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sv.Stop) // registered after the data servers, so stopped first
		s.Sentinels = append(s.Sentinels, sv)
		s.SentinelAddrs = append(s.SentinelAddrs, sv.Addr)
	}
	if err := waitFor(ctx, sentinelReadyTimeout, 100*time.Millisecond, "sentinels to converge", s.converged); err != nil {
		t.Fatal(err)
	}
	return s
}

// replicaOf makes r a replica of p and waits for the link to be up. The
// role is stored with CONFIG REWRITE rather than passed as --replicaof, so
// that a Restart after a failover brings the server back in its current
// role instead of its original one.
func replicaOf(ctx context.Context, r, p *Server) error {
	c := r.adminClient()
	defer c.Close()
	// Do, not ReplicaOf: go-redis has the method only from v9.19, and the
	// suite runs on older releases too (README, "Supported versions").
	if err := c.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(p.Port)).Err(); err != nil {
		return fmt.Errorf("redistest: REPLICAOF on %s: %w", r.Addr, err)
	}
	if err := c.ConfigRewrite(ctx).Err(); err != nil {
		return fmt.Errorf("redistest: CONFIG REWRITE on %s: %w", r.Addr, err)
	}
	return waitFor(ctx, sentinelReadyTimeout, 20*time.Millisecond, "replica link of "+r.Addr, func(ctx context.Context) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if got := infoField(info, "master_port"); got != strconv.Itoa(p.Port) {
			return fmt.Errorf("master_port is %q", got)
		}
		if got := infoField(info, "master_link_status"); got != "up" {
			return fmt.Errorf("master_link_status is %q", got)
		}
		return nil
	})
}

// converged reports whether every sentinel sees s.Primary as a healthy
// master with s.Replica as its healthy replica and knows both other
// sentinels.
func (s *Sentinel) converged(ctx context.Context) error {
	for _, sv := range s.Sentinels {
		if err := s.checkSentinel(ctx, sv); err != nil {
			return fmt.Errorf("sentinel %s: %w", sv.Addr, err)
		}
	}
	return nil
}

func (s *Sentinel) checkSentinel(ctx context.Context, sv *Server) error {
	c := s.sentinelClient(sv)
	defer c.Close()
	m, err := c.Master(ctx, s.MasterName).Result()
	if err != nil {
		return err
	}
	want := map[string]string{
		"port":                strconv.Itoa(s.Primary.Port),
		"flags":               "master", // no s_down, o_down, failover_in_progress
		"num-slaves":          "1",
		"num-other-sentinels": strconv.Itoa(len(s.Sentinels) - 1),
	}
	for k, v := range want {
		if m[k] != v {
			return fmt.Errorf("SENTINEL MASTER %s: %s is %q, want %q", s.MasterName, k, m[k], v)
		}
	}
	reps, err := c.Replicas(ctx, s.MasterName).Result()
	if err != nil {
		return err
	}
	// Failover needs a replica that the sentinel has recent, healthy INFO
	// from; otherwise SENTINEL FAILOVER answers NOGOODSLAVE.
	if len(reps) != 1 || reps[0]["port"] != strconv.Itoa(s.Replica.Port) ||
		reps[0]["flags"] != "slave" || reps[0]["master-link-status"] != "ok" {
		return fmt.Errorf("SENTINEL REPLICAS %s: %v", s.MasterName, reps)
	}
	return nil
}

// Failover runs SENTINEL FAILOVER on a sentinel and waits until every
// sentinel's GET-MASTER-ADDR-BY-NAME reports the former replica and that
// server's ROLE is master. It then makes the former primary a replica of the
// new one right away (Sentinel would only do so after several seconds),
// waits for that link, and swaps s.Primary and s.Replica. It must not run
// concurrently with other uses of s's fields. A failover right after another
// one may take several seconds longer, as the sentinels first have to
// rediscover the replica (SENTINEL FAILOVER answers NOGOODSLAVE meanwhile).
func (s *Sentinel) Failover(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, failoverTimeout)
		defer cancel()
	}
	oldP, newP := s.Primary, s.Replica
	c := s.sentinelClient(s.Sentinels[0])
	defer c.Close()
	// Retried because NOGOODSLAVE (sentinel has no fresh INFO from the
	// replica yet) and INPROG (a failover is running) are transient. If a
	// failover to newP already happened meanwhile, issuing another one
	// would switch back, so that is checked first.
	err := waitFor(ctx, failoverTimeout, 100*time.Millisecond, "SENTINEL FAILOVER to be accepted", func(ctx context.Context) error {
		addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(newP.Port) {
			return nil
		}
		return c.Failover(ctx, s.MasterName).Err()
	})
	if err != nil {
		return err
	}
	err = waitFor(ctx, failoverTimeout, 50*time.Millisecond, "failover to "+newP.Addr, func(ctx context.Context) error {
		for _, sv := range s.Sentinels {
			sc := s.sentinelClient(sv)
			addr, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
			_ = sc.Close()
			if err != nil {
				return err
			}
			if len(addr) != 2 || addr[1] != strconv.Itoa(newP.Port) {
				return fmt.Errorf("sentinel %s reports master %v", sv.Addr, addr)
			}
		}
		role, err := newP.role(ctx)
		if err != nil {
			return err
		}
		if role != "master" {
			return errors.New("new primary's ROLE is " + role)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := replicaOf(ctx, oldP, newP); err != nil {
		return err
	}
	s.Primary, s.Replica = newP, oldP
	return nil
}

// sentinelClient returns an unhooked client for one sentinel process.
func (s *Sentinel) sentinelClient(sv *Server) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr:            sv.Addr,
		Protocol:        2,
		DisableIdentity: true,
		DialTimeout:     clientTimeout,
		ReadTimeout:     clientTimeout,
		WriteTimeout:    clientTimeout,
		MaxRetries:      -1,
	})
}
