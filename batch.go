package scripthook

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// A batch (Pipeline, TxPipeline, a Watch transaction, or a ClusterClient
// node's part of one) goes through four steps, each in its own function:
//
//	scan    take every command apart once (batch.go)
//	plan    decide how each script's uses go out, and build the commands
//	        sent in place of the caller's (decide.go)
//	send    one round trip through next
//	settle  learn from the replies, fix what plain EVAL would have answered
//	        differently, and re-send, in one more round trip, what provably
//	        did not run when that cannot change the order of anything
//	        (settle.go)
//
// Results and their order are those of the batch sent without the hook.

// batchRun is what happened in one batch, for traces and metrics.
type batchRun struct {
	scripts, bodies, rewritten, repaired int
	// children collects the script commands for child spans, when the
	// batch span is recording.
	children *children
	srv      *server
}

// childRun is one script command of a batch, as its child span shows it.
type childRun struct {
	k    kind
	call callInfo
	s    *script
	run
	cmd redis.Cmder // the caller's, whose error is read when the span ends
}

// runBatch sends one batch, or with WithMaxBatchSize its sub-batches, and
// returns the error go-redis would return for it.
func (e *engine) runBatch(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook, br *batchRun) error {
	br.srv = e.srv
	ip := getItems(len(cmds))
	defer putItems(ip)
	items := *ip
	tx, relevant, nested := e.scan(items, cmds)
	if nested {
		return next(ctx, cmds)
	}
	if !relevant {
		err := next(ctx, cmds)
		br.recordAll(items) // the batch's FCALLs, if any
		return err
	}
	n := e.sh.cfg.maxBatchSize
	if tx || n <= 0 || len(cmds) <= n {
		err := e.sendChunk(ctx, items, cmds, tx, next, br)
		return batchErr(cmds, err)
	}
	for start := 0; start < len(cmds); {
		end := chunkEnd(items, start, n)
		// Regions are indexes into the batch; a chunk is planned on its
		// own, so they become indexes into the chunk (a chunk never
		// starts inside a MULTI the caller wrote).
		for i := start; i < end; i++ {
			if items[i].region >= 0 {
				items[i].region -= start
			}
		}
		err := e.sendChunk(ctx, items[start:end], cmds[start:end], false, next, br)
		if err != nil && !isRedisError(err) {
			// The connection failed: the rest was never sent. It gets the
			// error, as go-redis does for the unsent part of one pipeline.
			for _, c := range cmds[end:] {
				c.SetErr(err)
			}
			return err
		}
		start = end
	}
	return batchErr(cmds, nil)
}

// chunkEnd is where the sub-batch that starts at start ends: after n
// commands, or later, so that a MULTI the caller wrote is never split from
// its EXEC (sub-batches may go out on different connections).
func chunkEnd(items []item, start, n int) int {
	end := min(start+n, len(items))
	for end < len(items) && items[end].region >= 0 && items[end].region < end {
		end++ // inside a MULTI that started before end, its EXEC included
	}
	return end
}

// scan takes every command of a batch apart once. It reports a go-redis
// transaction, whether anything in the batch concerns scripthook, and a
// batch that is this Hook's own already (a second copy of the Hook in the
// chain): that one goes through untouched.
func (e *engine) scan(items []item, cmds []redis.Cmder) (tx, relevant, nested bool) {
	first, last := txBounds(cmds)
	tx = first >= 0
	region := -1
	for i, cmd := range cmds {
		it := &items[i]
		*it = item{cmd: cmd, orig: cmd, region: -1}
		if ours(cmd, e.sh) {
			return tx, false, true
		}
		orig, w := unwrap(cmd, e.sh)
		k := classify(cmd.Args())
		if w != nil {
			it.orig, k = orig, w.from
		}
		it.k = k
		caller := !tx || (i > first && i < last)
		switch {
		case k == kindScriptFlush:
			relevant = true
			it.region = region
		case !tx && k == kindMulti:
			// A MULTI inside an open one is refused by the server
			// ("MULTI calls can not be nested"): the region stays the
			// first one's, so nothing is placed inside it.
			relevant = true
			if region < 0 {
				region = i
			}
			it.region = region
		case !tx && (k == kindExec || k == kindDiscard):
			relevant = true
			it.region = region // -1: it ends a MULTI sent before this batch
			region = -1
		case k.isScript() && caller:
			sc, ok := parseScript(k, it.orig.Args())
			if !ok {
				it.k = kindOther // malformed: the server answers it
				continue
			}
			relevant = true
			it.call = sc.info()
			it.region = region
			it.blind = region >= 0 || (tx && e.cluster)
			it.s = e.resolve(&sc, w)
		case k.isFCall() && caller:
			// Never rewritten: taken apart for its child span, and for
			// the library the hook may have to load (fnbatch.go).
			sc, ok := parseFCall(k, it.orig.Args())
			if !ok {
				it.k = kindOther
				continue
			}
			it.call = sc.info()
			it.region = region
			if it.lib = e.sh.libs.forFunction(sc.function); it.lib != nil {
				relevant = true
			}
		case k == kindFunction:
			relevant = true
			it.region = region
		default:
			if region >= 0 {
				it.region = region
			}
		}
	}
	return tx, relevant, false
}

