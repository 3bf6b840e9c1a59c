package scripthook

import (
	"context"
	"net"

	"github.com/redis/go-redis/v9"
)

// The three redis.Hook implementations, one per role. Each entry point
// recognises the command once (classify), calls the engine (single.go,
// batch.go) and, around it, the telemetry's start and end, which only
// observe.

// clientHook serves one *redis.Client: it rewrites, repairs and traces.
type clientHook struct {
	engine
	// db is the database index for db.namespace, "" when unknown (a Hook
	// added with AddHook cannot see the client's options).
	db string
}

var _ redis.Hook = (*clientHook)(nil)

func newClientHook(sh *shared, db, addr string) *clientHook {
	c := &clientHook{engine: engine{sh: sh, srv: sh.newServerState()}, db: db}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		// A FailoverClient's Addr is "FailoverClient": its first dial
		// tells the server's address.
		c.srv.addr.Store(&addr)
	}
	return c
}

// DialHook forgets what the server had loaded when a connection is dialled
// after one was closed, and records the server's address for traces.
func (c *clientHook) DialHook(next redis.DialHook) redis.DialHook { return dialHook(c.srv, next) }

// ProcessHook handles single commands: script commands are rewritten,
// repaired and traced; the commands that change what a server has (SCRIPT
// FLUSH, a MULTI written by hand) are noted; every other command goes
// straight to next.
func (c *clientHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if quickOther(args) {
			return next(ctx, cmd) // the common case: a few instructions
		}
		k := classify(args)
		if k == kindOther {
			return next(ctx, cmd)
		}
		return c.process(ctx, cmd, k, next)
	}
}

func (c *clientHook) process(ctx context.Context, cmd redis.Cmder, k kind, next redis.ProcessHook) error {
	if k.isFCall() {
		return c.sh.tel.traceFCall(ctx, cmd, k, c.db, c.srv, next, &c.engine)
	}
	if !k.isScript() {
		return c.control(ctx, cmd, k, next)
	}
	orig, sc, s, ok := c.prepare(cmd, k)
	if !ok {
		return next(ctx, cmd)
	}
	var r run
	ctx, sp := c.sh.tel.startScript(ctx, &sc, s, c.db, c.srv)
	err := c.runScript(ctx, orig, &sc, s, next, &r)
	sp.end(&r, err)
	return err
}

// ProcessPipelineHook handles Pipeline, TxPipeline and Watch transactions
// (go-redis calls it for both chains; a transaction arrives wrapped as
// [MULTI, ..., EXEC]).
func (c *clientHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return c.pipelineHook(c.db, (*telemetry).startBatch, next)
}

// pipelineHook runs the engine on each batch that concerns it, between the
// batch span's start and end; start is a client's startBatch or a node's
// startNodeBatch.
func (e *engine) pipelineHook(db string, start func(*telemetry, context.Context, []redis.Cmder, string, *server, *batchRun) (context.Context, batchSpan), next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !anyRelevant(cmds) {
			return next(ctx, cmds)
		}
		var br batchRun
		ctx, bs := start(e.sh.tel, ctx, cmds, db, e.srv, &br)
		err := e.runBatch(ctx, cmds, next, &br)
		bs.end(&br, err)
		return err
	}
}

// prepare takes a script command apart and finds its script. A command this
// Hook already sent below it (a second copy of the Hook in the chain), or a
// malformed one, is not for the engine (ok false).
func (e *engine) prepare(cmd redis.Cmder, k kind) (orig redis.Cmder, sc scriptCall, s *script, ok bool) {
	if ours(cmd, e.sh) {
		return cmd, sc, nil, false
	}
	orig, w := unwrap(cmd, e.sh)
	if w != nil {
		k = w.from
	}
	sc, ok = parseScript(k, orig.Args())
	if !ok {
		return cmd, sc, nil, false
	}
	return orig, sc, e.resolve(&sc, w), true
}

// nodeHook serves one node of a ClusterClient or one shard of a Ring: it
// rewrites and repairs with that node's own state, and reports to the
// spans the top hook started, which it finds in the context.
type nodeHook struct {
	engine
	db string
}

var _ redis.Hook = (*nodeHook)(nil)

func (n *nodeHook) DialHook(next redis.DialHook) redis.DialHook { return dialHook(n.srv, next) }

func (n *nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if quickOther(args) {
			return next(ctx, cmd)
		}
		k := classify(args)
		if !k.isScript() {
			if k.isFCall() {
				return n.fcall(ctx, cmd, k, next)
			}
			if k == kindOther {
				return next(ctx, cmd)
			}
			return n.control(ctx, cmd, k, next)
		}
		orig, sc, s, ok := n.prepare(cmd, k)
		if !ok {
			return next(ctx, cmd)
		}
		var local run
		r := &local
		if top, ok := ctx.Value(runKey{}).(*run); ok {
			r = top // the top hook's span reads it
		}
		return n.runScript(ctx, orig, &sc, s, next, r)
	}
}

