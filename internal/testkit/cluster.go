package testkit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
)

// KeySlot is Redis Cluster's key slot (CRC16/XMODEM of the key, or of its
// hash tag, mod 16384), so that tests can pick keys for a slot without
// asking a server.
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// TagsInSlot returns n distinct tags (prefix-i) that hash to slot.
func TagsInSlot(prefix string, slot, n int) []string {
	var tags []string
	for i := 0; len(tags) < n; i++ {
		tag := prefix + "-" + strconv.Itoa(i)
		if KeySlot(tag) == slot {
			tags = append(tags, tag)
		}
	}
	return tags
}

// StartCluster starts a 3-primary/3-replica cluster of the test's own,
// stopped when the test ends: for tests that flush, reshard or fail over
// nodes while other tests run (redistest.SharedCluster is for tests that
// do none of that). It skips like redistest.Require when Redis is not
// installed.
func StartCluster(t testing.TB) *redistest.Cluster {
	t.Helper()
	redistest.Require(t)
	c, err := redistest.NewCluster(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	t.Logf("testkit: %s cluster on %v", redistest.ServerVersion(), c.Addrs)
	return c
}

// ClusterRig is a cluster with a ClusterClient without any hook (Plain: the
// reference for every result, and for setup) and an admin client for every
// node, by address.
type ClusterRig struct {
	C     *redistest.Cluster
	Plain *redis.ClusterClient
	Admin map[string]*redis.Client
}

// NewClusterRig returns a rig on c; its clients are closed when the test
// ends.
func NewClusterRig(t testing.TB, c *redistest.Cluster) *ClusterRig {
	t.Helper()
	r := &ClusterRig{C: c, Admin: map[string]*redis.Client{}}
	r.Plain = r.Client(t, nil)
	for _, s := range c.Servers {
		a := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { _ = a.Close() })
		r.Admin[s.Addr] = a
	}
	return r
}

// Client returns a new ClusterClient on the rig's cluster without any hook,
// closed when the test ends; tweak adjusts its options. MaxRetries -1 turns
// off the node clients' own retries; the ClusterClient itself still
// re-sends a command after a network error (within MaxRedirects, like MOVED
// and ASK), which could apply it twice, so tests that break connections
// must account for that.
func (r *ClusterRig) Client(t testing.TB, tweak func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{Addrs: r.C.Addrs, MaxRetries: -1, Protocol: 2, DisableIdentity: true}
	if tweak != nil {
		tweak(o)
	}
	cc := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// FlushScripts empties the script cache of every node, replicas included,
// as another client would.
func (r *ClusterRig) FlushScripts(t testing.TB) {
	t.Helper()
	for addr, a := range r.Admin {
		if err := a.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatalf("testkit: SCRIPT FLUSH on %s: %v", addr, err)
		}
	}
}

