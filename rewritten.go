package scripthook

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// rewritten is a caller's script command as scripthook sends it: the
// caller's command with other arguments. Every method but Args, Name and
// FullName is the caller's, so the reply is read straight into the caller's
// command (whatever its type) and nothing is copied afterwards; the caller's
// args slice is never written to.
//
// A rewritten command is never reused or cleared once built: hooks after
// scripthook, and a ClusterClient that re-sends redirected commands after
// the hook has returned, may hold it for as long as they like. What such a
// re-send needs (the script, its body) travels in it.
type rewritten struct {
	redis.Cmder
	args []interface{}
	name string
	// from is the caller's command; s its script.
	from kind
	s    *script
	mark
}

// mark tells a second copy of the same Hook in one chain (added twice, or
// with AddHook and Install) that a command is already scripthook's own and
// in flight: it passes it through untouched instead of handling it again.
type mark struct {
	owner  *shared
	active atomic.Bool
}

// ours reports whether a command is one owner's own, in flight below it.
func ours(cmd redis.Cmder, owner *shared) bool {
	switch c := cmd.(type) {
	case *rewritten:
		return c.owner == owner && c.active.Load()
	case *loadCmd:
		return c.owner == owner && c.active.Load()
	case *fnLoadCmd:
		return c.owner == owner && c.active.Load()
	}
	return false
}

// single is a rewritten command with room for the arguments of a short
// command, so that rewriting a single call is one allocation.
type single struct {
	rewritten
	buf [8]interface{}
}

// newRewritten copies the caller's args with the command name and the body
// or SHA1 argument replaced.
func newRewritten(sh *shared, cmd redis.Cmder, from kind, s *script, to kind, second interface{}) *rewritten {
	w := &single{}
	var args []interface{}
	if n := len(cmd.Args()); n <= len(w.buf) {
		args = w.buf[:n]
	} else {
		args = make([]interface{}, n)
	}
	w.init(sh, cmd, from, s, args, to, second)
	return &w.rewritten
}

// init fills in a rewritten command whose arguments go in args, which has
// the length of the caller's (a batch hands out slices of one allocation).
func (w *rewritten) init(sh *shared, cmd redis.Cmder, from kind, s *script, args []interface{}, to kind, second interface{}) {
	w.Cmder, w.args, w.from, w.s, w.owner = cmd, args, from, s, sh
	w.name = wireName[to].(string)
	copy(args, cmd.Args())
	args[0] = wireName[to]
	args[1] = second
}

// Args returns the arguments that go on the wire.
func (w *rewritten) Args() []interface{} { return w.args }

// Name returns the lower-case name of the command that goes on the wire, so
// hooks after this one see what is really sent.
func (w *rewritten) Name() string { return w.name }

// FullName is Name: script commands have no subcommand.
func (w *rewritten) FullName() string { return w.name }

// loadCmd is the hook's own SCRIPT LOAD of a script, never the caller's.
type loadCmd struct {
	*redis.StringCmd
	s *script
	mark
}

func newLoadCmd(sh *shared, s *script) *loadCmd {
	c := &loadCmd{StringCmd: redis.NewStringCmd(context.Background(), "script", "load", s.body), s: s}
	c.owner = sh
	return c
}

// fnLoadCmd is the hook's own FUNCTION LOAD REPLACE of a registered
// library, never the caller's. Each has arguments of its own, as newLoadCmd's:
// a hook after this one may rewrite a command's arguments in place.
type fnLoadCmd struct {
	*redis.StringCmd
	lib *library
	mark
}

func newFnLoadCmd(sh *shared, lib *library) *fnLoadCmd {
	c := &fnLoadCmd{StringCmd: redis.NewStringCmd(context.Background(), "function", "load", "replace", lib.code), lib: lib}
	c.owner = sh
	return c
}

// unwrap returns, for a command this Hook rewrote earlier and a
// ClusterClient now re-sends, the caller's command and its script; for any
// other command, the command itself and nil.
func unwrap(cmd redis.Cmder, sh *shared) (redis.Cmder, *rewritten) {
	if w, ok := cmd.(*rewritten); ok && w.owner == sh {
		return w.Cmder, w
	}
	return cmd, nil
}
