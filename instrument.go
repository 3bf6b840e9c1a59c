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

// Install attaches h to rdb the way Instrument does. A *redis.Client gets a
// client hook of its own: its own record of what its server has loaded and
// its database index for db.namespace, so one Hook can serve many clients.
// For a ClusterClient or Ring, h traces the logical calls and batches at the
// top, and each node gets its own node hook; Install reaches the nodes that
// exist already (asking the cluster for its nodes, which needs it reachable)
// as well as those created later. Call it before the client's first use.
//
// Installing h on the same client again adds no hook anywhere: it only
// walks the nodes once more. After an error for an unreachable cluster,
// nodes the client creates from then on get their hook anyway; calling
// Install again once the cluster is reachable reaches any created before.
func (h *Hook) Install(rdb redis.UniversalClient) error {
	sh := h.sh
	switch c := rdb.(type) {
	case *redis.Client:
		if claim(&sh.claimed, c) {
			o := c.Options()
			c.AddHook(newClientHook(sh, strconv.Itoa(o.DB), o.Addr))
		}
		return nil
	case *redis.ClusterClient:
		if claim(&sh.claimed, c) {
			// A cluster has database 0 only.
			c.AddHook(&topHook{sh: sh, db: "0"})
			readRouted := c.Options().ReadOnly // set by RouteByLatency and RouteRandomly too
			c.OnNewNode(func(node *redis.Client) { sh.attachNode(node, "0", true, readRouted) })
		}
		ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
		defer cancel()
		err := c.ForEachShard(ctx, func(_ context.Context, node *redis.Client) error {
			sh.attachNode(node, "0", true, c.Options().ReadOnly)
			return nil
		})
		if err != nil {
			return fmt.Errorf("scripthook: cannot list the cluster's nodes (nodes the client creates from now on still get their hook; Install again once the cluster is reachable): %w", err)
		}
		return nil
	case *redis.Ring:
		db := strconv.Itoa(c.Options().DB)
		if claim(&sh.claimed, c) {
			c.AddHook(&topHook{sh: sh, db: db})
			c.OnNewNode(func(shard *redis.Client) { sh.attachNode(shard, db, false, false) })
		}
		// A Ring's shards exist from construction; ForEachShard reaches them
		// without a network round trip. It skips shards the Ring's heartbeat
		// has marked down, hence: install before first use.
		return c.ForEachShard(context.Background(), func(_ context.Context, shard *redis.Client) error {
			sh.attachNode(shard, db, false, false)
			return nil
		})
	case nil:
		return fmt.Errorf("scripthook: Install: nil client")
	default:
		return fmt.Errorf("scripthook: Install: unsupported client type %T (want *redis.Client, *redis.ClusterClient or *redis.Ring)", rdb)
	}
}

// attachNode gives a node client its own node hook, once. cluster says the
// node belongs to a ClusterClient (see engine.cluster), readRouted that
// the ClusterClient sends read-only commands to replicas.
func (sh *shared) attachNode(node *redis.Client, db string, cluster, readRouted bool) {
	if !claim(&sh.claimed, node) {
		return
	}
	n := &nodeHook{engine: engine{sh: sh, srv: sh.newServerState(), cluster: cluster, readRouted: readRouted}, db: db}
	addr := node.Options().Addr
	n.srv.addr.Store(&addr)
	node.AddHook(n)
}

// registry remembers which clients and node clients have a hook, without
// keeping closed ones alive: both OnNewNode and the walk over existing nodes
// may report the same node, and Install may be called again.
type registry struct {
	mu sync.Mutex
	// seen maps a weak.Pointer (to a Client, ClusterClient or Ring) to a
	// func that reports whether it still points to something.
	seen map[any]func() bool
}

// claim reports whether c had no hook of r's yet, and records it.
func claim[T any](r *registry, c *T) bool {
	key := weak.Make(c)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = make(map[any]func() bool)
	}
	if _, ok := r.seen[key]; ok {
		return false
	}
	if len(r.seen) >= 64 {
		for k, alive := range r.seen {
			if !alive() {
				delete(r.seen, k)
			}
		}
	}
	r.seen[key] = func() bool { return key.Value() != nil }
	return true
}