// txBounds returns the indexes of MULTI and EXEC when the batch is a
// transaction as go-redis builds it, [ASKING] MULTI ... EXEC (a ClusterClient
// that follows an ASK redirect sends the ASKING first), else -1, -1.
func txBounds(cmds []redis.Cmder) (int, int) {
	start := 0
	if len(cmds) > 0 && classify(cmds[0].Args()) == kindAsking {
		start = 1
	}
	last := len(cmds) - 1
	if last-start < 1 {
		return -1, -1
	}
	_, multi := cmds[start].(*redis.StatusCmd)
	_, exec := cmds[last].(*redis.SliceCmd)
	if !multi || !exec || classify(cmds[start].Args()) != kindMulti || classify(cmds[last].Args()) != kindExec {
		return -1, -1
	}
	return start, last
}

// sendChunk plans, sends and settles one batch or sub-batch.
func (e *engine) sendChunk(ctx context.Context, items []item, cmds []redis.Cmder, tx bool, next redis.ProcessPipelineHook, br *batchRun) error {
	p := &batchPlan{items: items, tx: tx}
	e.group(p)
	br.scripts += p.scripts
	if !e.sh.cfg.rewrite && !p.fcalls {
		// Sent as written; only the bodies that go out are counted.
		err := next(ctx, cmds)
		e.settle(p, br)
		e.fnEffects(p)
		br.recordAll(items)
		return err
	}
	if e.sh.cfg.rewrite {
		e.decide(p)
	}
	defer e.abandonFns(p)
	if err := e.fnPlan(ctx, p); err != nil {
		for _, c := range cmds {
			c.SetErr(err)
		}
		return err
	}
	e.build(p, cmds)
	setActive(p.out, true)
	err := next(ctx, p.out)
	setActive(p.out, false)
	e.readOnlyLoad(p.out, err)
	e.settle(p, br)
	if !e.sh.cfg.rewrite {
		for i := range items {
			if items[i].k.isScript() {
				items[i].failed = false // sent as written, and left so
			}
		}
	}
	if !tx {
		if rerr, retried := e.retry(ctx, p, next, br); retried && rerr != nil && !isRedisError(rerr) {
			err = rerr
		}
	} else {
		e.loadAfterTx(ctx, p, next, br)
	}
	e.fnEffects(p)
	e.passNoScript(p)
	br.recordAll(items)
	return err
}

// readOnlyLoad takes back the close of a connection whose batch began with
// the hook's FUNCTION LOAD and was refused READONLY (see readOnlyClosed):
// go-redis closes a connection on the batch's first error when it is
// READONLY.
func (e *engine) readOnlyLoad(out []redis.Cmder, err error) {
	if len(out) == 0 {
		return
	}
	if _, own := out[0].(*fnLoadCmd); own && isReadOnly(err) {
		e.srv.readOnlyClosed()
	}
}

// recordAll keeps the batch's script and function commands for child
// spans, when the batch span is recording.
func (br *batchRun) recordAll(items []item) {
	if br.children == nil {
		return
	}
	for i := range items {
		if k := items[i].k; k.isScript() || k.isFCall() {
			br.record(&items[i])
		}
	}
}

// setActive marks the hook's own commands as in flight below it (see mark).
func setActive(out []redis.Cmder, on bool) {
	for _, c := range out {
		switch c := c.(type) {
		case *rewritten:
			c.active.Store(on)
		case *loadCmd:
			c.active.Store(on)
		case *fnLoadCmd:
			c.active.Store(on)
		}
	}
}

// batchErr is the error go-redis would return for the caller's batch: a
// transport or reply-parsing error first (go-redis returns the pipeline's
// own error before looking at the commands), else the first command error
// in the caller's order.
func batchErr(cmds []redis.Cmder, err error) error {
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
