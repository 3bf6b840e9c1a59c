package cluster_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/require"
)

// fnLib is the function library the tests register. fledger is the
// exactly-once probe of testkit.LedgerScript as a function (its reply is
// what the ledger expects); fpeek reads (no-writes, for FCALL_RO).
const fnLib = "#!lua name=fnledger\n" +
	"redis.register_function('fledger', function(keys, args) local n = redis.call('HINCRBY', keys[1], args[1], 1) return {n, args[1]} end)\n" +
	"redis.register_function{function_name='fpeek', callback=function(keys, args) return {args[1], redis.call('HEXISTS', keys[1], args[1])} end, flags={'no-writes'}}"

const fnNotFound = "ERR Function not found"

// fnCall runs (or, on a pipeline, queues) one fledger call for tag with
// call id id.
func fnCall(ctx context.Context, c redis.Cmdable, tag, id string) *redis.Cmd {
	return c.FCall(ctx, "fledger", []string{testkit.LedgerKey(tag)}, id)
}

// fnPeek queues or runs one FCALL_RO of fpeek.
func fnPeek(ctx context.Context, c redis.Cmdable, tag, id string) *redis.Cmd {
	return c.FCallRO(ctx, "fpeek", []string{testkit.LedgerKey(tag)}, id)
}

// fnHooked is hooked with fnLib registered.
func fnHooked(t *testing.T, r *testkit.ClusterRig, opts ...scripthook.Option) (*redis.ClusterClient, *scripthook.Hook, *testkit.NodeSpy) {
	t.Helper()
	rdb, h, w := hooked(t, r, nil, opts...)
	name, err := h.RegisterLibrary(fnLib)
	require.NoError(t, err)
	require.Equal(t, "fnledger", name)
	return rdb, h, w
}

// flushFunctions deletes every library on every primary, as another client
// would, and waits until the replicas have the flush too.
func flushFunctions(t testing.TB, r *testkit.ClusterRig) {
	t.Helper()
	ctx := context.Background()
	for _, p := range r.Primaries(t) {
		a := r.Admin[p.Addr]
		require.NoError(t, a.FunctionFlush(ctx).Err())
		require.NoError(t, a.Do(ctx, "WAIT", 1, 5000).Err())
	}
}

// hasLib reports whether the server holds the library fnledger now.
func hasLib(t testing.TB, a *redis.Client) bool {
	t.Helper()
	libs, err := a.FunctionList(context.Background(), redis.FunctionListQuery{LibraryNamePattern: "fnledger"}).Result()
	require.NoError(t, err)
	return len(libs) == 1
}

// sendSpy counts, per node address, the round trips a client's node
// clients make (a single command or a pipeline each; a connection's
// handshake aside), the commands in them as INFO commandstats names them
// (all, those sent alone, those inside transactions), and the dials.
// Placed after scripthook, it sees what the hook adds.
type sendSpy struct {
	mu      sync.Mutex
	watched map[*redis.Client]bool
	rounds  map[string]int
	sent    map[string]map[string]int
	singles map[string]map[string]int
	inTx    map[string]map[string]int
	dialed  map[string]int
	log     [][]string
}

// setup reports the commands go-redis sends on a new connection, or to
// learn a cluster's slots.
func setup(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		switch testkit.FullName(c) {
		case "hello", "client", "auth", "select", "readonly", "cluster", "command":
		default:
			return false
		}
	}
	return true
}

func names(cmds []redis.Cmder) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, testkit.FullName(c))
	}
	return out
}

// Log returns every batch seen (a single command is a batch of one).
func (s *sendSpy) Log() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.log...)
}

func newSendSpy() *sendSpy {
	return &sendSpy{watched: map[*redis.Client]bool{}, rounds: map[string]int{},
		sent: map[string]map[string]int{}, singles: map[string]map[string]int{}, inTx: map[string]map[string]int{}, dialed: map[string]int{}}
}

// watchSends adds a sendSpy to every node of c, those it has and those it
// creates later. Call it right after the hook was installed.
func watchSends(t testing.TB, c interface {
	OnNewNode(func(*redis.Client))
	ForEachShard(context.Context, func(context.Context, *redis.Client) error) error
}) *sendSpy {
	t.Helper()
	s := newSendSpy()
	c.OnNewNode(s.add)
	require.NoError(t, c.ForEachShard(context.Background(), func(_ context.Context, n *redis.Client) error {
		s.add(n)
		return nil
	}))
	return s
}

func (s *sendSpy) add(n *redis.Client) {
	s.mu.Lock()
	seen := s.watched[n]
	s.watched[n] = true
	s.mu.Unlock()
	if !seen {
		n.AddHook(s.hookFor(n.Options().Addr))
	}
}

