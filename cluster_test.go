package scripthook_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// countScript is the exactly-once probe: every call increments its tag's
// counter and appends its own call id to the tag's list, in one atomic
// step, and returns both. Afterwards each id must be in the list once, and
// the counter must equal the list's length.
const countScript = "local n = redis.call('INCR', KEYS[1]) redis.call('RPUSH', KEYS[2], ARGV[1]) return {n, ARGV[1]}"

// countKeys are the two keys of countScript for a tag; the hash tag keeps
// them in one slot.
func countKeys(tag string) []string { return []string{"{" + tag + "}:n", "{" + tag + "}:ids"} }

// keySlot is Redis Cluster's key slot (CRC16/XMODEM of the hash tag, mod
// 16384), so tests can pick keys for a given slot without asking a server.
func keySlot(key string) int {
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

// tagsInSlot returns n distinct tags (prefix-i) whose keys hash to slot.
func tagsInSlot(prefix string, slot, n int) []string {
	var tags []string
	for i := 0; len(tags) < n; i++ {
		tag := prefix + "-" + strconv.Itoa(i)
		if keySlot(tag) == slot {
			tags = append(tags, tag)
		}
	}
	return tags
}

// clusterRig is the shared cluster with a plain ClusterClient (the
// reference, and for setup) and admin clients for every node.
type clusterRig struct {
	c     *redistest.Cluster
	plain *redis.ClusterClient
	admin map[string]*redis.Client // by address
}

func newClusterRig(t *testing.T) *clusterRig {
	t.Helper()
	c := redistest.SharedCluster(t)
	r := &clusterRig{c: c, admin: map[string]*redis.Client{}}
	r.plain = r.client(t, nil)
	for _, s := range c.Servers {
		a := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { _ = a.Close() })
		r.admin[s.Addr] = a
	}
	return r
}

// client returns a ClusterClient on the shared cluster without any hook;
// tweak adjusts its options. MaxRetries -1 turns off the node clients' own
// retries; the ClusterClient itself still re-sends a command after a
// network error (within MaxRedirects, like MOVED and ASK), which could
// apply it twice. The cluster tests break no connection, and the ledger
// would report such a double application as a failure.
func (r *clusterRig) client(t *testing.T, tweak func(*redis.ClusterOptions)) *redis.ClusterClient {
	t.Helper()
	o := &redis.ClusterOptions{Addrs: r.c.Addrs, MaxRetries: -1, Protocol: 2, DisableIdentity: true}
	if tweak != nil {
		tweak(o)
	}
	cc := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// hooked returns a new ClusterClient with a new Hook installed on it before
// first use, so every node it ever creates gets its node hook, and a wireLog
// behind each node hook.
func (r *clusterRig) hooked(t *testing.T, tweak func(*redis.ClusterOptions), opts ...scripthook.Option) (*redis.ClusterClient, *scripthook.Hook, *wireLog) {
	t.Helper()
	cc := r.client(t, tweak)
	h := scripthook.New(append([]scripthook.Option{scripthook.WithTracing(false)}, opts...)...)
	require.NoError(t, h.Install(cc))
	w := &wireLog{}
	w.watch(t, cc)
	return cc, h, w
}

// flushScripts empties the script cache of every node, replicas included.
func (r *clusterRig) flushScripts(t *testing.T) {
	t.Helper()
	for _, a := range r.admin {
		require.NoError(t, a.ScriptFlush(context.Background()).Err())
	}
}

// calls sums a command's calls over servers (all nodes when none given).
func (r *clusterRig) calls(t *testing.T, name string, servers ...*redistest.Server) int64 {
	t.Helper()
	if len(servers) == 0 {
		n, err := r.c.CommandCalls(context.Background(), name)
		require.NoError(t, err)
		return n
	}
	var sum int64
	for _, s := range servers {
		n, err := s.CommandCalls(context.Background(), name)
		require.NoError(t, err)
		sum += n
	}
	return sum
}

func (r *clusterRig) resetStats(t *testing.T) {
	t.Helper()
	require.NoError(t, r.c.ResetStats(context.Background()))
}

// server returns the cluster node with that address.
func (r *clusterRig) server(addr string) *redistest.Server {
	for _, s := range r.c.Servers {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// slots returns the cluster's slot map as one node sees it now.
func (r *clusterRig) slots(t *testing.T) []redis.ClusterSlot {
	t.Helper()
	slots, err := r.admin[r.c.Addrs[0]].ClusterSlots(context.Background()).Result()
	require.NoError(t, err)
	return slots
}

// owner returns the primary that serves slot, as the cluster sees it now.
func (r *clusterRig) owner(t *testing.T, slot int) *redistest.Server {
	t.Helper()
	return r.ownerIn(t, r.slots(t), slot)
}

func (r *clusterRig) ownerIn(t *testing.T, slots []redis.ClusterSlot, slot int) *redistest.Server {
	t.Helper()
	for _, sl := range slots {
		if slot >= sl.Start && slot <= sl.End {
			s := r.server(sl.Nodes[0].Addr)
			require.NotNil(t, s)
			return s
		}
	}
	t.Fatalf("slot %d has no owner", slot)
	return nil
}

// primaries returns the current primaries.
func (r *clusterRig) primaries(t *testing.T) []*redistest.Server {
	return r.three(t, r.c.Primaries)
}

// replicas returns the current replicas.
func (r *clusterRig) replicas(t *testing.T) []*redistest.Server {
	return r.three(t, r.c.Replicas)
}

// three asks the cluster for the servers in one role: there are three.
func (r *clusterRig) three(t *testing.T, list func(context.Context) ([]*redistest.Server, error)) []*redistest.Server {
	t.Helper()
	servers, err := list(context.Background())
	require.NoError(t, err)
	require.Len(t, servers, 3)
	return servers
}

// tagsOn returns n tags (prefix-i) whose slots the primary s serves now.
func (r *clusterRig) tagsOn(t *testing.T, prefix string, s *redistest.Server, n int) []string {
	t.Helper()
	slots := r.slots(t)
	var tags []string
	for i := 0; len(tags) < n; i++ {
		tag := prefix + "-" + strconv.Itoa(i)
		if r.ownerIn(t, slots, keySlot(tag)) == s {
			tags = append(tags, tag)
		}
	}
	return tags
}

// tagOn returns a tag whose slot the primary s serves now.
func (r *clusterRig) tagOn(t *testing.T, prefix string, s *redistest.Server) string {
	t.Helper()
	return r.tagsOn(t, prefix, s, 1)[0]
}

func (r *clusterRig) nodeID(t *testing.T, s *redistest.Server) string {
	t.Helper()
	id, err := r.admin[s.Addr].Do(context.Background(), "CLUSTER", "MYID").Text()
	require.NoError(t, err)
	return id
}

// slotMove moves one slot between primaries the way redis-cli --cluster
// reshard does: IMPORTING on the target, MIGRATING on the source, MIGRATE
// of its keys, then SETSLOT NODE everywhere.
type slotMove struct {
	r            *clusterRig
	slot         int
	from, to     *redistest.Server
	fromID, toID string
}

func (r *clusterRig) newSlotMove(t *testing.T, slot int, to *redistest.Server) *slotMove {
	t.Helper()
	from := r.owner(t, slot)
	require.NotEqual(t, from, to)
	return &slotMove{r: r, slot: slot, from: from, to: to, fromID: r.nodeID(t, from), toID: r.nodeID(t, to)}
}

// begin puts the slot in IMPORTING state on the target and MIGRATING on the
// source: from now on, the source answers ASK for keys it no longer has.
func (m *slotMove) begin(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, m.r.admin[m.to.Addr].Do(ctx, "CLUSTER", "SETSLOT", m.slot, "IMPORTING", m.fromID).Err())
	require.NoError(t, m.r.admin[m.from.Addr].Do(ctx, "CLUSTER", "SETSLOT", m.slot, "MIGRATING", m.toID).Err())
}

// migrate moves the slot's keys named by keys (all of them when keys is
// nil) to the target with one MIGRATE, so keys of one tag move together.
func (m *slotMove) migrate(t *testing.T, keys []string) int {
	t.Helper()
	ctx := context.Background()
	src := m.r.admin[m.from.Addr]
	if keys == nil {
		var err error
		keys, err = src.ClusterGetKeysInSlot(ctx, m.slot, 100000).Result()
		require.NoError(t, err)
		if len(keys) == 0 {
			return 0
		}
	}
	args := []interface{}{"MIGRATE", "127.0.0.1", m.to.Port, "", 0, 10000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	err := src.Do(ctx, args...).Err()
	if err != nil && err.Error() != "NOKEY" {
		require.NoError(t, err)
	}
	return len(keys)
}

// finish assigns the slot to the target on every primary (target first, as
// redis-cli does) and waits until the whole cluster agrees.
func (m *slotMove) finish(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	order := []*redistest.Server{m.to, m.from}
	for _, p := range m.r.primaries(t) {
		if p != m.to && p != m.from {
			order = append(order, p)
		}
	}
	for _, s := range order {
		require.NoError(t, m.r.admin[s.Addr].Do(ctx, "CLUSTER", "SETSLOT", m.slot, "NODE", m.toID).Err())
	}
	require.NoError(t, m.r.c.WaitHealthy(ctx))
}

// moveSlot moves a slot completely (used to put it back after a test).
func (r *clusterRig) moveSlot(t *testing.T, slot int, to *redistest.Server) {
	t.Helper()
	m := r.newSlotMove(t, slot, to)
	m.begin(t)
	for m.migrate(t, nil) > 0 {
	}
	m.finish(t)
}

// callID names one call of countScript: its tag and an id unique within it.
type callID struct{ tag, id string }

// ledger records the outcome of every call of a counting workload.
type ledger struct {
	mu     sync.Mutex
	ok     map[callID]bool // calls that returned success
	failed map[callID]bool // calls that returned an error: effect unknown
	errs   map[string]int  // error text -> count
}

func newLedger() *ledger {
	return &ledger{ok: map[callID]bool{}, failed: map[callID]bool{}, errs: map[string]int{}}
}

// record checks one reply of countScript and files the call. A success must
// carry the call's own id: a reply read into the wrong command shows here.
func (l *ledger) record(t *testing.T, tag, id string, cmd *redis.Cmd) {
	v, err := cmd.Result()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := callID{tag, id}
	if l.ok[c] || l.failed[c] {
		t.Errorf("call %v recorded twice", c)
	}
	if err != nil {
		l.failed[c] = true
		l.errs[err.Error()]++
		return
	}
	l.ok[c] = true
	reply, _ := v.([]interface{})
	if assert.Len(t, reply, 2, "call %v", c) {
		assert.Equal(t, id, reply[1], "call %v got another call's reply", c)
	}
}

// transientOnly checks that every failed call failed with an error a Redis
// Cluster gives while its configuration changes, which go-redis passes on
// once its redirect budget is spent: CLUSTERDOWN (a node briefly sees the
// cluster or the slot as down), TRYAGAIN or LOADING. Never NOSCRIPT, MOVED
// or ASK. (With a SCRIPT LOAD first in a node's part of a pipeline, go-redis
// does not re-send that part when the first caller command of it draws such
// an error; see the README.)
func (l *ledger) transientOnly(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for msg, n := range l.errs {
		transient := strings.HasPrefix(msg, "CLUSTERDOWN ") || strings.HasPrefix(msg, "TRYAGAIN ") ||
			strings.HasPrefix(msg, "LOADING ")
		assert.True(t, transient, "%d calls failed with %q", n, msg)
	}
}

// noScript counts the calls that failed with NOSCRIPT.
func (l *ledger) noScript() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for msg, c := range l.errs {
		if strings.Contains(msg, "NOSCRIPT") {
			n += c
		}
	}
	return n
}

// counts returns how many calls succeeded and failed.
func (l *ledger) counts() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ok), len(l.failed)
}

