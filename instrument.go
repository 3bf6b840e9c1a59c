package scripthook

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
	"weak"

	"github.com/redis/go-redis/v9"
)

// Instrument installs a new Hook configured by opts on rdb: a *redis.Client
// (standalone or Sentinel), a *redis.ClusterClient or a *redis.Ring. For a
// Cluster or Ring every node and shard gets a hook of its own, those that
// exist already and those created later, all sharing one configuration, one
// body cache and one set of counters. Use New and Hook.Install instead to
// keep the Hook for Register and Stats.
func Instrument(rdb redis.UniversalClient, opts ...Option) error {
	return New(opts...).Install(rdb)
}

// installTimeout bounds how long Install waits to list a cluster's nodes.
const installTimeout = 10 * time.Second

// Install attaches h to rdb the way Instrument does. For a *redis.Client it
// is rdb.AddHook(h). For a ClusterClient or Ring, h traces the logical calls
// and batches at the top, and each node gets its own node hook; Install
// reaches the nodes that exist already (asking the cluster for its nodes,
// which needs it reachable) as well as those created later. Installing on
// the same client twice adds nothing to nodes that have a hook already.
func (h *Hook) Install(rdb redis.UniversalClient) error {
	switch c := rdb.(type) {
	case *redis.Client:
		h.db = strconv.Itoa(c.Options().DB)
		c.AddHook(h)
		return nil
	case *redis.ClusterClient:
		// A cluster has database 0 only.
		c.AddHook(&Hook{sh: h.sh, role: roleTop, db: "0"})
		c.OnNewNode(func(node *redis.Client) { h.attachNode(node, "0") })
		ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
		defer cancel()
		err := c.ForEachShard(ctx, func(_ context.Context, node *redis.Client) error {
			h.attachNode(node, "0")
			return nil
		})
		if err != nil {
			return fmt.Errorf("scripthook: listing the cluster's existing nodes (later nodes are covered): %w", err)
		}
		return nil
	case *redis.Ring:
		db := strconv.Itoa(c.Options().DB)
		c.AddHook(&Hook{sh: h.sh, role: roleTop, db: db})
		c.OnNewNode(func(shard *redis.Client) { h.attachNode(shard, db) })
		// A Ring's shards exist from construction; ForEachShard reaches them
		// without a network round trip.
		return c.ForEachShard(context.Background(), func(_ context.Context, shard *redis.Client) error {
			h.attachNode(shard, db)
			return nil
		})
	case nil:
		return fmt.Errorf("scripthook: Install: nil client")
	default:
		return fmt.Errorf("scripthook: Install: unsupported client type %T (want *redis.Client, *redis.ClusterClient or *redis.Ring)", rdb)
	}
}

// attachNode gives a node client its own node hook, once.
func (h *Hook) attachNode(node *redis.Client, db string) {
	if !h.sh.nodes.claim(node) {
		return
	}
	node.AddHook(&Hook{sh: h.sh, node: newNodeState(nodeLimit(h.sh.cfg)), role: roleNode, db: db})
}

// nodeRegistry remembers which node clients have a hook, without keeping
// closed ones alive: both OnNewNode and the walk over existing nodes may
// report the same node.
type nodeRegistry struct {
	mu   sync.Mutex
	seen map[weak.Pointer[redis.Client]]struct{}
}

// claim reports whether the node had no hook yet, and records it.
func (r *nodeRegistry) claim(c *redis.Client) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = make(map[weak.Pointer[redis.Client]]struct{})
	}
	key := weak.Make(c)
	if _, ok := r.seen[key]; ok {
		return false
	}
	if len(r.seen) >= 64 {
		for k := range r.seen {
			if k.Value() == nil {
				delete(r.seen, k)
			}
		}
	}
	r.seen[key] = struct{}{}
	return true
}
