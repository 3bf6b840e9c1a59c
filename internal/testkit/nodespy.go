package testkit

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// ProbeSHA is the SHA1 of no script that scripthook's capability probes
// name (EVALSHA and EVALSHA_RO of it run nothing), and ProbeBody the body
// of its SCRIPT LOAD probe (it does not compile, so it creates nothing).
const (
	ProbeSHA  = "0000000000000000000000000000000000000000"
	ProbeBody = "("
)

// NodeBatch is one batch as a node client of a ClusterClient or a shard of
// a Ring handed it to its server, seen after every other hook.
type NodeBatch struct {
	// Addr is the node's address; Names the commands as INFO commandstats
	// names them ("eval", "script|load"), probes included.
	Addr  string
	Names []string
	// Evals are the bodies of the EVAL and EVAL_RO commands, Loads those
	// of the SCRIPT LOAD commands that are no probe.
	Evals, Loads []string
	// ShaProbes and LoadProbes count the capability probes (EVALSHA or
	// EVALSHA_RO of ProbeSHA, SCRIPT LOAD of ProbeBody); ProbesLast says
	// they all come after every other command.
	ShaProbes, LoadProbes int
	ProbesLast            bool
	// Tx: the batch is a transaction as go-redis sends it, [ASKING] MULTI
	// ... EXEC.
	Tx bool
	// saved is, for every EVAL body, how many bytes one such command would
	// write less as EVALSHA; loadCost what a SCRIPT LOAD of it writes.
	saved, loadCost map[string]int64
}

// Probes counts the batch's capability probes.
func (b NodeBatch) Probes() int { return b.ShaProbes + b.LoadProbes }

// Bodies counts the script bodies the batch carries (probes excluded).
func (b NodeBatch) Bodies() int { return len(b.Evals) + len(b.Loads) }

// NodeSpy watches every node client of a ClusterClient or Ring, placed
// after the hooks each node has: it records every batch a node sends (each
// with a Spy; see NodeBatch) and counts the MOVED, ASK and NOSCRIPT replies
// of single commands and batches alike, redirects included.
type NodeSpy struct {
	mu       sync.Mutex
	watched  map[*redis.Client]bool
	batches  []NodeBatch
	moved    int
	ask      int
	noScript int
}

// nodeLister is what ClusterClient and Ring have in common for reaching
// their node clients.
type nodeLister interface {
	OnNewNode(func(*redis.Client))
	ForEachShard(context.Context, func(context.Context, *redis.Client) error) error
}

// WatchNodes adds a NodeSpy to every node of c, those it has and those it
// creates later. Call it right after the hook under test was installed, so
// that the spy comes after it on every node.
func WatchNodes(t testing.TB, c nodeLister) *NodeSpy {
	t.Helper()
	s := &NodeSpy{watched: map[*redis.Client]bool{}}
	c.OnNewNode(s.add)
	err := c.ForEachShard(context.Background(), func(_ context.Context, n *redis.Client) error {
		s.add(n)
		return nil
	})
	if err != nil {
		t.Fatalf("testkit: listing the nodes: %v", err)
	}
	return s
}

func (s *NodeSpy) add(n *redis.Client) {
	s.mu.Lock()
	seen := s.watched[n]
	s.watched[n] = true
	s.mu.Unlock()
	if seen {
		return
	}
	addr := n.Options().Addr
	n.AddHook(nodeHook{s: s, spy: &Spy{
		Before: func(_ context.Context, cmds []redis.Cmder) { s.record(addr, cmds) },
		After: func(_ context.Context, cmds []redis.Cmder, _ error) {
			for _, c := range cmds {
				s.note(c.Err())
			}
		},
	}})
}

// nodeHook hands batches to the Spy and counts single commands' replies.
type nodeHook struct {
	s   *NodeSpy
	spy *Spy
}

func (h nodeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.s.note(err)
		return err
	}
}

func (h nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return h.spy.ProcessPipelineHook(next)
}