// verify proves exactly-once, reading through rdb (a client without the
// hook): every successful call's id is in its tag's list exactly once, a
// failed call's id at most once (the caller cannot know whether it ran), no
// other id is there, and every counter equals its list's length. Keys are
// deleted afterwards.
func (l *ledger) verify(t *testing.T, rdb redis.Cmdable) {
	t.Helper()
	ctx := context.Background()
	l.mu.Lock()
	defer l.mu.Unlock()
	tags := map[string]bool{}
	for c := range l.ok {
		tags[c.tag] = true
	}
	for c := range l.failed {
		tags[c.tag] = true
	}
	seen := map[callID]int{}
	for tag := range tags {
		keys := countKeys(tag)
		ids, err := rdb.LRange(ctx, keys[1], 0, -1).Result()
		require.NoError(t, err)
		n, err := rdb.Get(ctx, keys[0]).Int()
		if err == redis.Nil {
			n, err = 0, nil
		}
		require.NoError(t, err)
		assert.Equal(t, len(ids), n, "tag %s: counter and list disagree", tag)
		for _, id := range ids {
			seen[callID{tag, id}]++
		}
		for _, k := range keys {
			require.NoError(t, rdb.Del(ctx, k).Err())
		}
	}
	applied := 0
	for c, n := range seen {
		switch {
		case !l.ok[c] && !l.failed[c]:
			t.Errorf("unknown call %v applied", c)
		case n > 1:
			t.Errorf("call %v applied %d times", c, n)
		}
		if l.failed[c] {
			applied++
		}
	}
	for c := range l.ok {
		if seen[c] != 1 {
			t.Errorf("successful call %v applied %d times", c, seen[c])
		}
	}
	t.Logf("exactly once: %d calls succeeded, %d failed (%d of those applied); errors: %v",
		len(l.ok), len(l.failed), applied, l.errs)
}

// wireLog is a hook that sits after scripthook on every node client (added
// by OnNewNode after Install): it sees the commands scripthook sends and the
// replies as they come, redirects included.
type wireLog struct {
	mu       sync.Mutex
	batches  []wireBatch
	moved    int
	ask      int
	noScript int
}

// wireBatch is one batch as a node hook passed it on.
type wireBatch struct {
	addr  string
	names []string
	// bodies are the script bodies the batch carries (EVAL, EVAL_RO and
	// SCRIPT LOAD).
	bodies []string
}

