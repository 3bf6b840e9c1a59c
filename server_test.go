package scripthook

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A NOSCRIPT for a command sent before another caller's load does not
// undo that load.
func TestServerForgetKeepsNewerBelief(t *testing.T) {
	sv := newServer(100, 10, nil)
	sv.ran("a")
	_, gen := sv.state("a")
	// Another caller repairs meanwhile: the belief is raised again.
	sv.forget("a", gen)
	sv.ran("a")
	assert.Equal(t, unknown, sv.forget("a", gen), "the stale NOSCRIPT changes nothing")
	b, _ := sv.state("a")
	assert.Equal(t, present, b)
}

func TestServerResetAfterLostConnection(t *testing.T) {
	sv := newServer(100, 10, nil)
	sv.ran("a")
	sv.dialled("127.0.0.1:1") // growing the pool: no reset
	b, _ := sv.state("a")
	assert.Equal(t, present, b)
	sv.connClosed()
	sv.dialled("127.0.0.1:1")
	b, _ = sv.state("a")
	assert.Equal(t, unknown, b)
}

// The pin budget bounds the scripts the hook makes permanent on one server;
// registered scripts come in addition; a failed or redundant load gives its
// share back; a flush frees it all.
func TestServerPinBudget(t *testing.T) {
	sv := newServer(100, 2, nil)
	pin := func(sha string, free bool) loadTicket {
		t.Helper()
		tk := sv.beginLoad(sha, free, true)
		if tk.ok {
			sv.endLoad(tk, sha, sha, true)
		}
		return tk
	}
	require.True(t, pin("a", false).ok)
	require.True(t, pin("b", false).ok)
	assert.Equal(t, noBudget, pin("c", false).why)
	assert.True(t, pin("r", true).ok, "registered: pinned in addition")
	assert.True(t, pin("a", false).ok, "already pinned: free")
	assert.Equal(t, 2, sv.pins)

	// A load in flight makes others go as written, not wait.
	tk := sv.beginLoad("r", true, true)
	require.True(t, tk.ok)
	assert.Equal(t, busy, sv.beginLoad("r", true, true).why)
	assert.True(t, sv.beginLoad("r", true, false).ok, "a batch carries its own")
	sv.endLoad(tk, "r", "r", false)

	// A pinned script the server lost (flush, restart) gives its share back.
	_, gen := sv.state("a")
	assert.Equal(t, pinned, sv.forget("a", gen))
	assert.Equal(t, 1, sv.pins)
	sv.reset()
	assert.Zero(t, sv.pins)
	assert.True(t, pin("c", false).ok)

	// SCRIPT LOAD of a script EVAL created leaves it evictable on Redis: it
	// stays present, and costs no budget.
	sv.ran("e")
	tk = sv.beginLoad("e", false, true)
	require.True(t, tk.ok)
	sv.endLoad(tk, "e", "e", true)
	b, _ := sv.state("e")
	assert.Equal(t, present, b)
	assert.Equal(t, 1, sv.pins)

	// A load that started before a reset does not count after it.
	tk = sv.beginLoad("f", false, true)
	sv.reset()
	sv.endLoad(tk, "f", "f", true)
	b, _ = sv.state("f")
	assert.Equal(t, unknown, b)
	assert.Zero(t, sv.pins)
}

func TestServerCapabilitiesAndHints(t *testing.T) {
	var hints capHints
	a, b := newServer(10, 10, &hints), newServer(10, 10, &hints)
	assert.Equal(t, capUnknown, a.can(capEvalSha))
	a.learn(capEvalSha, true)
	assert.Equal(t, capYes, b.can(capEvalSha), "what one server said is a hint for the others")
	b.learn(capEvalSha, false)
	assert.Equal(t, capNo, b.can(capEvalSha))
	c := newServer(10, 10, &hints)
	assert.Equal(t, capUnknown, c.can(capEvalSha), "servers disagreed: no hint")
	a.reset()
	assert.Equal(t, capYes, a.can(capEvalSha), "a reset keeps what the server allows")
}

func TestServerBounded(t *testing.T) {
	sv := newServer(64, 8, nil)
	for i := 0; i < 8; i++ {
		tk := sv.beginLoad(fmt.Sprint("p", i), false, true)
		sv.endLoad(tk, fmt.Sprint("p", i), fmt.Sprint("p", i), true)
	}
	for i := 0; i < 10_000; i++ {
		sv.ran(fmt.Sprint(i))
		require.LessOrEqual(t, sv.size(), 64)
	}
	b, _ := sv.state("p0")
	assert.Equal(t, pinned, b, "pinned scripts are the last to be dropped")
}
