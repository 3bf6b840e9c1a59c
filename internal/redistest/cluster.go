package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	totalSlots = 16384
	// createTimeout bounds redis-cli --cluster create; it polls once a second
	// until all nodes have met, which takes a few seconds.
	createTimeout = 60 * time.Second
	// clusterReadyTimeout bounds the wait for a converged, fully replicated
	// cluster after creation; in practice that takes a few seconds.
	clusterReadyTimeout = 60 * time.Second
)

// Cluster is a Redis Cluster of cluster-enabled redis-server processes on
// 127.0.0.1, created with redis-cli --cluster create.
type Cluster struct {
	// Servers are all nodes, in the order they were passed to redis-cli.
	// Roles can change (failover), so use Primaries and Replicas to find
	// out who is what.
	Servers []*Server
	// Addrs are the nodes' addresses, for redis.ClusterOptions.Addrs.
	Addrs []string

	replicas int    // replicas per primary, checked by healthy
	dir      string // parent of the nodes' directories, removed by Close
}

// NewCluster starts primaries*(1+replicasPerPrimary) cluster-enabled servers
// (cluster-node-timeout 2000 ms, so failures are detected quickly), joins
// them with redis-cli --cluster create and returns once every node reports
// cluster_state:ok, all nodes agree on the owner and replicas of all 16384
// slots, and every replica's link to its primary is up. Nodes also get
// fastReplicationArgs, without which the last step alone takes ~10 s. The
// caller must call Close. redis-cli requires at least 3 primaries.
func NewCluster(primaries, replicasPerPrimary int) (*Cluster, error) {
	if primaries < 3 || replicasPerPrimary < 0 {
		return nil, fmt.Errorf("redistest: cluster needs >= 3 primaries and >= 0 replicas, got %d/%d",
			primaries, replicasPerPrimary)
	}
	if cliBin() == "" {
		return nil, fmt.Errorf("redistest: redis-cli (or valkey-cli) is needed to create a cluster")
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{replicas: replicasPerPrimary, dir: dir}
	n := primaries * (1 + replicasPerPrimary)
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		// Nodes start in parallel: startup is mostly waiting for PING.
		wg.Go(func() {
			args := append([]string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
			}, fastReplicationArgs...)
			servers[i], errs[i] = NewServer(filepath.Join(dir, "node"+strconv.Itoa(i)), args...)
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			c.Servers = append(c.Servers, s)
			c.Addrs = append(c.Addrs, s.Addr)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerPrimary), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cliBin(), args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redistest: %s %s: %w; output:\n%s", cliBin(), strings.Join(args, " "), err, out)
	}
	if err := c.WaitHealthy(context.Background()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// WaitHealthy waits (up to a minute, or ctx) until the cluster is in the
// state NewCluster guarantees: every node reports cluster_state:ok and knows
// all nodes, all nodes agree on the primary and replicas of all 16384
// slots, and every replica's link is up. Use it after restarting nodes or
// failing over. It cannot succeed while a node is stopped.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	return waitFor(ctx, clusterReadyTimeout, 100*time.Millisecond, "cluster to converge", c.healthy)
}

// healthy returns nil when the cluster is fully formed, or an error saying
// what is still missing. redis-cli returns as soon as the nodes have met, but
// slot ownership and replica roles still spread by gossip and replicas may
// still be syncing; a client connecting before that sees CLUSTERDOWN, MOVED
// loops or missing replicas.
func (c *Cluster) healthy(ctx context.Context) error {
	var ref string
	for _, s := range c.Servers {
		cl := s.adminClient()
		err := func() error {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for field, want := range map[string]string{
				"cluster_state":       "ok",
				"cluster_slots_ok":    strconv.Itoa(totalSlots),
				"cluster_known_nodes": strconv.Itoa(len(c.Servers)),
			} {
				if got := infoField(info, field); got != want {
					return fmt.Errorf("%s is %q, want %q", field, got, want)
				}
			}
			//lint:ignore SA1019 go-redis routes by the CLUSTER SLOTS view, so the tests read the same one.
			slots, err := cl.ClusterSlots(ctx).Result()
			if err != nil {
				return err
			}
			view, err := slotView(slots, c.replicas)
			if err != nil {
				return err
			}
			if ref == "" {
				ref = view
			} else if view != ref {
				return fmt.Errorf("CLUSTER SLOTS disagrees with the first node:\n%s\nvs\n%s", view, ref)
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
				return errors.New("replica's master_link_status is not up")
			}
			return nil
		}()
		_ = cl.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", s.Addr, err)
		}
	}
	return nil
}

// slotView renders a CLUSTER SLOTS reply canonically (sorted ranges, each
// with its primary and sorted replicas) so nodes' views can be compared, and
// checks that the ranges cover all slots with the expected replica count.
func slotView(slots []redis.ClusterSlot, replicas int) (string, error) {
	slots = slices.Clone(slots)
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var b strings.Builder
	next := 0
	for _, sl := range slots {
		if sl.Start != next || len(sl.Nodes) == 0 {
			return "", fmt.Errorf("slots %d-%d not covered", next, sl.Start-1)
		}
		if got := len(sl.Nodes) - 1; got != replicas {
			return "", fmt.Errorf("slots %d-%d have %d replicas, want %d", sl.Start, sl.End, got, replicas)
		}
		reps := make([]string, 0, replicas)
		for _, n := range sl.Nodes[1:] {
			reps = append(reps, n.Addr)
		}
		slices.Sort(reps)
		fmt.Fprintf(&b, "%d-%d %s %v\n", sl.Start, sl.End, sl.Nodes[0].Addr, reps)
		next = sl.End + 1
	}
	if next != totalSlots {
		return "", fmt.Errorf("slots %d-%d not covered", next, totalSlots-1)
	}
	return b.String(), nil
}

// Primaries returns the running servers whose ROLE is currently master.
func (c *Cluster) Primaries(ctx context.Context) ([]*Server, error) {
	return serversByRole(ctx, c.Servers, "master")
}

// Replicas returns the running servers whose ROLE is currently slave.
func (c *Cluster) Replicas(ctx context.Context) ([]*Server, error) {
	return serversByRole(ctx, c.Servers, "slave")
}

// serversByRole asks every running server for its ROLE. Stopped servers are
// in no role and skipped rather than reported as errors, so that tests can
// stop a node and still ask who is left.
func serversByRole(ctx context.Context, servers []*Server, want string) ([]*Server, error) {
	var out []*Server
	for _, s := range servers {
		if s.PID() == 0 {
			continue
		}
		r, err := s.role(ctx)
		if err != nil {
			return nil, err
		}
		if r == want {
			out = append(out, s)
		}
	}
	return out, nil
}

// CommandCalls sums Server.CommandCalls over all running nodes, because in a
// cluster a command's calls are spread over the primaries owning the keys.
func (c *Cluster) CommandCalls(ctx context.Context, name string) (int64, error) {
	var sum int64
	for _, s := range c.Servers {
		if s.PID() == 0 {
			continue
		}
		n, err := s.CommandCalls(ctx, name)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// ResetStats runs CONFIG RESETSTAT on all running nodes.
func (c *Cluster) ResetStats(ctx context.Context) error {
	for _, s := range c.Servers {
		if s.PID() == 0 {
			continue
		}
		if err := s.ResetStats(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops all nodes (in parallel, each by pid) and removes their
// directories. It is idempotent.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, s := range c.Servers {
		wg.Go(s.Stop)
	}
	wg.Wait()
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}