// watch adds the wireLog to every node of the client, after the hooks it
// has (call it right after Install, which already created the nodes it
// could list).
func (w *wireLog) watch(t *testing.T, cc *redis.ClusterClient) {
	t.Helper()
	add := func(n *redis.Client) { n.AddHook(nodeWire{w, n.Options().Addr}) }
	cc.OnNewNode(add)
	require.NoError(t, cc.ForEachShard(context.Background(), func(_ context.Context, n *redis.Client) error {
		add(n)
		return nil
	}))
}

func (w *wireLog) note(err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "MOVED "):
		w.moved++
	case strings.HasPrefix(msg, "ASK "):
		w.ask++
	case strings.HasPrefix(msg, "NOSCRIPT"):
		w.noScript++
	}
}

func (w *wireLog) redirects() (moved, ask int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.moved, w.ask
}

func (w *wireLog) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batches, w.moved, w.ask, w.noScript = nil, 0, 0, 0
}

// bodiesOncePerBatch checks that no batch sent to a node carries the same
// script body twice, and returns how many bodies went out.
func (w *wireLog) bodiesOncePerBatch(t *testing.T) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, b := range w.batches {
		seen := map[string]bool{}
		for _, body := range b.bodies {
			assert.False(t, seen[body], "a body went to %s twice in one batch: %v", b.addr, b.names)
			seen[body] = true
			n++
		}
	}
	return n
}

// batchNames returns the names of the commands of every batch sent.
func (w *wireLog) batchNames() [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out [][]string
	for _, b := range w.batches {
		out = append(out, b.names)
	}
	return out
}

type nodeWire struct {
	w    *wireLog
	addr string
}

func (n nodeWire) DialHook(next redis.DialHook) redis.DialHook { return next }

func (n nodeWire) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		n.w.note(err)
		return err
	}
}

func (n nodeWire) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		b := wireBatch{addr: n.addr}
		for _, c := range cmds {
			name := c.Name()
			args := c.Args()
			switch name {
			case "script":
				name = "script load"
				b.bodies = append(b.bodies, fmt.Sprint(args[2]))
			case "eval", "eval_ro":
				b.bodies = append(b.bodies, fmt.Sprint(args[1]))
			}
			b.names = append(b.names, name)
		}
		n.w.mu.Lock()
		n.w.batches = append(n.w.batches, b)
		n.w.mu.Unlock()
		err := next(ctx, cmds)
		for _, c := range cmds {
			n.w.note(c.Err())
		}
		return err
	}
}

// clusterBatch runs one pipeline or transaction and renders every reply and
// the Exec error, like runBatch does for a Client.
func clusterBatch(ctx context.Context, rdb redis.UniversalClient, tx bool, fn func(p redis.Pipeliner)) []string {
	var cmds []redis.Cmder
	var err error
	f := func(p redis.Pipeliner) error { fn(p); return nil }
	if tx {
		cmds, err = rdb.TxPipelined(ctx, f)
	} else {
		cmds, err = rdb.Pipelined(ctx, f)
	}
	out := make([]string, 0, len(cmds)+1)
	for _, c := range cmds {
		out = append(out, outcome(c))
	}
	return append(out, fmt.Sprintf("exec: %v", err))
}

// Every node has a node hook of its own, whether the client created it
// before Install (found through the cluster's node list) or after
// (OnNewNode), replicas included; each knows only what its own server has
// loaded. Counted on every server.
func TestClusterNodeHooks(t *testing.T) {
	r := newClusterRig(t)
	ps, reps := r.primaries(t), r.replicas(t)
	for _, when := range []string{"nodes created after Install", "nodes created before Install"} {
		t.Run(when, func(t *testing.T) {
			ctx := t.Context()
			cc := r.client(t, nil)
			if when == "nodes created before Install" {
				require.NoError(t, cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
					return n.Ping(ctx).Err()
				}))
			}
			h := scripthook.New(scripthook.WithTracing(false))
			require.NoError(t, h.Install(cc))
			r.flushScripts(t)
			r.resetStats(t)
			l := newLedger()
			tags := make([]string, len(ps))
			for i, p := range ps {
				tags[i] = r.tagOn(t, "hooks", p)
				for j := 0; j < 3; j++ {
					id := fmt.Sprint(j)
					l.record(t, tags[i], id, cc.Eval(ctx, countScript, countKeys(tags[i]), id))
				}
				assert.Equal(t, int64(1), r.calls(t, "eval", p), "%s: the body once", p.Addr)
				assert.Equal(t, int64(2), r.calls(t, "evalsha", p), "%s: then by SHA1", p.Addr)
			}
			// Replicas have their own node hooks too (a keyless read-only
			// script runs on a replica without READONLY).
			require.NoError(t, cc.ForEachSlave(ctx, func(ctx context.Context, n *redis.Client) error {
				for j := 0; j < 2; j++ {
					if err := n.EvalRO(ctx, "return 'replica'", nil).Err(); err != nil {
						return err
					}
				}
				return nil
			}))
			for _, s := range reps {
				assert.Equal(t, int64(1), r.calls(t, "eval_ro", s), "%s", s.Addr)
				assert.Equal(t, int64(1), r.calls(t, "evalsha_ro", s), "%s", s.Addr)
			}
			st := h.Stats()
			assert.Zero(t, st.NoScriptRepaired, "no node believed another node's script was its own")
			assert.Equal(t, int64(len(ps)*2+len(reps)), st.Rewritten)

			// A flush on one primary costs that primary one repair; the others
			// go on by SHA1.
			require.NoError(t, r.admin[ps[0].Addr].ScriptFlush(ctx).Err())
			r.resetStats(t)
			for i := range ps {
				l.record(t, tags[i], "after flush", cc.Eval(ctx, countScript, countKeys(tags[i]), "after flush"))
			}
			assert.Equal(t, int64(1), r.calls(t, "eval", ps[0]), "the flushed primary got the body again")
			assert.Equal(t, int64(0), r.calls(t, "eval", ps[1:]...))
			assert.Equal(t, int64(3), r.calls(t, "evalsha"))
			assert.Equal(t, int64(1), h.Stats().NoScriptRepaired)
			assert.Zero(t, h.Stats().NoScriptPassed)
			l.verify(t, r.plain)
		})
	}
}

// clusterOp queues (or, for single commands, runs) one command on tag's
// keys; sha says whether the registered script goes by SHA1 (the reference
// client always sends its body).
type clusterOp func(ctx context.Context, c doer, tag string, sha bool) redis.Cmder

// doer is what clients and pipelines have in common.
type doer interface {
	redis.Cmdable
	Do(ctx context.Context, args ...interface{}) *redis.Cmd
}

func cEval(body string, nkeys int, args ...interface{}) clusterOp {
	return func(ctx context.Context, c doer, tag string, _ bool) redis.Cmder {
		keys := []string{"{" + tag + "}:a", "{" + tag + "}:b"}[:nkeys]
		return c.Eval(ctx, body, keys, args...)
	}
}

