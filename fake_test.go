package scripthook

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// replyErr is an error reply from the fake server.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// fakeServer stands in for the rest of the hook chain in unit tests: it keeps
// a script cache like Redis does, answers NOSCRIPT, and lets a test steer
// interleavings with channels.
type fakeServer struct {
	mu      sync.Mutex
	scripts map[string]bool
	log     []string // command names in the order they arrived

	evals, evalshas, noscripts atomic.Int64

	// gateEval, when set, is received from before an EVAL is answered.
	gateEval chan struct{}
	// reply, when set, decides the reply to every script command.
	reply func(args []interface{}) error
}

func newFakeServer() *fakeServer { return &fakeServer{scripts: map[string]bool{}} }

func (f *fakeServer) flush() {
	f.mu.Lock()
	f.scripts = map[string]bool{}
	f.mu.Unlock()
}

func (f *fakeServer) process(ctx context.Context, cmd redis.Cmder) error {
	args := cmd.Args()
	name, _ := args[0].(string)
	f.mu.Lock()
	f.log = append(f.log, name)
	f.mu.Unlock()
	if len(args) < 3 {
		return replyErr("ERR wrong number of arguments")
	}
	switch name {
	case "eval", "eval_ro", "EVAL":
		f.evals.Add(1)
		if f.gateEval != nil {
			select {
			case <-f.gateEval:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var body string
		switch b := args[1].(type) {
		case string:
			body = b
		case []byte:
			body = string(b)
		}
		f.mu.Lock()
		f.scripts[sha1Hex(body)] = true
		f.mu.Unlock()
	case "evalsha", "evalsha_ro", "EVALSHA":
		f.evalshas.Add(1)
		sha, _ := args[1].(string)
		f.mu.Lock()
		ok := f.scripts[sha]
		f.mu.Unlock()
		if !ok {
			f.noscripts.Add(1)
			return replyErr("NOSCRIPT No matching script. Please use EVAL.")
		}
	default:
		return nil
	}
	if f.reply != nil {
		return f.reply(args)
	}
	return nil
}

func (f *fakeServer) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// chain returns the hook's ProcessHook over the fake server.
func chain(h *Hook, f *fakeServer) redis.ProcessHook {
	return h.ProcessHook(f.process)
}