// hookFor returns the spy's hook for a client of the server at addr (any
// label for a client whose server changes, as a FailoverClient's).
func (s *sendSpy) hookFor(addr string) redis.Hook {
	return dialCounter{s: s, addr: addr, Spy: &testkit.Spy{Before: func(_ context.Context, cmds []redis.Cmder) {
		if setup(cmds) {
			return // a connection's handshake, no round trip of the caller's
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.log = append(s.log, append([]string{addr[strings.LastIndexByte(addr, ':')+1:] + ":"}, names(cmds)...))
		s.rounds[addr]++
		if s.sent[addr] == nil {
			s.sent[addr], s.singles[addr] = map[string]int{}, map[string]int{}
		}
		n := names(cmds)
		if i := len(n) - 1; i > 0 && n[i] == "exec" && (n[0] == "multi" || n[0] == "asking" && n[1] == "multi") {
			if s.inTx[addr] == nil {
				s.inTx[addr] = map[string]int{}
			}
			for _, name := range n {
				s.inTx[addr][name]++
			}
		}
		for _, name := range n {
			s.sent[addr][name]++
		}
		if len(cmds) == 1 {
			s.singles[addr][testkit.FullName(cmds[0])]++
		}
	}}}
}

// dialCounter is the spy's hook: a testkit.Spy that counts dials too.
type dialCounter struct {
	*testkit.Spy
	s    *sendSpy
	addr string
}

func (d dialCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.s.mu.Lock()
		d.s.dialed[d.addr]++
		d.s.mu.Unlock()
		return next(ctx, network, addr)
	}
}

// Redials returns how many connections were dialled to the servers beyond
// the first to each (every server when none are given).
func (s *sendSpy) Redials(servers ...*redistest.Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for addr, k := range s.dialed {
		if (len(servers) == 0 || inServers(addr, servers)) && k > 1 {
			n += k - 1
		}
	}
	return n
}

// Sent returns how many commands named name went to the servers, or to
// every server when none are given.
func (s *sendSpy) Sent(name string, servers ...*redistest.Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for addr, m := range s.sent {
		if len(servers) == 0 || inServers(addr, servers) {
			n += m[name]
		}
	}
	return n
}

// Singles is Sent for commands sent alone (a round trip of their own).
func (s *sendSpy) Singles(name string, servers ...*redistest.Server) int {
	return s.count(s.singles, name, servers)
}

// InTx is Sent for commands inside transactions.
func (s *sendSpy) InTx(name string, servers ...*redistest.Server) int {
	return s.count(s.inTx, name, servers)
}

func (s *sendSpy) count(by map[string]map[string]int, name string, servers []*redistest.Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for addr, m := range by {
		if len(servers) == 0 || inServers(addr, servers) {
			n += m[name]
		}
	}
	return n
}

// Rounds returns the round trips to the servers (every server when none
// are given).
func (s *sendSpy) Rounds(servers ...*redistest.Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for addr, k := range s.rounds {
		if len(servers) == 0 || inServers(addr, servers) {
			n += k
		}
	}
	return n
}

// Reset forgets what the spy counted.
func (s *sendSpy) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rounds, s.sent, s.singles, s.inTx, s.log = map[string]int{}, map[string]map[string]int{}, map[string]map[string]int{}, map[string]map[string]int{}, nil
}

// String lists the counts per node, for logs.
func (s *sendSpy) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []string
	for a := range s.rounds {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "%s: %d round trips %v; ", a, s.rounds[a], s.sent[a])
	}
	return b.String()
}

func inServers(addr string, servers []*redistest.Server) bool {
	for _, s := range servers {
		if s.Addr == addr {
			return true
		}
	}
	return false
}

// startFnLoad is testkit's ledger load with fledger calls (FCALL) in place
// of EVALs, and transactions only when tx.
func startFnLoad(t testing.TB, c redis.UniversalClient, tags []string, workers int, prefix string, tx bool) *testkit.LedgerLoad {
	return testkit.StartLedgerLoadOf(t, c, tags, workers, prefix, fnCall, tx)
}

// notFoundSeen counts the calls of the ledger that got "Function not
// found".
func notFoundSeen(l *testkit.Ledger) int {
	n := 0
	for msg, c := range l.Errors() {
		if strings.Contains(msg, "Function not found") {
			n += c
		}
	}
	return n
}

// failover is r.Failover that makes sure the replica owns slot afterwards.
// A primary's peers refuse to vote for a replica of it again within twice
// the node timeout (2 s in redistest) of their last such vote: Valkey 8 then
// lets the manual failover time out, and Redis 7.0 lets the replica "win"
// it with the old votes and epoch, after which its primary, with the
// higher epoch, takes the slots back (7.0.15 logs "Failover election won"
// with no election, then the primary is primary again). So failover waits
// until that window has passed for the replica's primary since the last
// failover away from it it made, and tries again if the slots went back.
func failover(t *testing.T, r *testkit.ClusterRig, replica *redistest.Server, slot int) {
	t.Helper()
	from := r.Owner(t, slot)
	for attempt := 0; ; attempt++ {
		failedAwayMu.Lock()
		last := failedAway[from.Addr]
		failedAwayMu.Unlock()
		if wait := voteWindow - time.Since(last); wait > 0 {
			time.Sleep(wait)
		}
		r.Failover(t, replica)
		failedAwayMu.Lock()
		failedAway[from.Addr] = time.Now()
		failedAwayMu.Unlock()
		if r.Owner(t, slot) == replica {
			return
		}
		if attempt == 2 {
			t.Fatalf("%s did not keep the slots after three failovers", replica.Addr)
		}
		t.Logf("%s's failover did not hold (attempt %d); again after the vote window", replica.Addr, attempt+1)
	}
}

// voteWindow is twice redistest's cluster-node-timeout, and a margin.
const voteWindow = 4500 * time.Millisecond

var (
	failedAwayMu sync.Mutex
	failedAway   = map[string]time.Time{}
)
