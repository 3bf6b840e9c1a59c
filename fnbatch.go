package scripthook

import (
	"context"
	"errors"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Functions in a batch. The caller's FCALLs always go as written; what the
// plan adds is the hook's FUNCTION LOAD REPLACE of a registered library the
// server is not known to hold, just before the first call of one of its
// functions (before an ASKING right before it, and before a MULTI the caller
// wrote around it), in the same round trip. A call answered "Function not
// found" anyway is re-sent with the load by the pipeline retry when order
// allows (settle.go); otherwise the caller gets the server's error and the
// library is loaded ahead of the next batch that needs it. A transaction
// carries the load inside its MULTI only where the server cannot refuse it
// while queuing (txMayLoadFns: a refused command queued inside would abort
// it all); otherwise, and after a transaction that met "Function not
// found", the load follows it, as a transaction of its own on the same
// connection (nothing can go before the caller's: an EXEC of the hook's
// would end the caller's WATCH), so the next one finds the library.

// fnCarrier is the hook's FUNCTION LOAD in a batch, placed before item at.
type fnCarrier struct {
	cmd    *fnLoadCmd
	at     int
	flight *fnFlight
	done   bool
}

// errNotSent finishes a load the batch planned but never sent.
var errNotSent = errors.New("scripthook: function load not sent")

// fnPlan decides which libraries the batch loads and where. It waits, with
// the caller's context, for other callers' loads of the libraries it needs,
// but never while it holds a load of its own (two batches waiting for each
// other's loads would wait forever); a library another caller starts
// loading after that goes without, and is repaired like any miss.
func (e *engine) fnPlan(ctx context.Context, p *batchPlan) error {
	if !p.fcalls || p.tx && !e.txMayLoadFns() || e.srv.openMulti.Load() > 0 && !p.notQueued || !e.srv.mayLoadFns() || ctx.Value(inLoadKey{}) != nil {
		return nil
	}
	// The caller's own FUNCTION command in the batch changes what the
	// server holds from there on, which the hook cannot know before the
	// replies: the calls after it go as written. The calls before it are
	// the first calls like any other and get the library ahead of them.
	stop := len(p.items)
	if p.fnChange {
		for i := range p.items {
			if p.items[i].k == kindFunction {
				stop = i
				break
			}
		}
	}
	need := func(i int) bool {
		it := &p.items[i]
		if i >= stop || !it.k.isFCall() || it.lib == nil {
			return false
		}
		held, gen := e.srv.holds(it.lib)
		if p.fnGen == nil {
			p.fnGen = map[*library]uint64{}
		}
		p.fnGen[it.lib] = gen
		return !held && e.preloads(it.k)
	}
	for i := range p.items {
		it := &p.items[i]
		if !need(i) {
			continue
		}
		if f := e.srv.pendingLoad(it.lib); f != nil {
			// A failed load is tried again below; a caller whose context
			// ends while it waits returns at once.
			if f.wait(ctx); ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	for i := range p.items {
		it := &p.items[i]
		if !need(i) || p.fnCarrying(it.lib) {
			continue
		}
		f, own := e.srv.joinLoad(it.lib)
		if !own {
			continue // another caller's, started just now: as written
		}
		at := i
		if it.region >= 0 {
			at = it.region
		}
		p.fnLoads = append(p.fnLoads, &fnCarrier{cmd: newFnLoadCmd(e.sh, it.lib), at: at, flight: f})
		it.loaded = true
	}
	return nil
}

// txMayLoadFns reports whether a go-redis transaction may carry the hook's
// FUNCTION LOAD inside its MULTI, before the first call that needs it. Only
// where nothing of it can abort the caller's transaction: never on a
// ClusterClient node (go-redis reads that transaction's replies into the
// caller's commands by position), and only once this server itself has
// shown that the user may run FUNCTION LOAD and that it is a primary (a
// NOPERM or READONLY while queuing would abort it all; another server's
// answer is not enough here). Before that the transaction goes as written
// and loadAfterTx loads what it needed, so the next one finds it.
func (e *engine) txMayLoadFns() bool {
	return !e.cluster && e.srv.knownPrimary()
}

// fnCarrying reports whether the batch loads lib already.
func (p *batchPlan) fnCarrying(lib *library) bool {
	return carries(p.fnLoads, lib) || carries(p.fnAfter, lib)
}

// carries reports whether one of the loads cs is of lib.
func carries(cs []*fnCarrier, lib *library) bool {
	return slices.ContainsFunc(cs, func(c *fnCarrier) bool { return c.cmd.lib == lib })
}

// fnForges reports an FCALL whose function's own error reply could read
// like "Function not found": it gets no load and no repair.
func (it *item) fnForges() bool {
	return it.lib.mayForge(it.orig.Args())
}

// settleFns reads the replies to the batch's loads and calls: a call
// answered "Function not found" means the server lacks the library; in a
// pipeline whose replies prove it, the call is marked for the retry.
func (e *engine) settleFns(p *batchPlan) {
	for _, c := range p.fnLoads {
		e.finishCarrier(c, nil)
	}
	if !p.fcalls {
		return
	}
	for i := range p.items {
		it := &p.items[i]
		if !it.k.isFCall() || it.lib == nil || !isNoFunction(it.orig.Err()) {
			continue
		}
		if it.fnForges() {
			continue
		}
		gen, planned := p.fnGen[it.lib]
		if !planned {
			_, gen = e.srv.holds(it.lib)
		}
		e.srv.missing(it.lib.name, gen)
		// Retried only where the retry will carry the load: never an
		// FCALL_RO of a read-routed ClusterClient (see preloads), whose
		// retry would fail the same way after one more round trip.
		if !p.tx && it.region < 0 && !p.fnChange && e.srv.mayLoadFns() && e.preloads(it.k) {
			it.failed = true
		}
	}
}

// finishCarrier settles one load of the batch, once.
func (e *engine) finishCarrier(c *fnCarrier, err error) {
	if c.done {
		return
	}
	c.done = true
	if err != nil {
		e.srv.finishLoad(c.flight, err)
		return
	}
	e.settleFnLoad(c.flight, c.cmd, nil)
}

// abandonFns finishes the loads a batch planned and did not settle (it
// failed before sending them), so that no caller waits for them.
func (e *engine) abandonFns(p *batchPlan) {
	for _, c := range p.fnLoads {
		e.finishCarrier(c, errNotSent)
	}
	for _, c := range p.fnAfter {
		e.finishCarrier(c, errNotSent)
	}
}

// loadAfterTx sends, after a go-redis transaction, the loads it needed, as
// a transaction of their own on the same connection (MULTI, FUNCTION LOAD
// REPLACE..., EXEC: the only batch shape next accepts there). Its replies
// are the hook's own: the libraries the transaction called that the server
// is not known to hold (it has not had them from the hook, or a call in the
// transaction was answered "Function not found"). A ClusterClient's
// transaction reads the replies into the caller's commands whatever the hook
// sends, so there nothing follows: the next single call or pipeline to that
// node loads it.
func (e *engine) loadAfterTx(ctx context.Context, p *batchPlan, next redis.ProcessPipelineHook, br *batchRun) {
	if !p.fcalls || p.fnChange || e.cluster || ctx.Err() != nil || !e.srv.mayLoadFns() || ctx.Value(inLoadKey{}) != nil {
		return
	}
	for i := range p.items {
		it := &p.items[i]
		if !it.k.isFCall() || it.lib == nil || carries(p.fnAfter, it.lib) {
			continue
		}
		// A load the transaction carried and lost (EXECABORT, WATCH)
		// left the library not held: it is loaded after, as for a miss.
		if held, _ := e.srv.holds(it.lib); held {
			continue
		}
		if f, own := e.srv.joinLoad(it.lib); own {
			p.fnAfter = append(p.fnAfter, &fnCarrier{cmd: newFnLoadCmd(e.sh, it.lib), at: -1, flight: f})
		}
	}
	if len(p.fnAfter) == 0 {
		return
	}
	cmds := make([]redis.Cmder, 0, len(p.fnAfter)+2)
	cmds = append(cmds, redis.NewStatusCmd(ctx, "multi"))
	for _, c := range p.fnAfter {
		cmds = append(cmds, c.cmd)
	}
	cmds = append(cmds, redis.NewSliceCmd(ctx, "exec"))
	setActive(cmds, true)
	err := next(context.WithValue(ctx, inLoadKey{}, p.fnAfter[0].flight), cmds)
	setActive(cmds, false)
	for _, c := range p.fnAfter {
		br.bodies++
		if err != nil && c.cmd.Err() == nil && !isRedisError(err) {
			c.cmd.SetErr(err)
		}
		e.finishCarrier(c, nil)
	}
}

// fnEffects records what the caller's own FUNCTION commands in the batch
// changed on the server, and counts the "Function not found" replies of
// registered libraries' calls that reach the caller.
func (e *engine) fnEffects(p *batchPlan) {
	if !p.fcalls && !p.fnChange {
		return
	}
	n := 0
	for i := range p.items {
		it := &p.items[i]
		switch {
		case it.k == kindFunction && it.orig.Err() == nil && !p.tx && it.region < 0:
			e.functionChanged(it.orig.Args())
		case it.k == kindFunction && p.tx:
			e.srv.resetFns() // inside a transaction its reply is only known from EXEC's
		case it.k.isFCall() && it.lib != nil && isNoFunction(it.orig.Err()):
			n++
		}
	}
	e.sh.fns.passed.Add(int64(n))
}

// fnVerify asks the server, before a pipeline's retry and in one round
// trip, whether it holds the functions of the failed calls: any function's
// own reply can read "Function not found" (an error reply built from
// arguments joined or from a key, a table whose field name is an
// argument), and only an absent function proves the reply the server's. A
// call whose function is there got its own reply and ran: it is not sent
// again, and since it took effect, neither is any failed call before it
// (the retry must not reorder). A listing that cannot be read counts as the
// function being there (the reply stands; settleFns has already made the
// next batch carry the load).
func (e *engine) fnVerify(ctx context.Context, p *batchPlan, next redis.ProcessPipelineHook) {
	var libs []*library
	for i := range p.items {
		it := &p.items[i]
		if !it.failed || !it.k.isFCall() || it.lib == nil || slices.Contains(libs, it.lib) {
			continue
		}
		if gen, planned := p.fnGen[it.lib]; planned && e.srv.loadedSince(it.lib, gen) {
			continue // another caller's load since: see runFCall
		}
		libs = append(libs, it.lib)
	}
	if len(libs) == 0 {
		return
	}
	lists := make([]fnListCmd, len(libs))
	cmds := make([]redis.Cmder, len(libs))
	for i, l := range libs {
		lists[i] = newFnListCmd(ctx, l)
		cmds[i] = lists[i].FunctionListCmd
	}
	_ = next(ctx, cmds) // each listing's error is its own, read by holds
	last := -1
	for i := range p.items {
		it := &p.items[i]
		if j := slices.Index(libs, it.lib); it.failed && it.k.isFCall() && j >= 0 && lists[j].holds(it.lib, it.call.arg) {
			last = i
		}
	}
	for i := 0; i <= last; i++ {
		p.items[i].failed = false
	}
}