func cReg(arg int) clusterOp {
	return func(ctx context.Context, c doer, tag string, sha bool) redis.Cmder {
		keys := []string{"{" + tag + "}:r"}
		if sha {
			return c.EvalSha(ctx, redis.NewScript(regScript).Hash(), keys, arg)
		}
		return c.Eval(ctx, regScript, keys, arg)
	}
}

func cSet(v string) clusterOp {
	return func(ctx context.Context, c doer, tag string, _ bool) redis.Cmder {
		return c.Do(ctx, "set", "{"+tag+"}:a", v)
	}
}

// clusterShape is a mix of script commands for tags on every primary.
var clusterShape = []struct {
	tag int // index into the tags, one per primary and a fourth
	op  clusterOp
}{
	{0, cSet("1")},
	{0, cEval(counterScript, 1)},
	{1, cEval(counterScript, 1)},
	{2, cEval(counterScript, 1)},
	{0, cEval(echoScript, 0, "keyless")},
	{1, cReg(2)},
	{2, cEval(brokenScript, 1)},
	{2, cEval("return redis.error_reply('MYERR custom')", 1)},
	{0, cEval(counterScript, 1)},
	{1, cSet("str")},
	{1, cEval(counterScript, 1)}, // a WRONGTYPE-free runtime error: INCR on "str"
	{3, cEval(counterScript, 2)},
	{2, cReg(3)},
	{0, cEval("return nil", 1)},
	{3, cEval(echoScript, 2, "two keys")},
}

// Single commands and pipelines on a ClusterClient give exactly what plain
// EVAL gives, cold, warm and after SCRIPT FLUSH on every node; a pipeline
// carries a script's body at most once per node.
func TestClusterSameResultsAsPlain(t *testing.T) {
	r := newClusterRig(t)
	ps := r.primaries(t)
	rdb, h, w := r.hooked(t, nil)
	h.Register("incrby", regScript)
	tagsFor := func(prefix string) []string {
		var tags []string
		for _, p := range ps {
			tags = append(tags, r.tagOn(t, prefix, p))
		}
		return append(tags, r.tagOn(t, prefix+"-x", ps[0]))
	}
	hookTags, plainTags := tagsFor("same-h"), tagsFor("same-p")
	clean := func() {
		for _, tags := range [][]string{hookTags, plainTags} {
			for _, tag := range tags {
				require.NoError(t, r.plain.Del(t.Context(), "{"+tag+"}:a", "{"+tag+"}:b", "{"+tag+"}:r").Err())
			}
		}
	}
	run := func(ctx context.Context, c redis.UniversalClient, tags []string, sha bool, how string) []string {
		switch how {
		case "single":
			var out []string
			for _, s := range clusterShape {
				out = append(out, outcome(s.op(ctx, c, tags[s.tag], sha)))
			}
			return out
		default:
			return clusterBatch(ctx, c, false, func(p redis.Pipeliner) {
				for _, s := range clusterShape {
					s.op(ctx, p, tags[s.tag], sha)
				}
			})
		}
	}
	for _, how := range []string{"single", "pipeline"} {
		for _, state := range []string{"cold", "warm", "flushed"} {
			t.Run(how+"/"+state, func(t *testing.T) {
				ctx := t.Context()
				clean()
				want := run(ctx, r.plain, plainTags, false, how)
				r.flushScripts(t)
				if state != "cold" {
					run(ctx, rdb, hookTags, true, how)
				}
				if state == "flushed" {
					r.flushScripts(t)
				}
				clean()
				r.resetStats(t)
				w.reset()
				got := run(ctx, rdb, hookTags, true, how)
				assert.Equal(t, want, got)
				if how == "pipeline" {
					// At most one body per script per node, and only the
					// bodies the wire shows went out.
					assert.Equal(t, int64(w.bodiesOncePerBatch(t)), r.calls(t, "eval")+r.calls(t, "script|load"))
				}
			})
		}
	}
	assert.Zero(t, h.Stats().NoScriptPassed)
	clean()
}

// A cluster pipeline sends each script's body once per node per batch in
// strict mode (as SCRIPT LOAD, see TestClusterRedirects) and everything else
// by SHA1; in optimistic mode warm batches carry no body, and after SCRIPT
// FLUSH each node's part is retried once with the body.
func TestClusterPipelineBodies(t *testing.T) {
	r := newClusterRig(t)
	ps := r.primaries(t)
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.tagsOn(t, "bodies", p, 5)...)
	}
	const perTag = 20
	batch := func(t *testing.T, rdb *redis.ClusterClient, l *ledger, b int) {
		var calls []*redis.Cmd
		_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
			for i := 0; i < perTag; i++ {
				for _, tag := range tags {
					calls = append(calls, p.Eval(t.Context(), countScript, countKeys(tag), fmt.Sprint(b, "-", i)))
				}
			}
			return nil
		})
		require.NoError(t, err)
		for i, c := range calls {
			l.record(t, tags[i%len(tags)], fmt.Sprint(b, "-", i/len(tags)), c)
		}
	}
	// bodies checks each primary's bodies and that it ran every call once.
	bodies := func(t *testing.T, want, batches int) {
		for _, p := range ps {
			assert.Equal(t, int64(want), r.calls(t, "script|load", p)+r.calls(t, "eval", p), "%s: bodies", p.Addr)
			assert.Equal(t, int64(batches*perTag*5), r.calls(t, "eval", p)+r.calls(t, "evalsha", p), "%s: every call once", p.Addr)
		}
	}
	t.Run("strict", func(t *testing.T) {
		rdb, _, _ := r.hooked(t, nil)
		r.flushScripts(t)
		r.resetStats(t)
		l := newLedger()
		for b := 0; b < 3; b++ {
			batch(t, rdb, l, b)
		}
		bodies(t, 3, 3)
		l.verify(t, r.plain)
	})
	t.Run("optimistic", func(t *testing.T) {
		rdb, h, _ := r.hooked(t, nil, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
		r.flushScripts(t)
		l := newLedger()
		batch(t, rdb, l, 0)
		r.resetStats(t)
		batch(t, rdb, l, 1)
		batch(t, rdb, l, 2)
		bodies(t, 0, 2)
		r.flushScripts(t)
		r.resetStats(t)
		batch(t, rdb, l, 3)
		for _, p := range ps {
			assert.Equal(t, int64(1), r.calls(t, "script|load", p)+r.calls(t, "eval", p), "%s: one retry with the body", p.Addr)
		}
		assert.Zero(t, h.Stats().NoScriptPassed)
		l.verify(t, r.plain)
	})
}

