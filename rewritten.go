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
	// buf holds args for the common short command, so a rewrite is one
	// allocation.
	buf [8]interface{}
}

// newRewritten copies the caller's args with the command name and the body
// or SHA1 argument replaced.
func newRewritten(cmd redis.Cmder, name, second interface{}) *rewritten {
	orig := cmd.Args()
	w := &rewritten{Cmder: cmd}
	if len(orig) <= len(w.buf) {
		w.args = w.buf[:len(orig)]
	} else {
		w.args = make([]interface{}, len(orig))
	}
	copy(w.args, orig)
	w.args[0] = name
	w.args[1] = second
	return w
}

// Args returns the arguments that go on the wire.
func (w *rewritten) Args() []interface{} { return w.args }

// Name returns the lower-case name of the command that goes on the wire, so
// hooks after this one see what is really sent.
func (w *rewritten) Name() string { return w.args[0].(string) }

// FullName is Name: script commands have no subcommand.
func (w *rewritten) FullName() string { return w.Name() }