// fcall runs a node's FCALL, reporting to the top hook's span.
func (n *nodeHook) fcall(ctx context.Context, cmd redis.Cmder, k kind, next redis.ProcessHook) error {
	sc, ok := parseFCall(k, cmd.Args())
	if !ok {
		return next(ctx, cmd)
	}
	var local run
	r := &local
	if top, ok := ctx.Value(runKey{}).(*run); ok {
		r = top
	}
	return n.runFCall(ctx, cmd, &sc, next, r)
}

func (n *nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return n.pipelineHook(n.db, (*telemetry).startNodeBatch, next)
}

// topHook sits on a ClusterClient or Ring: it traces each logical call and
// batch, while the node hooks below do the work. It rewrites nothing, so
// keys route exactly as without the hook.
type topHook struct {
	sh *shared
	db string
}

var _ redis.Hook = (*topHook)(nil)

func (t *topHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t *topHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if quickOther(args) {
			return next(ctx, cmd)
		}
		k := classify(args)
		if k.isFCall() {
			return t.sh.tel.traceFCall(ctx, cmd, k, t.db, nil, next, nil)
		}
		if !k.isScript() {
			return next(ctx, cmd)
		}
		sc, ok := parseScript(k, args)
		if !ok || !t.sh.tel.on(ctx) {
			return next(ctx, cmd)
		}
		// Only a peek: the node hook looks the script up (and learns it)
		// once; a second lookup here would count each call as two
		// sightings, making every script "hot" on its first call.
		var s *script
		if k.hasBody() {
			s = t.sh.cache.peek(sc.body)
		} else if sha, ok := normalizeSHA(sc.sha); ok {
			s = t.sh.cache.peekSHA(sha)
		}
		if s != nil && !s.seen.Load() && !s.registered.Load() {
			// Found, so sighted before: this call is a second sighting,
			// which the node hook's lookup counts only after the span
			// is named (it would set the same flag).
			s.seen.Store(true)
		}
		r := &run{}
		ctx, sp := t.sh.tel.startScript(ctx, &sc, s, t.db, nil)
		err := next(context.WithValue(ctx, runKey{}, r), cmd)
		sp.end(r, err)
		return err
	}
}

func (t *topHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !anyRelevant(cmds) || !t.sh.tel.on(ctx) {
			return next(ctx, cmds)
		}
		br := &batchRun{}
		ctx, bs := t.sh.tel.startBatch(ctx, cmds, t.db, nil, br)
		err := next(bs.carry(ctx, br), cmds)
		bs.end(br, err)
		return err
	}
}

// runKey carries a traced call's *run from a top hook down to the node hook
// that does the work.
type runKey struct{}

// dialHook wraps every connection dialled to a server, so that losing one
// is noticed (see server.dialled), and records the address.
func dialHook(srv *server, next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil || conn == nil {
			return conn, err
		}
		srv.dialled(dialedAddr(conn, addr))
		return track(conn, srv), nil
	}
}

// dialedAddr is the server address for traces: the one go-redis dialled, or
// the connection's remote address when that is no host:port (a Sentinel
// FailoverClient dials "FailoverClient" and asks Sentinel for the primary).
func dialedAddr(conn net.Conn, addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if ra := conn.RemoteAddr(); ra != nil {
		return ra.String()
	}
	return addr
}

// quickOther is classify's first check, small enough to be inlined into
// every hook: a command whose name is a string that cannot be one
// scripthook cares about costs only this.
func quickOther(args []interface{}) bool {
	if len(args) == 0 {
		return true
	}
	name, ok := args[0].(string)
	return ok && (len(name) < 4 || len(name) > 10 || !firstLetter[name[0]])
}

// firstLetter marks the first letters of the commands classify recognises:
// EVAL*, EXEC, FCALL*, FUNCTION, SCRIPT, MULTI, DISCARD, ASKING.
var firstLetter = [256]bool{
	'e': true, 'E': true, 'f': true, 'F': true, 's': true, 'S': true,
	'm': true, 'M': true, 'd': true, 'D': true, 'a': true, 'A': true,
}

// anyRelevant reports whether a batch holds a command scripthook cares
// about; other batches go straight through. go-redis's own MULTI and EXEC
// around a transaction are not a reason; a MULTI, EXEC or DISCARD the caller
// wrote is.
func anyRelevant(cmds []redis.Cmder) bool {
	first, last := -2, -2
	for i, c := range cmds {
		args := c.Args()
		if quickOther(args) {
			continue
		}
		switch classify(args) {
		case kindOther, kindAsking:
		case kindMulti, kindExec, kindDiscard:
			if first == -2 {
				first, last = txBounds(cmds)
			}
			if i != first && i != last {
				return true
			}
		default:
			return true
		}
	}
	return false
}