// go-redis's cluster AutoPipeliner merges independent callers' commands into
// per-node batches: each caller gets its own reply, every call runs once and
// no NOSCRIPT reaches a caller, with SCRIPT FLUSH on every node meanwhile.
func TestClusterAutoPipeline(t *testing.T) {
	r := newClusterRig(t)
	rdb, h, _ := r.hooked(t, nil)
	ap, err := rdb.AutoPipeline()
	require.NoError(t, err)
	defer ap.Close()
	var tags []string
	for _, p := range r.primaries(t) {
		tags = append(tags, r.tagsOn(t, "autopipe", p, 2)...)
	}
	r.flushScripts(t)
	l := newLedger()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				tag, id := tags[(w+i)%len(tags)], fmt.Sprint(w, "-", i)
				l.record(t, tag, id, ap.Eval(t.Context(), countScript, countKeys(tag), id))
				if w == 0 && i%25 == 0 {
					for _, a := range r.admin {
						assert.NoError(t, a.ScriptFlush(t.Context()).Err())
					}
				}
			}
		}()
	}
	wg.Wait()
	l.verify(t, r.plain)
	assert.Zero(t, l.noScript())
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// A cluster transaction reaches its node hook as [MULTI, ..., EXEC], and
// go-redis reads its replies into the caller's commands: the node hook
// sends exactly that many commands. Scripts inside work after SCRIPT FLUSH
// on every node, with the results of plain EVAL; so do WATCH transactions.
func TestClusterTxPipeline(t *testing.T) {
	r := newClusterRig(t)
	ctx := t.Context()
	rdb, h, w := r.hooked(t, nil)
	h.Register("incrby", regScript)
	shape := []clusterOp{
		cEval(counterScript, 1),
		cReg(2),
		cSet("5"),
		cEval(counterScript, 1),
		cReg(3),
		cEval(echoScript, 0, "keyless"),
	}
	tx := func(c redis.UniversalClient, tag string, sha bool) []string {
		return clusterBatch(ctx, c, true, func(p redis.Pipeliner) {
			for _, op := range shape {
				op(ctx, p, tag, sha)
			}
		})
	}
	var want [][]string
	for i := 0; i < 2; i++ {
		want = append(want, tx(r.plain, "tx-p", false))
	}
	for _, state := range []string{"flushed", "warm"} {
		r.flushScripts(t)
		if state == "warm" {
			tx(rdb, "tx-warmup", true)
		}
		w.reset()
		got := [][]string{tx(rdb, "tx-"+state, true), tx(rdb, "tx-"+state, true)}
		assert.Equal(t, want, got, state)
		for _, names := range w.batchNames() {
			// Strict in every transaction: the first EVAL carries the body,
			// the first EVALSHA of the registered script goes as EVAL (a
			// SCRIPT LOAD would be one command too many), the rest by SHA1.
			assert.Equal(t, []string{"multi", "eval", "eval", "set", "evalsha", "evalsha", "eval", "exec"}, names, state)
		}
		assert.Len(t, w.batchNames(), 2)
	}

	// WATCH transactions go through the node's hook too (go-redis runs them
	// on the node client).
	watch := func(c *redis.ClusterClient, tag string, sha bool) ([]string, error) {
		var out []string
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, op := range shape {
					op(ctx, p, tag, sha)
				}
				return nil
			})
			for _, c := range cmds {
				out = append(out, outcome(c))
			}
			return err
		}, "{"+tag+"}:a")
		return out, err
	}
	r.flushScripts(t)
	wantW, wantErr := watch(r.plain, "txw-p", false)
	gotW, gotErr := watch(rdb, "txw-h", true)
	assert.Equal(t, wantW, gotW)
	assert.Equal(t, wantErr, gotErr)
	assert.Zero(t, h.Stats().NoScriptPassed)
	for _, tag := range []string{"tx-p", "tx-flushed", "tx-warm", "tx-warmup", "txw-p", "txw-h"} {
		require.NoError(t, r.plain.Del(ctx, "{"+tag+"}:a", "{"+tag+"}:r").Err())
	}
}

// redirectKinds run the same calls on a tag whose slot is moving (moving),
// another tag of that slot (other) and a tag of another slot on the node
// that answers the redirects (stay). sha: the registered script goes by
// SHA1. Every countScript call is filed in the ledger.
var redirectKinds = []struct {
	name string
	run  func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *ledger, pre, moving, other, stay string, sha bool) []string
}{
	{"single", func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *ledger, pre, moving, other, stay string, sha bool) []string {
		e := c.Eval(ctx, countScript, countKeys(moving), pre+"single")
		l.record(t, moving, pre+"single", e)
		reg := cReg(4)(ctx, c, moving, sha)
		return []string{outcome(e), outcome(reg)}
	}},
	{"pipeline", func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *ledger, pre, moving, other, stay string, sha bool) []string {
		var calls []*redis.Cmd
		var tags []string
		count := func(p redis.Pipeliner, tag string) {
			calls = append(calls, p.Eval(ctx, countScript, countKeys(tag), fmt.Sprint(pre, "pipe", len(calls))))
			tags = append(tags, tag)
		}
		out := clusterBatch(ctx, c, false, func(p redis.Pipeliner) {
			count(p, stay) // a command of the same node that is not redirected
			count(p, moving)
			cReg(2)(ctx, p, moving, sha)
			count(p, moving)
			count(p, other)
			count(p, stay)
		})
		for i, call := range calls {
			l.record(t, tags[i], fmt.Sprint(pre, "pipe", i), call)
		}
		return out
	}},
	{"transaction", func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *ledger, pre, moving, other, stay string, sha bool) []string {
		var calls []*redis.Cmd
		out := clusterBatch(ctx, c, true, func(p redis.Pipeliner) {
			calls = append(calls, p.Eval(ctx, countScript, countKeys(moving), pre+"tx0"))
			cReg(3)(ctx, p, moving, sha)
			calls = append(calls, p.Eval(ctx, countScript, countKeys(moving), pre+"tx1"))
		})
		for i, call := range calls {
			l.record(t, moving, fmt.Sprint(pre, "tx", i), call)
		}
		return out
	}},
}

