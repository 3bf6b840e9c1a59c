package scripthook

import (
	"context"
	"net"

	"github.com/redis/go-redis/v9"
)

// role says which part of the work a Hook value does where it is attached.
type role uint8

const (
	// roleClient: attached to a *redis.Client; rewrites, repairs and traces.
	roleClient role = iota
	// roleTop: attached to a ClusterClient or Ring; traces the logical call
	// and batch, while the node hooks below it do the rewriting.
	roleTop
	// roleNode: attached to one node of a ClusterClient or Ring; rewrites and
	// repairs, with its own view of what that node has loaded.
	roleNode
)

// Hook is a go-redis hook that sends scripts by SHA1, repairs NOSCRIPT and
// traces script runs. Create it with New; add it with AddHook to a
// *redis.Client (standalone or Sentinel), or use Instrument (or
// Hook.Install) for a ClusterClient or Ring. A Hook is safe for concurrent
// use.
//
// A Hook remembers what one server has loaded. Give each *redis.Client its
// own Hook; sharing one between clients stays correct (a wrong belief costs a
// NOSCRIPT and its repair) but wastes round trips.
type Hook struct {
	sh   *shared
	node *nodeState // nil for roleTop
	role role
	// db is the database index for db.namespace, "" when unknown (a Hook
	// added with AddHook cannot see the client's options; Install can).
	db string
	// cluster marks the node hooks of a ClusterClient, whose batches go-redis
	// handles differently from a Client's (see batchPlan).
	cluster bool
}

var _ redis.Hook = (*Hook)(nil)

// shared is what every Hook value made from one New call has in common:
// options, the body cache, counters and telemetry.
type shared struct {
	cfg   config
	cache *shaCache
	stats counters
	tel   *telemetry
	nodes nodeRegistry
}

// New returns a Hook configured by opts.
func New(opts ...Option) *Hook {
	cfg := newConfig(opts)
	sh := &shared{cfg: cfg, cache: newSHACache(cfg.cacheSize)}
	sh.tel = newTelemetry(&sh.cfg, sh)
	return &Hook{sh: sh, node: newNodeState(nodeLimit(cfg)), role: roleClient}
}

// nodeLimit bounds one node's state: every cached script plus some room for
// registered ones.
func nodeLimit(cfg config) int { return 2*cfg.cacheSize + 64 }

// Register remembers a script body under a readable name and returns its
// SHA1 in lower-case hex. A registered body is never evicted; EVALSHA calls
// for it are repaired on NOSCRIPT, and traces show the name instead of the
// SHA1. Registering the same body again renames it.
func (h *Hook) Register(name, src string) string {
	return h.sh.cache.register(name, src).sha
}

// DialHook forgets what the server had loaded when a connection is dialled
// after one was closed: that is how a restart, a failover or a broken link
// shows itself to the client. It also records the server's address for
// traces.
func (h *Hook) DialHook(next redis.DialHook) redis.DialHook {
	if h.node == nil {
		return next
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil || conn == nil {
			return conn, err
		}
		h.node.dialled(dialedAddr(conn, addr))
		return track(conn, h.node), nil
	}
}

// dialedAddr is the server address for traces: the one go-redis dialled, or
// the connection's remote address when that is no host:port. (A Sentinel
// FailoverClient dials "FailoverClient" and lets its dialer ask Sentinel for
// the primary; its spans had no server.address and server.port.)
func dialedAddr(conn net.Conn, addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if ra := conn.RemoteAddr(); ra != nil {
		return ra.String()
	}
	return addr
}

// ProcessHook handles single commands: script commands are rewritten,
// repaired and traced; every other command goes straight to next.
func (h *Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if !maybeScript(args) {
			return next(ctx, cmd) // the common case: a few instructions
		}
		sc, ok := parseScript(args)
		if !ok {
			return next(ctx, cmd)
		}
		return h.processScript(ctx, cmd, &sc, next)
	}
}

// runScript sends one script command through next, rewriting and repairing
// it where this Hook can.
// s is the script as resolveScript found it.
func (h *Hook) runScript(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, res *result) error {
	res.sent = sc.kind
	res.script = s
	if h.node == nil {
		return next(ctx, cmd) // roleTop: the node hooks below do the work
	}
	if sc.kind.hasBody() {
		if !h.sh.cfg.rewrite {
			err := next(ctx, cmd)
			res.bodies++
			h.sh.stats.bodiesSent.Add(1)
			if loadedAfterBody(err) {
				h.node.markLoaded(s)
			}
			return err
		}
		if ok, gen := h.node.loaded(s); ok {
			err := h.sendSHA(ctx, cmd, sc, s, next, res)
			if !isNoScript(err) {
				return err
			}
			h.node.forget(s, gen)
			return h.repair(ctx, cmd, sc, s, next, res)
		}
		return h.load(ctx, cmd, sc, s, next, res)
	}

	// EVALSHA from the caller: it goes out as it is. Only a body we know lets
	// us repair a NOSCRIPT; otherwise the caller sees it (redis.Script.Run
	// then falls back to EVAL, and we learn the body from that).
	var gen uint64
	if s != nil {
		_, gen = h.node.loaded(s)
	}
	err := next(ctx, cmd)
	if s == nil {
		if isNoScript(err) {
			h.sh.stats.noScriptPassed.Add(1)
		}
		return err
	}
	if !isNoScript(err) {
		if loadedAfterBody(err) { // it ran: the server has it
			h.node.markLoaded(s)
		}
		return err
	}
	h.node.forget(s, gen)
	return h.repair(ctx, cmd, sc, s, next, res)
}

