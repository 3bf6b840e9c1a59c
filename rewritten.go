package scripthook

import "github.com/redis/go-redis/v9"

// rewritten is a script command as scripthook sends it: the caller's command
// with other arguments. Every method but Args, Name and FullName is the
// caller's, so the reply is read straight into the caller's command (whatever
// its type) and nothing is copied afterwards; the caller's args slice is
// never written to.
type rewritten struct {
	redis.Cmder
	args []interface{}
}

// single is a rewritten command with room for the arguments of a short
// command, so that rewriting a single call is one allocation.
type single struct {
	rewritten
	buf [8]interface{}
}

// newRewritten copies the caller's args with the command name and the body
// or SHA1 argument replaced.
func newRewritten(cmd redis.Cmder, name, second interface{}) *rewritten {
	w := &single{}
	var args []interface{}
	if n := len(cmd.Args()); n <= len(w.buf) {
		args = w.buf[:n]
	} else {
		args = make([]interface{}, n)
	}
	w.initWith(cmd, args, name, second)
	return &w.rewritten
}

// initWith fills in a rewritten command whose arguments go in args, which
// has the length of the caller's (a batch hands out slices of one arena).
func (w *rewritten) initWith(cmd redis.Cmder, args []interface{}, name, second interface{}) {
	w.Cmder = cmd
	w.args = args
	copy(args, cmd.Args())
	args[0] = name
	args[1] = second
}

// Args returns the arguments that go on the wire.
func (w *rewritten) Args() []interface{} { return w.args }

// Name returns the lower-case name of the command that goes on the wire, so
// hooks after this one see what is really sent.
func (w *rewritten) Name() string { return w.args[0].(string) }

// FullName is Name: script commands have no subcommand.
func (w *rewritten) FullName() string { return w.Name() }