// While a slot moves, single commands, pipelines and transactions give the
// results of plain EVAL and every call runs once, for MOVED (a client whose
// slot map is stale: go-redis re-sends from inside the node hook's next)
// and ASK (a half-migrated slot: go-redis sends ASKING, then the command).
// The node that receives the slot has never seen the script and gets the
// body; EVALSHA of a registered script is repaired there too.
func TestClusterRedirects(t *testing.T) {
	r := newClusterRig(t)
	ctx := t.Context()
	ps := r.primaries(t)
	a, b := ps[0], ps[1]
	slot := keySlot(r.tagOn(t, "redirect", a))
	tags := tagsInSlot("redirect", slot, 4) // two for the hook, two for the reference
	l := newLedger()
	type pair struct {
		hooked, plain *redis.ClusterClient
		w             *wireLog
	}
	pairs := func() []pair {
		var out []pair
		for range redirectKinds {
			h, hook, w := r.hooked(t, nil)
			hook.Register("incrby", regScript)
			p := r.client(t, nil)
			require.NoError(t, p.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return nil }))
			out = append(out, pair{h, p, w})
		}
		return out
	}
	check := func(phase string, ps []pair, stayH, stayP string) {
		for i, k := range redirectKinds {
			want := k.run(ctx, t, ps[i].plain, l, phase, tags[2], tags[3], stayP, false)
			got := k.run(ctx, t, ps[i].hooked, l, phase, tags[0], tags[1], stayH, true)
			assert.Equal(t, want, got, "%s %s", phase, k.name)
			// Make sure the redirect happened.
			moved, ask := ps[i].w.redirects()
			switch {
			case k.name == "transaction":
				// go-redis reads a transaction's redirects itself: the
				// evidence is the transaction sent twice, after an ASK with
				// ASKING first, and never a command more or less.
				b := ps[i].w.batchNames()
				if assert.Len(t, b, 2, phase) {
					tx := []string{"multi", "eval", "eval", "evalsha", "exec"}
					assert.Equal(t, tx, b[0], phase)
					if phase == "ASK" {
						tx = append([]string{"asking"}, tx...)
					}
					assert.Equal(t, tx, b[1], phase)
				}
			case phase == "MOVED":
				assert.Positive(t, moved, "%s %s: the test saw no MOVED", phase, k.name)
			default:
				assert.Positive(t, ask, "%s %s: the test saw no ASK", phase, k.name)
			}
		}
	}

	// MOVED: the clients learn the slot map, then the slot moves to b.
	moved := pairs()
	r.moveSlot(t, slot, b)
	r.flushScripts(t)
	check("MOVED", moved, r.tagOn(t, "redirect-stay-h", a), r.tagOn(t, "redirect-stay-p", a))

	// ASK: the slot moves back to a, half way: the keys of tags[0] and
	// tags[2] are on a already, the others still on b, which answers ASK
	// for the migrated ones.
	asked := pairs()
	m := r.newSlotMove(t, slot, a)
	m.begin(t)
	m.migrate(t, append(append(countKeys(tags[0]), "{"+tags[0]+"}:r"), append(countKeys(tags[2]), "{"+tags[2]+"}:r")...))
	r.flushScripts(t)
	check("ASK", asked, r.tagOn(t, "redirect-stay-h", b), r.tagOn(t, "redirect-stay-p", b))
	for m.migrate(t, nil) > 0 {
	}
	m.finish(t)
	require.Equal(t, a, r.owner(t, slot), "the slot is back where it was")

	assert.Zero(t, l.noScript())
	l.verify(t, r.plain)
	for _, tag := range tags {
		require.NoError(t, r.plain.Del(ctx, "{"+tag+"}:r").Err())
	}
}

// workload runs countScript calls until stopped: each worker loops over a
// single EVAL, a pipeline over several tags and a two-call transaction on
// one tag, filing every call in the ledger.
type workload struct {
	l    *ledger
	done chan struct{}
	wg   sync.WaitGroup
}

func startLoad(t *testing.T, c redis.UniversalClient, tags []string, workers int, prefix string) *workload {
	w := &workload{l: newLedger(), done: make(chan struct{})}
	ctx := context.Background()
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
				switch i % 3 {
				case 0:
					w.l.record(t, tag, id, c.Eval(ctx, countScript, countKeys(tag), id))
				case 1:
					var calls []*redis.Cmd
					_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
						for j := 0; j < 4; j++ {
							tag := tags[(n+i+j)%len(tags)]
							calls = append(calls, p.Eval(ctx, countScript, countKeys(tag), fmt.Sprint(id, "-", j)))
						}
						return nil
					})
					for j, call := range calls {
						w.l.record(t, tags[(n+i+j)%len(tags)], fmt.Sprint(id, "-", j), call)
					}
				case 2:
					var calls []*redis.Cmd
					_, _ = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
						for j := 0; j < 2; j++ {
							calls = append(calls, p.Eval(ctx, countScript, countKeys(tag), fmt.Sprint(id, "-", j)))
						}
						return nil
					})
					for j, call := range calls {
						w.l.record(t, tag, fmt.Sprint(id, "-", j), call)
					}
				}
			}
		}()
	}
	return w
}

// stop ends the workload and waits for its workers.
func (w *workload) stop() {
	close(w.done)
	w.wg.Wait()
}