// record files one batch a node is about to send.
func (s *NodeSpy) record(addr string, cmds []redis.Cmder) {
	b := NodeBatch{Addr: addr, ProbesLast: true, saved: map[string]int64{}, loadCost: map[string]int64{}}
	for _, c := range cmds {
		args := c.Args()
		name := FullName(c)
		b.Names = append(b.Names, name)
		probe := false
		switch {
		case (name == "evalsha" || name == "evalsha_ro") && len(args) > 1 && text(args[1]) == ProbeSHA:
			b.ShaProbes++
			probe = true
		case name == "script|load" && len(args) > 2 && text(args[2]) == ProbeBody:
			b.LoadProbes++
			probe = true
		case name == "script|load" && len(args) > 2:
			b.Loads = append(b.Loads, text(args[2]))
		case (name == "eval" || name == "eval_ro") && len(args) > 1:
			body := text(args[1])
			b.Evals = append(b.Evals, body)
			bySHA := append([]interface{}{name[:4] + "sha" + name[4:], ProbeSHA}, args[2:]...)
			b.saved[body] = respBytes(args) - respBytes(bySHA)
			b.loadCost[body] = respBytes([]interface{}{"script", "load", body})
		}
		if !probe && b.Probes() > 0 {
			b.ProbesLast = false // a command after a probe
		}
	}
	first := 0
	if len(b.Names) > 0 && b.Names[0] == "asking" {
		first = 1
	}
	b.Tx = len(b.Names)-first >= 2 && b.Names[first] == "multi" && b.Names[len(b.Names)-1] == "exec"
	s.mu.Lock()
	s.batches = append(s.batches, b)
	s.mu.Unlock()
}

// note counts a reply that is a redirect or a NOSCRIPT.
func (s *NodeSpy) note(err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case strings.HasPrefix(msg, "MOVED "):
		s.moved++
	case strings.HasPrefix(msg, "ASK "):
		s.ask++
	case strings.HasPrefix(msg, "NOSCRIPT"):
		s.noScript++
	}
}

// Batches returns the batches recorded, in the order they were sent.
func (s *NodeSpy) Batches() []NodeBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]NodeBatch(nil), s.batches...)
}

// BatchNames returns the command names of every batch recorded.
func (s *NodeSpy) BatchNames() [][]string {
	var out [][]string
	for _, b := range s.Batches() {
		out = append(out, b.Names)
	}
	return out
}

// Redirects returns how many MOVED and ASK replies the nodes got.
func (s *NodeSpy) Redirects() (moved, ask int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.moved, s.ask
}

// NoScripts returns how many NOSCRIPT replies the nodes got (what the hook
// repaired included).
func (s *NodeSpy) NoScripts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.noScript
}

// Reset forgets what was recorded.
func (s *NodeSpy) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches, s.moved, s.ask, s.noScript = nil, 0, 0, 0
}

// CheckBodies checks the promise about script bodies in the batches
// recorded, and returns how many bodies they carried (probes excluded):
//   - probes come last in their batch;
//   - a body the batch carries as SCRIPT LOAD goes once, and no EVAL in
//     the batch carries it again;
//   - in a pipeline that does not probe (the hook knew what the user may
//     run), a body goes in more than one EVAL only where that writes no
//     more bytes than one SCRIPT LOAD and EVALSHA for every use would;
//   - in a transaction, a body goes in more than one EVAL only where
//     EVALSHA would be no shorter. Transactions never probe, so a test
//     checks transactions only once the hook knows what the user may run.
func (s *NodeSpy) CheckBodies(t testing.TB) int {
	t.Helper()
	n := 0
	for _, b := range s.Batches() {
		n += b.Bodies()
		if !b.ProbesLast {
			t.Errorf("testkit: probes before other commands to %s: %v", b.Addr, b.Names)
		}
		evals := map[string]int{}
		for _, body := range b.Evals {
			evals[body]++
		}
		loads := map[string]int{}
		for _, body := range b.Loads {
			loads[body]++
		}
		for body, k := range loads {
			if k != 1 || evals[body] != 0 {
				t.Errorf("testkit: a body went to %s %d times as SCRIPT LOAD and %d as EVAL in one batch %v: %.40q",
					b.Addr, k, evals[body], b.Names, body)
			}
		}
		for body, k := range evals {
			if k < 2 || loads[body] != 0 {
				continue
			}
			saved := b.saved[body]
			switch {
			case b.Tx && saved > 0:
				t.Errorf("testkit: a body went to %s in %d EVALs of one transaction %v, where EVALSHA saves %d bytes each: %.40q",
					b.Addr, k, b.Names, saved, body)
			case !b.Tx && b.Probes() == 0 && int64(k)*saved > b.loadCost[body]:
				t.Errorf("testkit: a body went to %s in %d EVALs of one pipeline %v, where one SCRIPT LOAD (%d bytes) and EVALSHA (%d bytes less each) would be shorter: %.40q",
					b.Addr, k, b.Names, b.loadCost[body], saved, body)
			}
		}
	}
	return n
}

// Probes counts the capability probes of the batches recorded to the node
// at addr, or to every node when addr is "": EVALSHA and EVALSHA_RO ones,
// and SCRIPT LOAD ones (INFO commandstats counts them as calls).
func (s *NodeSpy) Probes(addr string) (sha, load int) {
	for _, b := range s.Batches() {
		if addr == "" || b.Addr == addr {
			sha += b.ShaProbes
			load += b.LoadProbes
		}
	}
	return sha, load
}
