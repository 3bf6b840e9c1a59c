package scripthook

import (
	"sync"

	"github.com/redis/go-redis/v9"
)

// lruSafe is how many distinct scripts a batch may bring to a server with
// their bodies in EVAL commands and still use them by SHA1 later in the same
// batch. Redis 7.4+ and Valkey 8 keep the scripts EVAL creates in an LRU of
// 500; the batch's own scripts cannot push each other out below that, and
// half of it is left for other clients' EVALs arriving meanwhile. Only
// ClusterClient transactions use bodies this way (they may add no SCRIPT
// LOAD); everywhere else a batch's bodies go as SCRIPT LOAD, which is never
// evicted.
const lruSafe = 250

// item is one command of a batch as the plan sees it.
type item struct {
	cmd  redis.Cmder // as the hook was given it (what go-redis tracks)
	orig redis.Cmder // the caller's command: cmd, or the one inside a re-sent rewritten
	k    kind
	call callInfo
	s    *script // nil: not a script command, or its body is unknown
	u    *use
	form sent
	// failed: the reply proves the command did not run (the server's
	// NOSCRIPT, or its refusal of the hook's EVALSHA); settle sets it.
	// repaired: the retry ran it. index is its place in the batch (for a
	// retry's items).
	failed, repaired bool
	index            int
	// loaded: the hook's SCRIPT LOAD of its script went just before it, or
	// its retry carried the body (its span says a body was sent).
	loaded bool
	// cause is why a failed use's script was missing.
	cause cause
	// blind: the reply proves nothing (QUEUED inside a MULTI the caller
	// wrote, or a ClusterClient transaction, whose redirect leaves replies
	// empty).
	blind bool
	// region is the index of the MULTI the caller wrote that this command
	// is inside (the MULTI itself included), or -1.
	region int
	// lib is the registered library of an FCALL's function, or nil.
	lib *library
}

// callInfo is what later stages need of a scriptCall: no body, which may
// alias a caller's buffer.
type callInfo struct {
	numKeys int32
	nargs   int32
	// arg is the caller's second argument for EVALSHA (the SHA1) and FCALL
	// (the function); "" for EVAL.
	arg string
}

// use is one script's part in one segment of a batch (segments are split by
// the batch's own SCRIPT FLUSH commands).
type use struct {
	s   *script
	sha string // "" while unknown (FIPS 140-only mode)
	seg int
	// n counts the uses; first is the item index of the first.
	n, first int
	// evals counts the uses that carry the body (EVAL, EVAL_RO); saved is
	// what sending those by SHA1 writes less; rw and ro say which by-SHA1
	// commands the uses would need.
	evals, saved int
	rw, ro       bool
	// evalRW and evalRO: the caller wrote EVAL, EVAL_RO of the script.
	evalRW, evalRO bool
	mode           useMode
	// b and gen are the belief when the batch was planned.
	b   belief
	gen uint64
	// carrier is the hook's SCRIPT LOAD that brings the body ahead of the
	// first use; at is the item index it goes before.
	carrier *loadCmd
	at      int
	ticket  loadTicket
	// forgot: a NOSCRIPT has lowered the belief already, for cause.
	forgot bool
	cause  cause
}

// useMode is how a script's uses in a batch go out.
type useMode uint8

const (
	// modeAsWritten: every use as the caller wrote it.
	modeAsWritten useMode = iota
	// modeLoad: the hook's SCRIPT LOAD ahead of the first use, then every
	// use by SHA1.
	modeLoad
	// modeTrusted: by SHA1 with no body (optimistic mode, believed present).
	modeTrusted
	// modeEvalCarrier: the first use carries the body (as written, or an
	// EVAL of the known body), later uses by SHA1. ClusterClient
	// transactions only.
	modeEvalCarrier
	// modeLearn: every use as written, plus the hook's SCRIPT LOAD ahead of
	// the first: the server gets the script (a registered one, whose
	// caller's EVALSHA then finds it), and the reply tells the SHA1 the hook
	// may not compute (FIPS 140-only mode).
	modeLearn
	// modeWarmFirst: the first use carries the body, later uses as written:
	// a registered script in a transaction, where nothing may be added
	// that the server could refuse.
	modeWarmFirst
)

// batchPlan is one batch taken apart and its outgoing form.
type batchPlan struct {
	items []item
	uses  []*use
	index map[any]*use // by key; built once uses gets long
	// tx: the batch is a go-redis transaction, [ASKING] MULTI ... EXEC.
	tx bool
	// open: the batch ends inside a MULTI the caller wrote.
	open bool
	// scripts counts the caller's script commands.
	scripts int
	// askSHA, askSHARO and askLoad end the batch with probes of what the
	// server lets the user run, when it has not said: EVALSHA and
	// EVALSHA_RO of no script, and a SCRIPT LOAD of a body that does not
	// compile. None of them runs or creates anything.
	askSHA, askSHARO, askLoad bool
	probes                    []*redis.Cmd
	out                       []redis.Cmder
	// fcalls: the batch calls functions of registered libraries;
	// fnChange: it holds a FUNCTION FLUSH, DELETE, LOAD or RESTORE of the
	// caller's, after which the hook adds no load and retries no call.
	// fnLoads are the hook's loads in the batch, fnAfter those that follow
	// a transaction (see fnbatch.go).
	fcalls, fnChange bool
	fnLoads, fnAfter []*fnCarrier
	// fnGen is each library's belief generation when the batch was planned.
	fnGen map[*library]uint64
	// notQueued: the batch re-sends calls answered "Function not found",
	// which proves they ran outside any MULTI (a queued command is answered
	// QUEUED): a MULTI the caller has open elsewhere does not stop the
	// loads that repair them.
	notQueued bool
}

// itemPool recycles the plan's own bookkeeping. Only the plan's items go
// back, never anything handed to next: hooks after scripthook and a
// ClusterClient's re-sends may hold commands and slices for as long as they
// like.
var itemPool = sync.Pool{New: func() any { return new([]item) }}

// maxPooledItems bounds the batches whose bookkeeping is kept for reuse.
const maxPooledItems = 1 << 14

func getItems(n int) *[]item {
	p := itemPool.Get().(*[]item)
	if cap(*p) < n {
		*p = make([]item, n)
	}
	*p = (*p)[:n]
	return p
}

func putItems(p *[]item) {
	if cap(*p) > maxPooledItems {
		return
	}
	clear((*p)[:cap(*p)])
	*p = (*p)[:0]
	itemPool.Put(p)
}

func (p *batchPlan) lookup(s *script, seg int) *use {
	if p.index != nil {
		if u := p.index[key(s)]; u != nil && u.seg == seg {
			return u
		}
		return nil
	}
	k := key(s)
	for i := len(p.uses) - 1; i >= 0; i-- {
		if u := p.uses[i]; key(u.s) == k && u.seg == seg {
			return u
		}
	}
	return nil
}

func (p *batchPlan) add(u *use) {
	p.uses = append(p.uses, u)
	if p.index != nil {
		p.index[key(u.s)] = u
	} else if len(p.uses) > 16 {
		p.index = make(map[any]*use, 2*len(p.uses))
		for _, v := range p.uses {
			p.index[key(v.s)] = v // the latest segment's use wins
		}
	}
}

// key identifies a script within a batch: by SHA1, since a small cache may
// hand out two objects for one body within one batch, or by the object
// while the SHA1 is not known.
func key(s *script) any {
	if sha := s.hex(); sha != "" {
		return sha
	}
	return s
}