// reshard moves a slot to another primary while the cluster is in use: the
// keys go over a tag at a time (a tag's two keys in one MIGRATE), with
// pauses, so that commands meet ASK for a while.
func (r *clusterRig) reshard(t *testing.T, slot int, to *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	m := r.newSlotMove(t, slot, to)
	m.begin(t)
	for {
		keys, err := r.admin[m.from.Addr].ClusterGetKeysInSlot(ctx, slot, 1000).Result()
		require.NoError(t, err)
		if len(keys) == 0 {
			break
		}
		byTag := map[string][]string{}
		for _, k := range keys {
			tag := k[1:strings.IndexByte(k, '}')]
			byTag[tag] = append(byTag[tag], k)
		}
		for _, keys := range byTag {
			m.migrate(t, keys)
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	m.finish(t)
}

// A slot moves to another primary and back while script commands, pipelines
// and transactions run on it: every call's effect is applied exactly once,
// no NOSCRIPT (nor MOVED or ASK) reaches a caller; a client without the hook
// runs the same workload on the same slot as a reference.
func TestClusterReshardUnderLoad(t *testing.T) {
	r := newClusterRig(t)
	ps := r.primaries(t)
	a, b := ps[0], ps[1]
	slot := keySlot(r.tagOn(t, "reshard", a))
	moving := tagsInSlot("reshard", slot, 7)
	hookTags := append(moving[:4:4], r.tagOn(t, "reshard-h", ps[2]))
	plainTags := append(moving[4:7:7], r.tagOn(t, "reshard-p", ps[2]))
	rdb, h, w := r.hooked(t, nil)
	r.flushScripts(t)

	start := time.Now()
	hooked := startLoad(t, rdb, hookTags, 3, "h")
	plain := startLoad(t, r.plain, plainTags, 1, "p")
	time.Sleep(200 * time.Millisecond)
	r.reshard(t, slot, b)
	time.Sleep(200 * time.Millisecond)
	r.reshard(t, slot, a)
	time.Sleep(200 * time.Millisecond)
	hooked.stop()
	plain.stop()
	t.Logf("two reshards under load took %v", time.Since(start))
	require.Equal(t, a, r.owner(t, slot), "the slot is back where it was")

	moved, ask := w.redirects()
	t.Logf("the hooked client met %d MOVED and %d ASK", moved, ask)
	assert.Positive(t, moved)
	assert.Positive(t, ask)
	hooked.l.verify(t, r.plain)
	plain.l.verify(t, r.plain)
	assert.Zero(t, hooked.l.noScript())
	assert.Zero(t, h.Stats().NoScriptPassed)
	ok, _ := hooked.l.counts()
	assert.Positive(t, ok)
	hooked.l.transientOnly(t)
	plain.l.transientOnly(t)
}

// replicaOf returns the replica of primary p.
func (r *clusterRig) replicaOf(t *testing.T, p *redistest.Server) *redistest.Server {
	t.Helper()
	for _, s := range r.replicas(t) {
		info, err := r.admin[s.Addr].Info(context.Background(), "replication").Result()
		require.NoError(t, err)
		if strings.Contains(info, "master_port:"+strconv.Itoa(p.Port)+"\r\n") {
			return s
		}
	}
	t.Fatalf("no replica of %s", p.Addr)
	return nil
}

// failover runs CLUSTER FAILOVER on a replica (the coordinated manual
// failover: its primary stops writes until the replica has caught up) and
// waits until the replica is primary and the whole cluster agrees.
func (r *clusterRig) failover(t *testing.T, replica *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, r.admin[replica.Addr].Do(ctx, "CLUSTER", "FAILOVER").Err())
	require.Eventually(t, func() bool {
		role, err := r.admin[replica.Addr].Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r.c.WaitHealthy(ctx))
}

// CLUSTER FAILOVER on a replica under load, and back: the promoted replica
// has an empty script cache (Redis 7 does not replicate scripts), and calls
// go on without a NOSCRIPT reaching a caller; every call's effect is applied
// exactly once. A call may fail while the cluster changes hands
// (CLUSTERDOWN, seen about once in twenty runs on a loaded 2-core machine);
// the ledger still checks that it ran at most once.
func TestClusterFailoverUnderLoad(t *testing.T) {
	r := newClusterRig(t)
	ctx := t.Context()
	ps := r.primaries(t)
	a := ps[0]
	replica := r.replicaOf(t, a)
	hookTags := append(r.tagsOn(t, "failover-h", a, 2), r.tagOn(t, "failover-h", ps[1]), r.tagOn(t, "failover-h", ps[2]))
	plainTags := append(r.tagsOn(t, "failover-p", a, 1), r.tagOn(t, "failover-p", ps[1]))
	rdb, h, w := r.hooked(t, nil)
	r.flushScripts(t)

	start := time.Now()
	hooked := startLoad(t, rdb, hookTags, 3, "h")
	plain := startLoad(t, r.plain, plainTags, 1, "p")
	time.Sleep(200 * time.Millisecond)
	has, err := r.admin[replica.Addr].ScriptExists(ctx, redis.NewScript(countScript).Hash()).Result()
	require.NoError(t, err)
	require.Equal(t, []bool{false}, has, "the replica's script cache is empty")
	r.resetStats(t)
	r.failover(t, replica)
	time.Sleep(300 * time.Millisecond)
	served := r.calls(t, "evalsha", replica)
	r.failover(t, a) // back as it was
	time.Sleep(200 * time.Millisecond)
	hooked.stop()
	plain.stop()
	t.Logf("two failovers under load took %v", time.Since(start))

	assert.Positive(t, served, "the promoted replica ran scripts by SHA1")
	moved, _ := w.redirects()
	assert.Positive(t, moved, "the hooked client was redirected to the new primary")
	hooked.l.verify(t, r.plain)
	plain.l.verify(t, r.plain)
	assert.Zero(t, hooked.l.noScript())
	assert.Zero(t, h.Stats().NoScriptPassed)
	ok, _ := hooked.l.counts()
	assert.Positive(t, ok)
	hooked.l.transientOnly(t)
	plain.l.transientOnly(t)
}

// roScript reads only: it runs on replicas under read-only routing.
const roScript = "return {ARGV[1], redis.call('EXISTS', KEYS[1])}"

// Read-only routing (ReadOnly, RouteByLatency, RouteRandomly) sends
// EVAL_RO to replicas (and, for the last two, primaries): results are those
// of plain EVAL_RO, every node gets the body once, and replicas keep script
// state of their own, apart from their primaries'.
func TestClusterReadOnlyRouting(t *testing.T) {
	r := newClusterRig(t)
	ps, reps := r.primaries(t), r.replicas(t)
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.tagsOn(t, "ro", p, 3)...)
	}
	modes := []struct {
		name  string
		tweak func(*redis.ClusterOptions)
	}{
		{"ReadOnly", func(o *redis.ClusterOptions) { o.ReadOnly = true }},
		{"RouteByLatency", func(o *redis.ClusterOptions) { o.RouteByLatency = true }},
		{"RouteRandomly", func(o *redis.ClusterOptions) { o.RouteRandomly = true }},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			ctx := t.Context()
			rdb, h, w := r.hooked(t, mode.tweak)
			plain := r.client(t, mode.tweak)
			singles := func(c *redis.ClusterClient, round int) []string {
				var out []string
				for i, tag := range tags {
					out = append(out, outcome(c.EvalRO(ctx, roScript, []string{"{" + tag + "}:a"}, fmt.Sprint(round, i))))
				}
				return out
			}
			batch := func(c *redis.ClusterClient) []string {
				return clusterBatch(ctx, c, false, func(p redis.Pipeliner) {
					for i, tag := range tags {
						p.EvalRO(ctx, roScript, []string{"{" + tag + "}:a"}, i)
					}
				})
			}
			want := [][]string{singles(plain, 0), singles(plain, 1), batch(plain)}
			r.flushScripts(t)
			r.resetStats(t)
			got := [][]string{singles(rdb, 0), singles(rdb, 1)}
			// Single commands: every node that ran the script got the body
			// once, then EVALSHA_RO.
			for _, s := range r.c.Servers {
				if r.calls(t, "evalsha_ro", s)+r.calls(t, "eval_ro", s) > 0 {
					assert.Equal(t, int64(1), r.calls(t, "eval_ro", s), s.Addr)
				}
			}
			assert.Equal(t, int64(2*len(tags)), r.calls(t, "eval_ro")+r.calls(t, "evalsha_ro"))
			if mode.name == "ReadOnly" {
				assert.Equal(t, int64(2*len(tags)), r.calls(t, "evalsha_ro", reps...)+r.calls(t, "eval_ro", reps...),
					"replicas served every call")
			}
			w.reset()
			got = append(got, batch(rdb))
			assert.Equal(t, want, got)
			w.bodiesOncePerBatch(t)

			// Replicas have script state of their own: a flush of the
			// replicas costs each one repair, and the primaries' first
			// EVAL still carries the body.
			for _, s := range reps {
				require.NoError(t, r.admin[s.Addr].ScriptFlush(ctx).Err())
			}
			before := h.Stats().NoScriptRepaired
			for i, tag := range tags {
				assert.NoError(t, rdb.EvalRO(ctx, roScript, []string{"{" + tag + "}:a"}, i).Err())
			}
			if mode.name == "ReadOnly" {
				assert.Equal(t, int64(len(reps)), h.Stats().NoScriptRepaired-before, "one repair per replica")
				r.resetStats(t)
				for _, tag := range tags {
					require.NoError(t, rdb.Eval(ctx, roScript, []string{"{" + tag + "}:a"}, "w").Err())
				}
				for _, p := range ps {
					assert.Equal(t, int64(1), r.calls(t, "eval", p), "%s: its first EVAL carried the body", p.Addr)
				}
			}
			assert.Zero(t, h.Stats().NoScriptPassed)
		})
	}
}

