package scripthook

import (
	"context"
	"errors"
	"sync"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// ProcessPipelineHook handles Pipeline, TxPipeline and Watch transactions:
// EVAL/EVAL_RO go out as EVALSHA/EVALSHA_RO, a script's body crosses the wire
// at most once per batch, in the batch, ahead of its first use, and results
// and their order are those of the batch sent without the hook.
//
// go-redis calls this method for the plain and the transactional chain alike;
// a transaction arrives wrapped as [MULTI, ..., EXEC], and its reader expects
// exactly that shape, so added commands go inside it.
func (h *Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return h.processBatch(ctx, cmds, next)
	}
}

// runBatch sends one batch (or, with WithMaxBatchSize, its sub-batches).
func (h *Hook) runBatch(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook, bres *batchResult) error {
	if h.node == nil {
		return next(ctx, cmds) // roleTop: the node hooks below do the work
	}
	if !h.sh.cfg.rewrite {
		// Sent as written; only the bodies that go out are counted.
		n := countBodies(cmds)
		bres.bodies += n
		h.sh.stats.bodiesSent.Add(int64(n))
		return next(ctx, cmds)
	}
	tx := isTx(cmds)
	n := h.sh.cfg.maxBatchSize
	if tx || n <= 0 || len(cmds) <= n {
		return h.sendBatch(ctx, cmds, tx, next, bres)
	}
	var first error
	for start := 0; start < len(cmds); start += n {
		end := min(start+n, len(cmds))
		err := h.sendBatch(ctx, cmds[start:end], false, next, bres)
		if err != nil && !isRedisError(err) {
			// The connection failed: the rest was never sent. Give it the
			// error, as go-redis does for the unsent part of one pipeline.
			for _, c := range cmds[end:] {
				c.SetErr(err)
			}
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// hasScript reports whether any command is a script command; batches without
// one go straight through.
func hasScript(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if _, ok := parseScript(c.Args()); ok {
			return true
		}
	}
	return false
}

// countBodies counts the commands that carry a script body.
func countBodies(cmds []redis.Cmder) int {
	n := 0
	for _, c := range cmds {
		if sc, ok := parseScript(c.Args()); ok && sc.kind.hasBody() {
			n++
		}
	}
	return n
}

// isScriptFlush reports a SCRIPT FLUSH [ASYNC|SYNC] command.
func isScriptFlush(args []interface{}) bool {
	if len(args) < 2 {
		return false
	}
	name, ok := args[0].(string)
	if !ok || len(name) != 6 || (name[0]|0x20) != 's' {
		return false
	}
	sub, ok := args[1].(string)
	return ok && equalFold(name, "script") && equalFold(sub, "flush")
}

// isTx reports whether the batch is a transaction as go-redis builds it.
func isTx(cmds []redis.Cmder) bool {
	_, ok := txBody(cmds)
	return ok
}

// txBody returns the caller's commands of a transaction, those between MULTI
// and EXEC. A ClusterClient that follows an ASK redirect sends a transaction
// as [ASKING, MULTI, ..., EXEC]: that is a transaction too.
func txBody(cmds []redis.Cmder) ([]redis.Cmder, bool) {
	start := 0
	if len(cmds) > 0 && isAsking(cmds[0]) {
		start = 1
	}
	if len(cmds)-start < 2 {
		return nil, false
	}
	_, multi := cmds[start].(*redis.StatusCmd)
	_, exec := cmds[len(cmds)-1].(*redis.SliceCmd)
	if !multi || !exec || cmds[start].Name() != "multi" || cmds[len(cmds)-1].Name() != "exec" {
		return nil, false
	}
	return cmds[start+1 : len(cmds)-1], true
}

// isAsking reports the ASKING a ClusterClient sends before a command or a
// transaction it redirects after an ASK reply. It holds for the next command
// only.
func isAsking(cmd redis.Cmder) bool { return cmd.Name() == "asking" }

// How a caller's command went out in a batch.
const (
	sentAsIs      uint8 = iota // not a script, or a script we leave alone
	sentBody                   // the caller's EVAL: the first use carries the body
	sentRewrite                // the caller's EVAL as our EVALSHA
	sentCallerSHA              // the caller's EVALSHA, as it is
	sentSHAAsBody              // the caller's EVALSHA as our EVAL of the body (cluster transactions)
)

// planned is one caller command of a batch and how it went out.
type planned struct {
	cmd redis.Cmder
	bs  *batchScript
	how uint8
	sc  callInfo // kind 0: not a script command
}

// batchScript is one script's state within one batch.
type batchScript struct {
	s *script
	// carrier is the command that put the body on the server in this batch
	// (the caller's first EVAL, or our SCRIPT LOAD); nil until there is one.
	carrier redis.Cmder
	// loadedBefore: the hook believed the node had the script when the batch
	// was planned (for EVAL only in optimistic mode); gen is that belief's
	// generation, for forget.
	loadedBefore bool
	gen          uint64
	// ranBySHA and noScript are the batch's verdicts, set by settle.
	ranBySHA bool
	noScript bool
}

// batchPlan is the outgoing form of one batch.
type batchPlan struct {
	bodies int // bodies this batch carries
	// noScripts counts the commands left with NOSCRIPT, which reach the
	// caller: set by settle, lowered by retryNoScript.
	noScripts int
	// wbuf holds the batch's rewritten commands and abuf their arguments,
	// each allocated once (or a few times) per batch, not per command.
	wbuf []rewritten
	abuf []interface{}
	// last memoizes the previous EVAL's body and script: a batch usually
	// repeats one script, and this skips the cache's lock and lookup.
	lastBody scriptCall
	last     *script
	out      []redis.Cmder
	items    []planned
	scripts  []*batchScript
	index    map[*script]*batchScript // built once scripts gets long
	// flushed: the batch itself contains a SCRIPT FLUSH. Scripts used after
	// it carry their body again, and what the node had before is forgotten.
	// (Found by FuzzDifferential: without this a strict batch
	// [EVAL s, SCRIPT FLUSH, EVAL s] sent the second EVAL as EVALSHA and the
	// caller got NOSCRIPT where plain EVAL succeeds.)
	flushed bool
	// The three below are set only under a ClusterClient (Hook.cluster).
	//
	// loadAhead: a body goes as a keyless SCRIPT LOAD ahead of the script's
	// first use, never as the caller's keyed EVAL. Inside next, go-redis
	// re-sends a command answered MOVED or ASK to another node while the rest
	// of the batch stays: a redirected EVAL would leave this node's later
	// EVALSHAs without their body (NOSCRIPT), where plain EVAL succeeds.
	loadAhead bool
	// fixedShape: no command may be added. A ClusterClient reads the replies
	// of a transaction into the caller's commands, not into those the hook
	// passes on, so one more command would shift every reply (and the
	// transaction would have run). A caller's EVALSHA that needs the body
	// goes as EVAL instead of after a SCRIPT LOAD.
	fixedShape bool
	// blind: the replies prove nothing about the node. A ClusterClient that
	// redirects a transaction leaves its commands with no error and no reply
	// until another node has run it.
	blind bool
}

// planPool recycles batch plans: a 1000-command batch needs about 200 KB of
// buffers, and allocating them anew for every batch made the garbage
// collector a visible part of the hook's cost. A plan is used by one batch
// at a time and cleared before it goes back, so it keeps no caller's command
// alive. Only plans of a Client's (or Ring shard's) batches go back: there
// go-redis is done with the commands it was given when next returns; a
// ClusterClient is not (see sendBatch).
var planPool = sync.Pool{New: func() any { return new(batchPlan) }}

// maxPooledCmds bounds the batches whose buffers are kept for reuse, so one
// huge pipeline does not pin its buffers for good.
const maxPooledCmds = 1 << 14

// getPlan returns an empty plan with room for n commands.
func getPlan(n int) *batchPlan {
	p := planPool.Get().(*batchPlan)
	if cap(p.out) < n+2 {
		p.out = make([]redis.Cmder, 0, n+2)
	}
	if cap(p.items) < n {
		p.items = make([]planned, n)
	}
	p.items = p.items[:n]
	return p
}

// release clears the plan and returns it to the pool.
func (p *batchPlan) release() {
	if cap(p.items) > maxPooledCmds {
		return
	}
	clear(p.out[:cap(p.out)])
	clear(p.items[:cap(p.items)])
	clear(p.wbuf[:cap(p.wbuf)])
	clear(p.abuf[:cap(p.abuf)])
	*p = batchPlan{out: p.out[:0], items: p.items[:0], wbuf: p.wbuf[:0], abuf: p.abuf[:0]}
	planPool.Put(p)
}

// rewrite returns a rewritten command from the batch's buffer.
func (p *batchPlan) rewrite(cmd redis.Cmder, name, second interface{}) *rewritten {
	if len(p.wbuf) == cap(p.wbuf) {
		p.wbuf = make([]rewritten, 0, max(8, len(p.items)))
	}
	p.wbuf = p.wbuf[:len(p.wbuf)+1]
	w := &p.wbuf[len(p.wbuf)-1]
	n := len(cmd.Args())
	if cap(p.abuf)-len(p.abuf) < n {
		p.abuf = make([]interface{}, 0, max(n*len(p.items), 64))
	}
	args := p.abuf[len(p.abuf) : len(p.abuf)+n : len(p.abuf)+n]
	p.abuf = p.abuf[:len(p.abuf)+n]
	w.initWith(cmd, args, name, second)
	return w
}

// forCall is shaCache.forCall with the batch's memo in front.
func (p *batchPlan) forCall(c *shaCache, sc *scriptCall) *script {
	if p.last != nil && sc.isBytes == p.lastBody.isBytes && !sc.isBytes &&
		len(sc.body) == len(p.lastBody.body) && unsafe.StringData(sc.body) == unsafe.StringData(p.lastBody.body) {
		return p.last // the same string: the same bytes
	}
	s := c.forCall(sc)
	p.last, p.lastBody = s, *sc
	return s
}

func (p *batchPlan) lookup(s *script) *batchScript {
	if p.index != nil {
		return p.index[s]
	}
	for _, bs := range p.scripts {
		if bs.s == s {
			return bs
		}
	}
	return nil
}

func (p *batchPlan) add(s *script) *batchScript {
	bs := &batchScript{s: s}
	p.scripts = append(p.scripts, bs)
	if p.index != nil {
		p.index[s] = bs
	} else if len(p.scripts) > 16 {
		p.index = make(map[*script]*batchScript, 2*len(p.scripts))
		for _, b := range p.scripts {
			p.index[b.s] = b
		}
	}
	return bs
}

// sendBatch plans, sends and settles one batch.
func (h *Hook) sendBatch(ctx context.Context, cmds []redis.Cmder, tx bool, next redis.ProcessPipelineHook, bres *batchResult) error {
	// Transactions are always strict: a NOSCRIPT inside EXEC cannot be
	// repaired without running a script outside the transaction.
	optimistic := !tx && h.sh.cfg.pipelineMode == PipelineOptimistic
	p := h.plan(cmds, tx, optimistic, bres)
	if !h.cluster {
		// Under a ClusterClient the plan must not be recycled: go-redis
		// collects redirected commands (our rewritten ones among them) and
		// re-sends them after this hook has returned.
		defer p.release()
	}
	err := next(ctx, p.out)
	h.settle(p, bres)
	if optimistic {
		if rerr, retried := h.retryNoScript(ctx, p, next, bres); retried {
			err = rerr
		}
	}
	// Whatever NOSCRIPT is left reaches the caller: an EVALSHA whose body we
	// do not know, or (strict) a flush inside the batch's own execution.
	h.sh.stats.noScriptPassed.Add(int64(p.noScripts))
	if bres.trace != nil {
		bres.trace.collect(p.items)
	}
	return h.batchErr(cmds, err)
}

// plan builds the outgoing commands of a batch.
func (h *Hook) plan(cmds []redis.Cmder, tx, optimistic bool, bres *batchResult) *batchPlan {
	p := getPlan(len(cmds))
	p.loadAhead, p.fixedShape, p.blind = h.cluster && !tx, h.cluster && tx, h.cluster && tx
	// In a transaction only the commands between MULTI and EXEC are the
	// caller's (an ASKING may come before the MULTI).
	first, last := 0, len(cmds)-1
	if tx {
		body, _ := txBody(cmds)
		first, last = last-len(body), last-1
	}
	for i, cmd := range cmds {
		it := &p.items[i]
		it.cmd = cmd
		sc, ok := parseScript(cmd.Args())
		if !ok || i < first || i > last {
			if !ok && isScriptFlush(cmd.Args()) {
				// Uses after the flush start afresh: the body goes out
				// again ahead of the first of them.
				p.scripts, p.index, p.flushed = nil, nil, true
			}
			p.out = append(p.out, cmd)
			continue
		}
		it.sc = sc.info()
		bres.scripts++
		var s *script
		if sc.kind.hasBody() {
			s = p.forCall(h.sh.cache, &sc)
		} else if sha, ok := normalizeSHA(sc.sha); ok {
			s = h.sh.cache.lookupSHA(sha)
		}
		if s == nil {
			// An EVALSHA whose body we do not know goes out as written.
			it.how = sentCallerSHA
			p.out = append(p.out, cmd)
			continue
		}
		bs := p.lookup(s)
		if bs == nil {
			bs = p.add(s)
			loaded, gen := h.node.loaded(s)
			bs.loadedBefore, bs.gen = optimistic && loaded && !p.flushed, gen
		}
		it.bs = bs
		p.place(it)
	}
	return p
}

// place appends the outgoing form of one script command whose body we know.
// The first use of a script in the batch carries its body, unless (optimistic
// mode) the node is believed to have it: the caller's own EVAL as it is, or a
// SCRIPT LOAD right before the caller's EVALSHA (inside the MULTI for a
// transaction), whose failure then gives that EVALSHA exactly the NOSCRIPT
// plain EVALSHA would get. Later uses go by SHA1.
//
// Under a ClusterClient (see batchPlan) an EVAL's body goes as SCRIPT LOAD
// too, outside transactions; inside them a caller's EVALSHA that needs the
// body goes as EVAL.
func (p *batchPlan) place(it *planned) {
	bs := it.bs
	needBody := bs.carrier == nil && !bs.loadedBefore
	if it.sc.kind.hasBody() {
		if needBody && !p.loadAhead {
			bs.carrier = it.cmd
			it.how = sentBody
			p.bodies++
			p.out = append(p.out, it.cmd)
			return
		}
		if needBody {
			p.load(bs)
		}
		it.how = sentRewrite
		p.out = append(p.out, p.rewrite(it.cmd, it.sc.kind.shaArg(), bs.s.shaArg))
		return
	}
	it.how = sentCallerSHA
	if needBody && p.fixedShape {
		w := p.rewrite(it.cmd, it.sc.kind.bodyArg(), bs.s.body)
		bs.carrier = w
		it.how = sentSHAAsBody
		p.bodies++
		p.out = append(p.out, w)
		return
	}
	if needBody {
		p.load(bs)
	}
	p.out = append(p.out, it.cmd)
}

// load appends a SCRIPT LOAD of the script's body. It goes before an ASKING
// appended just before it: ASKING holds for the one command that follows,
// which must stay the redirected one.
func (p *batchPlan) load(bs *batchScript) {
	load := redis.NewStringCmd(context.Background(), "script", "load", bs.s.body)
	bs.carrier = load
	p.bodies++
	if n := len(p.out); n > 0 && isAsking(p.out[n-1]) {
		p.out = append(p.out, p.out[n-1])
		p.out[n-1] = load
		return
	}
	p.out = append(p.out, load)
}

// settle fixes up replies after a batch and records what the node now has.
func (h *Hook) settle(p *batchPlan, bres *batchResult) {
	var rewritten, saved int64
	for i := range p.items {
		it := &p.items[i]
		bs := it.bs
		if bs == nil {
			// Not a script, or an EVALSHA whose body we do not know: its
			// NOSCRIPT is the caller's, as without the hook.
			if it.sc.kind != 0 && isNoScript(it.cmd.Err()) {
				p.noScripts++
			}
			continue
		}
		if it.how == sentRewrite {
			rewritten++
			saved += int64(savedBytes(it.sc.kind, int(it.sc.bodyLen)))
		}
		err := it.cmd.Err()
		if !isNoScript(err) {
			if err == nil && (it.how == sentRewrite || it.how == sentCallerSHA) {
				bs.ranBySHA = true
			}
			continue
		}
		// NOSCRIPT. If the carrier failed (a compile error), plain EVAL would
		// have given this command the carrier's error: the body is the same.
		if c := bs.carrier; c != nil && c != it.cmd && it.how == sentRewrite {
			if cerr := c.Err(); cerr != nil && !isNoScript(cerr) {
				it.cmd.SetErr(cerr)
				continue
			}
		}
		bs.noScript = true
		p.noScripts++
	}
	if p.flushed {
		// The batch emptied the server's cache: only the scripts used after
		// the flush (now the only ones in p.scripts) are known to be there.
		h.node.reset()
	}
	for _, bs := range p.scripts {
		switch {
		case p.blind:
		case bs.noScript:
			h.node.forget(bs.s, bs.gen)
		case bs.ranBySHA || (bs.carrier != nil && loadedAfterBody(bs.carrier.Err())):
			h.node.markLoaded(bs.s)
		}
	}
	st := &h.sh.stats
	st.bodiesSent.Add(int64(p.bodies))
	st.rewritten.Add(rewritten)
	st.bytesSaved.Add(saved)
	bres.bodies += p.bodies
	bres.rewritten += int(rewritten)
}

// retryNoScript resends, in one more round trip, the script commands of an
// optimistic batch that failed with NOSCRIPT (those whose body we know), but
// only when no command that succeeded follows the first failure, so the
// retry cannot change the order in which anything took effect. Otherwise the
// NOSCRIPT errors stay.
func (h *Hook) retryNoScript(ctx context.Context, p *batchPlan, next redis.ProcessPipelineHook, bres *batchResult) (error, bool) {
	first := -1
	for i := range p.items {
		if it := &p.items[i]; it.bs != nil && isNoScript(it.cmd.Err()) {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, false
	}
	var failed []*planned
	for i := first; i < len(p.items); i++ {
		it := &p.items[i]
		err := it.cmd.Err()
		if err == nil || err == redis.Nil {
			// Something took effect after the failure: retrying would run
			// the failed scripts after it. Leave the errors.
			return nil, false
		}
		if it.bs != nil && isNoScript(err) {
			failed = append(failed, it)
		}
	}
	rp := &batchPlan{out: make([]redis.Cmder, 0, len(failed)+2), loadAhead: p.loadAhead}
	for _, it := range failed {
		bs := rp.lookup(it.bs.s)
		if bs == nil {
			bs = rp.add(it.bs.s)
		}
		it.bs = bs
		rp.place(it)
	}
	bres.reloads++
	bres.bodies += rp.bodies
	h.sh.stats.bodiesSent.Add(int64(rp.bodies))
	err := next(ctx, rp.out)
	for _, bs := range rp.scripts {
		if loadedAfterBody(bs.carrier.Err()) {
			h.node.markLoaded(bs.s)
		}
	}
	repaired := 0
	for _, it := range failed {
		if !isNoScript(it.cmd.Err()) {
			repaired++
		}
	}
	h.sh.stats.repaired.Add(int64(repaired))
	p.noScripts -= repaired
	return err, true
}

// batchErr is the error go-redis would return for the caller's batch: a
// transport or reply-parsing error first (go-redis returns the pipeline's own
// error before looking at the commands), else the first command error in the
// caller's order. (Found by FuzzDifferential: checking the commands first
// returned an earlier command's server error where plain go-redis returns
// "redis: can't parse reply".)
func (h *Hook) batchErr(cmds []redis.Cmder, err error) error {
	if err != nil && !isRedisError(err) {
		return err
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil {
			return cerr
		}
	}
	return nil
}

// isRedisError reports an error reply from the server, as opposed to a
// transport or context error.
func isRedisError(err error) bool {
	var rerr redis.Error
	return err != nil && errors.As(err, &rerr)
}