// resolveScript finds the script a call runs: learned from an EVAL's body,
// or looked up by an EVALSHA's SHA1 (nil when the body is unknown).
func (h *Hook) resolveScript(sc *scriptCall) *script {
	if sc.kind.hasBody() {
		return h.sh.cache.forCall(sc)
	}
	if sha, ok := normalizeSHA(sc.sha); ok {
		return h.sh.cache.lookupSHA(sha)
	}
	return nil
}

// repair handles a NOSCRIPT: the body goes out once, as a single EVAL that
// loads and runs the script on one connection of the same server, shared by
// every caller that hit the same NOSCRIPT at the same time.
func (h *Hook) repair(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, res *result) error {
	res.reloaded = true
	err := h.load(ctx, cmd, sc, s, next, res)
	if isNoScript(err) {
		h.sh.stats.noScriptPassed.Add(1)
	} else if ctx.Err() == nil || err == nil {
		h.sh.stats.repaired.Add(1)
	}
	return err
}

// load runs the script where the node may not have it. The first caller
// sends the body; callers that arrive while it is in flight wait for it and
// then send EVALSHA. A waiter whose EVALSHA still gets NOSCRIPT (the cache
// was flushed again in between) sends the body itself, so a caller that
// asked for EVAL never sees NOSCRIPT.
func (h *Hook) load(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, res *result) error {
	loaded, gen, fl, lead := h.node.begin(s)
	if lead {
		res.how = howSent
		err := h.sendBody(ctx, cmd, sc, s, next, res)
		h.node.finish(s, fl, loadedAfterBody(err))
		return err
	}
	if !loaded {
		res.how = howWaited
		ok, fgen, err := fl.wait(ctx)
		if err != nil {
			return err
		}
		loaded, gen = ok, fgen
	} else {
		res.how = howLoadedMeanwhile
	}
	if loaded {
		err := h.sendSHA(ctx, cmd, sc, s, next, res)
		if !isNoScript(err) {
			return err
		}
		h.node.forget(s, gen)
	}
	return h.sendBody(ctx, cmd, sc, s, next, res)
}

// sendSHA runs the script by SHA1: the caller's own EVALSHA, or its EVAL
// rewritten into a command of our own (the caller's args are never touched).
func (h *Hook) sendSHA(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, res *result) error {
	if !sc.kind.hasBody() {
		res.sent = sc.kind
		return next(ctx, cmd)
	}
	w := newRewritten(cmd, sc.kind.shaArg(), s.shaArg)
	err := next(ctx, w)
	res.sent = kindEvalSha
	if sc.kind.readOnly() {
		res.sent = kindEvalShaRO
	}
	res.rewritten = true
	h.sh.stats.rewritten.Add(1)
	h.sh.stats.bytesSaved.Add(int64(savedBytes(sc.kind, sc.bodyLen())))
	return err
}

// sendBody runs the script with its body: the caller's own EVAL, or its
// EVALSHA turned into an EVAL of the body we know.
func (h *Hook) sendBody(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, res *result) error {
	res.bodies++
	h.sh.stats.bodiesSent.Add(1)
	if sc.kind.hasBody() {
		res.sent = sc.kind
		return next(ctx, cmd)
	}
	res.sent = kindEval
	if sc.kind.readOnly() {
		res.sent = kindEvalRO
	}
	return next(ctx, newRewritten(cmd, sc.kind.bodyArg(), s.body))
}

// loadedAfterBody reports whether a reply to EVAL proves the server now has
// the script. Errors prove nothing: a compile error leaves it unloaded.
func loadedAfterBody(err error) bool { return err == nil || err == redis.Nil }

// isNoScript reports a NOSCRIPT reply. Inside the hook chain it is still the
// server's error; go-redis turns it into redis.ErrNoScript only afterwards.
func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// savedBytes is how many request bytes EVALSHA saves over EVAL for this call,
// in RESP: the body's bulk string against the SHA1's, and the longer name.
func savedBytes(kind scriptKind, n int) int {
	body := 1 + digits(n) + 2 + n + 2
	const sha = 1 + 2 + 2 + 40 + 2
	name := 3 // "$7\r\nevalsha\r\n" against "$4\r\neval\r\n"
	if kind.readOnly() {
		name = 4 // "$10\r\nevalsha_ro\r\n" against "$7\r\neval_ro\r\n"
	}
	return body - sha - name
}

func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}