// Keyless scripts (numkeys 0) go wherever go-redis sends them; the node
// hook that gets one handles it: results are those of plain EVAL, cold and
// after SCRIPT FLUSH everywhere, single, pipelined and in a transaction.
func TestClusterKeylessScripts(t *testing.T) {
	r := newClusterRig(t)
	ctx := t.Context()
	ps := r.primaries(t)
	rdb, h, w := r.hooked(t, nil)
	tag := r.tagOn(t, "keyless", ps[1])
	run := func(c *redis.ClusterClient) []string {
		var out []string
		for i := 0; i < 9; i++ {
			out = append(out, outcome(c.Eval(ctx, "return ARGV[1] * 2", nil, i)))
		}
		out = append(out, clusterBatch(ctx, c, false, func(p redis.Pipeliner) {
			for i := 0; i < 9; i++ {
				p.Eval(ctx, "return ARGV[1] * 2", nil, i)
				p.Eval(ctx, echoScript, nil, i)
			}
			p.Eval(ctx, counterScript, []string{"{" + tag + "}:k"})
			p.Eval(ctx, echoScript, nil, "last")
		})...)
		return append(out, clusterBatch(ctx, c, true, func(p redis.Pipeliner) {
			p.Eval(ctx, echoScript, nil, "in tx")
			p.Eval(ctx, "return ARGV[1] * 2", nil, 21)
		})...)
	}
	want := run(r.plain)
	require.NoError(t, r.plain.Del(ctx, "{"+tag+"}:k").Err())
	for _, state := range []string{"cold", "flushed"} {
		r.flushScripts(t)
		r.resetStats(t)
		w.reset()
		assert.Equal(t, want, run(rdb), state)
		require.NoError(t, r.plain.Del(ctx, "{"+tag+"}:k").Err())
		w.bodiesOncePerBatch(t)
		ran := 0
		for _, p := range ps {
			if r.calls(t, "evalsha", p)+r.calls(t, "eval", p) > 0 {
				ran++
			}
		}
		t.Logf("%s: keyless scripts ran on %d primaries", state, ran)
	}
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// One logical cluster pipeline touching three primaries is one batch span,
// with the three node sub-batches beneath it and each script command
// beneath its node's sub-batch (what go-redis's own tracing loses for
// nodes that exist before it is installed, go-redis #3168, #3433). A single
// command is one span, with the node that ran it.
func TestClusterSpans(t *testing.T) {
	r := newClusterRig(t)
	ps := r.primaries(t)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cc := r.client(t, nil)
	h := scripthook.New(scripthook.WithTracerProvider(tp))
	require.NoError(t, h.Install(cc))
	r.flushScripts(t)
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.tagOn(t, "spans", p))
	}
	ctx, parent := tp.Tracer("test").Start(t.Context(), "parent")
	_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, tag := range tags {
			p.Eval(ctx, incrScript, []string{"{" + tag + "}:k"}, 1)
			p.Set(ctx, "{"+tag+"}:x", 1, 0)
			p.Eval(ctx, incrScript, []string{"{" + tag + "}:k"}, 2)
		}
		return nil
	})
	require.NoError(t, err)
	parent.End()

	ended := spans.Ended()
	require.Len(t, ended, 1+1+3+6, "parent, batch, 3 node batches, 6 scripts")
	byParent := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		byParent[s.Parent().SpanID()] = append(byParent[s.Parent().SpanID()], s)
	}
	top := byParent[parent.SpanContext().SpanID()]
	require.Len(t, top, 1, "one batch span for the logical pipeline")
	batch := top[0]
	assert.Equal(t, "PIPELINE", batch.Name())
	a := attrsOf(batch)
	assert.Equal(t, int64(9), a["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(6), a["scripthook.batch.scripts"].AsInt64(), "the nodes' counts, summed")
	assert.Equal(t, int64(3), a["scripthook.batch.bodies_sent"].AsInt64(), "one body per node")
	_, hasPort := a["server.port"]
	assert.False(t, hasPort, "the logical batch has no single server")

	nodes := byParent[batch.SpanContext().SpanID()]
	require.Len(t, nodes, 3, "one sub-batch span per primary")
	ports := map[int64]bool{}
	for _, n := range nodes {
		na := attrsOf(n)
		assert.Equal(t, "PIPELINE", n.Name())
		assert.Equal(t, int64(3), na["db.operation.batch.size"].AsInt64())
		assert.Equal(t, int64(2), na["scripthook.batch.scripts"].AsInt64())
		assert.Equal(t, "127.0.0.1", na["server.address"].AsString())
		ports[na["server.port"].AsInt64()] = true
		scripts := byParent[n.SpanContext().SpanID()]
		require.Len(t, scripts, 2, "the node's script commands beneath it")
		for _, s := range scripts {
			assert.Equal(t, "EVALSHA "+redis.NewScript(incrScript).Hash(), s.Name())
		}
	}
	for _, p := range ps {
		assert.True(t, ports[int64(p.Port)], "a sub-batch for %s", p.Addr)
	}

	// A single command: one span, with the node that ran it.
	spans.Reset()
	require.NoError(t, cc.Eval(t.Context(), incrScript, []string{"{" + tags[1] + "}:k"}, 3).Err())
	ended = spans.Ended()
	require.Len(t, ended, 1)
	assert.Equal(t, int64(ps[1].Port), attrsOf(ended[0])["server.port"].AsInt64())
	assert.True(t, attrsOf(ended[0])["scripthook.rewritten"].AsBool())
	for _, tag := range tags {
		require.NoError(t, r.plain.Del(t.Context(), "{"+tag+"}:k", "{"+tag+"}:x").Err())
	}
}

// Instrument on a ClusterClient whose cluster cannot be reached returns an
// error saying so; the nodes the client creates later get their hooks, and
// installing again once the cluster is reachable adds no second hook.
func TestInstrumentUnreachableCluster(t *testing.T) {
	r := newClusterRig(t)
	ps := r.primaries(t)
	// A port nothing listens on: dials are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	var reachable atomic.Bool
	cc := r.client(t, func(o *redis.ClusterOptions) {
		// One seed: go-redis tries each seed twice, each dial five times
		// 100 ms apart, before it gives up.
		o.Addrs = []string{ps[1].Addr}
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !reachable.Load() {
				addr = dead
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := scripthook.New(scripthook.WithTracerProvider(tp))

	start := time.Now()
	err = h.Install(cc)
	require.Error(t, err)
	t.Logf("Install took %v: %v", time.Since(start), err)
	assert.True(t, strings.HasPrefix(err.Error(), "scripthook: "), err.Error())
	assert.Contains(t, err.Error(), "cluster")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause is wrapped")

	reachable.Store(true)
	r.flushScripts(t)
	r.resetStats(t)
	tag := r.tagOn(t, "unreachable", ps[0])
	for i := 0; i < 3; i++ {
		require.NoError(t, cc.Eval(t.Context(), incrScript, []string{"{" + tag + "}:k"}, i).Err())
	}
	assert.Equal(t, int64(1), r.calls(t, "eval", ps[0]), "the node has its hook: the body once")
	assert.Equal(t, int64(2), r.calls(t, "evalsha", ps[0]))

	require.NoError(t, h.Install(cc), "reachable now")
	spans.Reset()
	r.resetStats(t)
	require.NoError(t, cc.Eval(t.Context(), incrScript, []string{"{" + tag + "}:k"}, 3).Err())
	assert.Len(t, spans.Ended(), 1, "one top hook, not two")
	assert.Equal(t, int64(1), r.calls(t, "evalsha", ps[0]))
	require.NoError(t, r.plain.Del(t.Context(), "{"+tag+"}:k").Err())
}