// Calls sums a command's INFO commandstats calls ("eval", "evalsha",
// "script|load") since the last ResetStats over servers, or over all nodes
// when none are given.
func (r *ClusterRig) Calls(t testing.TB, name string, servers ...*redistest.Server) int64 {
	t.Helper()
	ctx := context.Background()
	if len(servers) == 0 {
		n, err := r.C.CommandCalls(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var sum int64
	for _, s := range servers {
		n, err := s.CommandCalls(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}

// ResetStats zeroes the command counts of every node.
func (r *ClusterRig) ResetStats(t testing.TB) {
	t.Helper()
	if err := r.C.ResetStats(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Server returns the node with that address, or nil.
func (r *ClusterRig) Server(addr string) *redistest.Server {
	for _, s := range r.C.Servers {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Slots returns the slot map as the first node sees it now.
func (r *ClusterRig) Slots(t testing.TB) []redis.ClusterSlot {
	t.Helper()
	//lint:ignore SA1019 go-redis routes by the CLUSTER SLOTS view, so the tests read the same one.
	slots, err := r.Admin[r.C.Addrs[0]].ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return slots
}

// Owner returns the primary that serves slot now.
func (r *ClusterRig) Owner(t testing.TB, slot int) *redistest.Server {
	t.Helper()
	return r.OwnerIn(t, r.Slots(t), slot)
}

// OwnerIn returns the primary that serves slot in the slot map slots.
func (r *ClusterRig) OwnerIn(t testing.TB, slots []redis.ClusterSlot, slot int) *redistest.Server {
	t.Helper()
	for _, sl := range slots {
		if slot >= sl.Start && slot <= sl.End {
			s := r.Server(sl.Nodes[0].Addr)
			if s == nil {
				t.Fatalf("testkit: slot %d is served by %s, which is not a node of the rig", slot, sl.Nodes[0].Addr)
			}
			return s
		}
	}
	t.Fatalf("testkit: slot %d has no owner", slot)
	return nil
}

// Primaries returns the current primaries (there are three).
func (r *ClusterRig) Primaries(t testing.TB) []*redistest.Server {
	t.Helper()
	return r.three(t, "primaries", r.C.Primaries)
}

// Replicas returns the current replicas (there are three).
func (r *ClusterRig) Replicas(t testing.TB) []*redistest.Server {
	t.Helper()
	return r.three(t, "replicas", r.C.Replicas)
}

func (r *ClusterRig) three(t testing.TB, what string, list func(context.Context) ([]*redistest.Server, error)) []*redistest.Server {
	t.Helper()
	servers, err := list(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 3 {
		t.Fatalf("testkit: %d %s, want 3", len(servers), what)
	}
	return servers
}

// TagsOn returns n tags (prefix-i) whose slots the primary s serves now.
func (r *ClusterRig) TagsOn(t testing.TB, prefix string, s *redistest.Server, n int) []string {
	t.Helper()
	slots := r.Slots(t)
	var tags []string
	for i := 0; len(tags) < n; i++ {
		tag := prefix + "-" + strconv.Itoa(i)
		if r.OwnerIn(t, slots, KeySlot(tag)) == s {
			tags = append(tags, tag)
		}
	}
	return tags
}

// TagOn returns a tag whose slot the primary s serves now.
func (r *ClusterRig) TagOn(t testing.TB, prefix string, s *redistest.Server) string {
	t.Helper()
	return r.TagsOn(t, prefix, s, 1)[0]
}

// NodeID returns a node's cluster id (CLUSTER MYID).
func (r *ClusterRig) NodeID(t testing.TB, s *redistest.Server) string {
	t.Helper()
	id, err := r.Admin[s.Addr].Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ReplicaOf returns the replica of the primary p.
func (r *ClusterRig) ReplicaOf(t testing.TB, p *redistest.Server) *redistest.Server {
	t.Helper()
	for _, s := range r.Replicas(t) {
		info, err := r.Admin[s.Addr].Info(context.Background(), "replication").Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "master_port:"+strconv.Itoa(p.Port)+"\r\n") {
			return s
		}
	}
	t.Fatalf("testkit: no replica of %s", p.Addr)
	return nil
}

// Failover runs CLUSTER FAILOVER on a replica (the coordinated manual
// failover: its primary stops writes until the replica has caught up) and
// waits until the replica is primary and the whole cluster agrees.
func (r *ClusterRig) Failover(t testing.TB, replica *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	a := r.Admin[replica.Addr]
	if err := a.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("testkit: CLUSTER FAILOVER on %s: %v", replica.Addr, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		role, err := a.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("testkit: %s did not become primary (ROLE %v, %v)", replica.Addr, role, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.C.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}

// SlotMove moves one slot between primaries the way redis-cli --cluster
// reshard does: IMPORTING on the target, MIGRATING on the source, MIGRATE
// of its keys, then SETSLOT NODE everywhere.
type SlotMove struct {
	r            *ClusterRig
	Slot         int
	From, To     *redistest.Server
	fromID, toID string
}

// NewSlotMove prepares moving slot from its owner to the primary to.
func (r *ClusterRig) NewSlotMove(t testing.TB, slot int, to *redistest.Server) *SlotMove {
	t.Helper()
	from := r.Owner(t, slot)
	if from == to {
		t.Fatalf("testkit: slot %d is on %s already", slot, to.Addr)
	}
	return &SlotMove{r: r, Slot: slot, From: from, To: to, fromID: r.NodeID(t, from), toID: r.NodeID(t, to)}
}

// Begin puts the slot in IMPORTING state on the target and MIGRATING on the
// source: from now on, the source answers ASK for keys it no longer has.
func (m *SlotMove) Begin(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	if err := m.r.Admin[m.To.Addr].Do(ctx, "CLUSTER", "SETSLOT", m.Slot, "IMPORTING", m.fromID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := m.r.Admin[m.From.Addr].Do(ctx, "CLUSTER", "SETSLOT", m.Slot, "MIGRATING", m.toID).Err(); err != nil {
		t.Fatal(err)
	}
}

// Migrate moves the slot's keys named by keys (all of them when keys is
// nil) to the target with one MIGRATE, so that keys of one tag move
// together, and returns how many it asked to move.
func (m *SlotMove) Migrate(t testing.TB, keys []string) int {
	t.Helper()
	ctx := context.Background()
	src := m.r.Admin[m.From.Addr]
	if keys == nil {
		var err error
		keys, err = src.ClusterGetKeysInSlot(ctx, m.Slot, 100000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			return 0
		}
	}
	args := []interface{}{"MIGRATE", "127.0.0.1", m.To.Port, "", 0, 10000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	if err := src.Do(ctx, args...).Err(); err != nil && err.Error() != "NOKEY" {
		t.Fatalf("testkit: MIGRATE %v: %v", keys, err)
	}
	return len(keys)
}

// Finish assigns the slot to the target on every primary (target first, as
// redis-cli does) and waits until the whole cluster agrees.
func (m *SlotMove) Finish(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	order := []*redistest.Server{m.To, m.From}
	for _, p := range m.r.Primaries(t) {
		if p != m.To && p != m.From {
			order = append(order, p)
		}
	}
	for _, s := range order {
		if err := m.r.Admin[s.Addr].Do(ctx, "CLUSTER", "SETSLOT", m.Slot, "NODE", m.toID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.r.C.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}

// MoveSlot moves a slot with all its keys at once.
func (r *ClusterRig) MoveSlot(t testing.TB, slot int, to *redistest.Server) {
	t.Helper()
	m := r.NewSlotMove(t, slot, to)
	m.Begin(t)
	for m.Migrate(t, nil) > 0 {
	}
	m.Finish(t)
}

// Reshard moves a slot while the cluster is in use: the keys go over a hash
// tag at a time (a tag's keys in one MIGRATE), with pauses, so that
// commands meet ASK for a while. Keys must carry a hash tag.
func (r *ClusterRig) Reshard(t testing.TB, slot int, to *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	m := r.NewSlotMove(t, slot, to)
	m.Begin(t)
	for {
		keys, err := r.Admin[m.From.Addr].ClusterGetKeysInSlot(ctx, slot, 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		byTag := map[string][]string{}
		for _, k := range keys {
			tag := k[1:strings.IndexByte(k, '}')]
			byTag[tag] = append(byTag[tag], k)
		}
		for _, keys := range byTag {
			m.Migrate(t, keys)
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	m.Finish(t)
}

// TransientOnly checks that every error callers saw is one a Redis Cluster
// gives while its configuration changes, which go-redis passes on once its
// redirect budget is spent: CLUSTERDOWN (a node briefly sees the cluster or
// the slot as down), TRYAGAIN or LOADING. Never NOSCRIPT, MOVED or ASK.
func TransientOnly(t testing.TB, l *Ledger) {
	t.Helper()
	for msg, n := range l.Errors() {
		if !strings.HasPrefix(msg, "CLUSTERDOWN ") && !strings.HasPrefix(msg, "TRYAGAIN ") &&
			!strings.HasPrefix(msg, "LOADING ") {
			t.Errorf("testkit: %d calls failed with %q, not a transient cluster error", n, msg)
		}
	}
}

// NoScriptSeen counts the calls of the ledger that got a NOSCRIPT error.
func NoScriptSeen(l *Ledger) int {
	n := 0
	for msg, c := range l.Errors() {
		if strings.Contains(msg, "NOSCRIPT") {
			n += c
		}
	}
	return n
}

// LedgerLoad runs ledger calls on a client until stopped: each worker
// loops over a single call, a pipeline of four calls over several tags and
// (unless the load was started without) a transaction of two calls on one
// tag, filing every call in L.
type LedgerLoad struct {
	L    *Ledger
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// LedgerCall queues or runs one ledger call of id on tag's ledger key
// (LedgerScript by EVAL, or a function that does the same).
type LedgerCall func(ctx context.Context, c redis.Cmdable, tag, id string) *redis.Cmd

// evalLedger is LedgerScript by EVAL.
func evalLedger(ctx context.Context, c redis.Cmdable, tag, id string) *redis.Cmd {
	return c.Eval(ctx, LedgerScript, []string{LedgerKey(tag)}, id)
}

// StartLedgerLoad starts workers goroutines on c, spreading their calls
// (LedgerScript by EVAL) over tags; call ids start with prefix.
func StartLedgerLoad(t testing.TB, c redis.UniversalClient, tags []string, workers int, prefix string) *LedgerLoad {
	return StartLedgerLoadOf(t, c, tags, workers, prefix, evalLedger, true)
}

// StartLedgerLoadOf is StartLedgerLoad with the ledger call given, and
// transactions only when tx.
func StartLedgerLoadOf(t testing.TB, c redis.UniversalClient, tags []string, workers int, prefix string, call LedgerCall, tx bool) *LedgerLoad {
	w := &LedgerLoad{L: NewLedger(), done: make(chan struct{})}
	ctx := context.Background()
	kinds := 2
	if tx {
		kinds = 3
	}
	for n := 0; n < workers; n++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-w.done:
					return
				default:
				}
				id := fmt.Sprintf("%s%d-%d", prefix, n, i)
				tag := tags[(n+i)%len(tags)]
				switch i % kinds {
				case 0:
					w.L.RecordCmd(t, tag, id, call(ctx, c, tag, id))
				case 1:
					var calls []*redis.Cmd
					_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
						for j := 0; j < 4; j++ {
							calls = append(calls, call(ctx, p, tags[(n+i+j)%len(tags)], fmt.Sprint(id, "-", j)))
						}
						return nil
					})
					for j, cmd := range calls {
						w.L.RecordCmd(t, tags[(n+i+j)%len(tags)], fmt.Sprint(id, "-", j), cmd)
					}
				case 2:
					var calls []*redis.Cmd
					_, _ = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
						for j := 0; j < 2; j++ {
							calls = append(calls, call(ctx, p, tag, fmt.Sprint(id, "-", j)))
						}
						return nil
					})
					for j, cmd := range calls {
						w.L.RecordCmd(t, tag, fmt.Sprint(id, "-", j), cmd)
					}
				}
			}
		}()
	}
	t.Cleanup(w.Stop) // a test that fails before Stop leaves no worker behind
	return w
}

// Stop ends the load and waits for its workers; it is idempotent.
func (w *LedgerLoad) Stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}
