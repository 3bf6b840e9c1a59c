package main

import (
	"fmt"
	"math"
	"strings"
)

// verdict is one target check.
type verdict struct {
	row, target, result, detail string
	met                         bool // not missed (met, or short of it within the A/A control's spread)
	judged                      bool
	noise                       bool // short of the target, but within the A/A control's spread
	narrow                      bool // met, with a gap to the limit beyond the A/A control's spread
}

func (v *verdict) label() string {
	switch {
	case !v.judged:
		return "not judged"
	case v.noise:
		return "within A/A noise"
	case v.narrow:
		return "met (gap beyond A/A noise)"
	case v.met:
		return "met"
	}
	return "**missed**"
}

func findAgg(as []agg, c contender) *agg {
	for i := range as {
		if as[i].c == c {
			return &as[i]
		}
	}
	return nil
}

// limitTarget is the ratio to the preloaded EvalSha the hook must reach.
const limitTarget = 0.90

// checkTargets evaluates the project's targets on every row. A target that
// compares calls/s is missed only when the gap lies outside the spread an
// identical twin (the A/A control) shows in the same row: the hook's median
// per-round ratio below the target times the lower end of the A/A noise
// band (see aaSpread).
func checkTargets(s *suite) []verdict {
	var vs []verdict
	for _, r := range s.rows {
		as := aggregate(r)
		aa, hasAA := aaBand(r)
		if r.group == groupTrace {
			ht, ctl := findAgg(as, cHookTraced), findAgg(as, cEvalControl)
			for _, oc := range []contender{cEvalOtel, cEvalOtelNoStmt} {
				if ot := findAgg(as, oc); ht != nil && ot != nil {
					vs = append(vs, traceVerdict(r, ht, ot, ctl))
				}
			}
			if hn, on := findAgg(as, cHookNever), findAgg(as, cEvalOtelNever); hn != nil && on != nil {
				vs = append(vs, traceVerdict(r, hn, on, ctl))
			}
			continue
		}
		if r.group == groupFCall {
			if h, ref := findAgg(as, cFcallHook), findAgg(as, cFcall); h != nil && ref != nil {
				vs = append(vs, fcallVerdict(r, h, ref, aa, hasAA))
			}
			continue
		}
		h, lim, ev := findAgg(as, cScripthook), findAgg(as, cEvalSha), findAgg(as, cEval)
		if h == nil || lim == nil || ev == nil {
			continue
		}
		if r.group != groupEvict {
			vs = append(vs, limitVerdict(r, h, lim, aa, hasAA))
		}
		vs = append(vs, evalVerdict(r, h, ev, aa, hasAA))
		if r.group == groupEvict {
			vs = append(vs, wireVerdicts(r, h, ev)...)
		}
	}
	return vs
}

// aaText is the A/A control's spread for a verdict's result.
func aaText(aa aaSpread, ok bool) string {
	if !ok {
		return "no A/A control in this row"
	}
	return "A/A control " + fmtBand(aa)
}

// limitVerdict: scripthook's calls/s at least 0.90 × the preloaded
// EvalSha's, unless the shortfall is within the A/A spread.
func limitVerdict(r *row, h, lim *agg, aa aaSpread, hasAA bool) verdict {
	v := verdict{row: r.label(), target: fmt.Sprintf("≥ %.2f × EvalSha preloaded", limitTarget), judged: true}
	m := h.vsLimit.med
	v.result = fmt.Sprintf("%.2f × (rounds %.2f–%.2f); %s", m, h.vsLimit.lo, h.vsLimit.hi, aaText(aa, hasAA))
	if r.flush {
		v.detail = fmt.Sprintf("The preloaded EvalSha returned %d NOSCRIPT errors here (its failed calls are not counted as calls); scripthook %d. ", lim.noScript, h.noScript)
	}
	thr := limitTarget
	if hasAA {
		thr = limitTarget * aa.band.q1
	}
	switch {
	case m >= limitTarget:
		v.met = true
		if hasAA && m < aa.band.q1 {
			v.narrow = true
			v.detail += fmt.Sprintf("Slower than the limit by more than the A/A noise band (%.2f < %.2f): %s", m, aa.band.q1, whyVsLimit(h, lim))
		}
	case m >= thr:
		v.met, v.noise = true, true
		v.detail += fmt.Sprintf("Below %.2f, but not below %.2f × the lower end of the A/A noise band (%.3f): an identical twin is that far off in a quarter of the rounds. %s", limitTarget, limitTarget, thr, whyVsLimit(h, lim))
	default:
		v.detail += fmt.Sprintf("Below %.2f × the lower end of the A/A noise band (%.3f). %s", limitTarget, thr, whyVsLimit(h, lim))
	}
	if f, ok := r.interference(); ok && f >= 0.10 && (!v.met || v.noise || v.narrow) {
		v.detail += fmt.Sprintf(" Other processes used %.0f %% of the machine's CPU time during this row.", 100*f)
	}
	return v
}

// evalVerdict: scripthook not slower than plain Eval beyond the A/A spread.
func evalVerdict(r *row, h, ev *agg, aa aaSpread, hasAA bool) verdict {
	target := "not slower than Eval beyond A/A noise"
	if r.group == groupEvict {
		target = "never worse than plain Eval: calls/s"
	}
	w := verdict{row: r.label(), target: target, judged: true}
	m := h.vsEval.med
	w.result = fmt.Sprintf("%.2f × Eval (rounds %.2f–%.2f); %s", m, h.vsEval.lo, h.vsEval.hi, aaText(aa, hasAA))
	lo := 1.0
	if hasAA {
		lo = aa.band.q1
	}
	w.met = m >= lo
	if !w.met {
		w.detail = fmt.Sprintf("Below the lower end of the A/A noise band (%.2f). %s", lo, whyVsLimit(h, ev))
	}
	return w
}

// fcallVerdict: FCALL through scripthook not slower than plain FCALL (the
// library preloaded by hand) beyond the A/A spread (issue 14: the hook's
// cost should be within noise).
func fcallVerdict(r *row, h, ref *agg, aa aaSpread, hasAA bool) verdict {
	v := verdict{row: r.label(), target: "FCALL through scripthook within A/A noise of plain FCALL", judged: true}
	m := h.vsLimit.med
	v.result = fmt.Sprintf("%.2f × plain FCALL (rounds %.2f–%.2f); %s", m, h.vsLimit.lo, h.vsLimit.hi, aaText(aa, hasAA))
	lo := 1.0
	if hasAA {
		lo = aa.band.q1
	}
	v.met = m >= lo
	switch {
	case !v.met:
		v.detail = fmt.Sprintf("Below the lower end of the A/A noise band (%.2f). %s", lo, whyVsLimit(h, ref))
	case hasAA && m > aa.band.q3:
		v.detail = fmt.Sprintf("Above the upper end of the A/A noise band (%.2f).", aa.band.q3)
	}
	if f, ok := r.interference(); ok && f >= 0.10 && !v.met {
		v.detail += fmt.Sprintf(" Other processes used %.0f %% of the machine's CPU time during this row.", 100*f)
	}
	return v
}

// wireVerdicts: on the eviction rows scripthook must write no more bytes
// and make no more round trips per call than plain Eval.
func wireVerdicts(r *row, h, ev *agg) []verdict {
	b := verdict{row: r.label(), target: "never worse than plain Eval: bytes written per call", judged: true}
	b.met = h.bytes <= ev.bytes
	b.result = fmt.Sprintf("scripthook %s B, Eval %s B per call (all rounds)", fmtNum(h.bytes), fmtNum(ev.bytes))
	t := verdict{row: r.label(), target: "never worse than plain Eval: round trips per call", judged: true}
	t.met = h.trips <= ev.trips
	t.result = fmt.Sprintf("scripthook %s, Eval %s round trips per call (all rounds)", fmtTrips(h.trips), fmtTrips(ev.trips))
	if d, ok := r.hookDelta[cScripthook]; ok {
		t.detail = fmt.Sprintf("scripthook over the measured slices: %d NOSCRIPT repaired (%d of them evictions), %d SCRIPT LOADs, %d calls rewritten, %d bodies sent.",
			d.NoScriptRepaired, d.Evicted, d.Loads, d.Rewritten, d.BodiesSent)
	}
	return []verdict{b, t}
}

// traceVerdict compares scripthook's span overhead with one redisotel
// variant's on a tracing row; ctl is the A/A control (a second plain Eval),
// whose per-round difference to Eval is what no difference looks like.
func traceVerdict(r *row, ht, ot, ctl *agg) verdict {
	target := "scripthook span overhead ≤ redisotel's"
	switch ot.c {
	case cEvalOtelNoStmt:
		target += " (redisotel with db.statement off)"
	case cEvalOtelNever:
		target += " (both on a provider that samples nothing)"
	}
	v := verdict{row: r.fullLabel(), target: target}
	v.result = fmt.Sprintf("scripthook %s µs/call wall, %s µs/call client CPU, %s allocs/call; redisotel %s µs/call wall, %s µs/call client CPU, %s allocs/call",
		fmtSigned(ht.dWall.med), fmtSigned(ht.dCPU.med), fmtSigned(ht.dAllocs.med), fmtSigned(ot.dWall.med), fmtSigned(ot.dCPU.med), fmtSigned(ot.dAllocs.med))
	noiseCPU, noiseWall := 0.0, 0.0
	if ctl != nil && ctl.dCPU.n > 0 {
		noiseCPU, noiseWall = ctl.dCPU.q3-ctl.dCPU.q1, ctl.dWall.q3-ctl.dWall.q1
		v.result += fmt.Sprintf("; A/A control (Eval vs Eval) %s µs/call client CPU (IQR %s…%s), %s µs/call wall (IQR %s…%s)",
			fmtSigned(ctl.dCPU.med), fmtSigned(ctl.dCPU.q1), fmtSigned(ctl.dCPU.q3), fmtSigned(ctl.dWall.med), fmtSigned(ctl.dWall.q1), fmtSigned(ctl.dWall.q3))
	}
	if ht.spans < 0.001 && ht.c != cHookNever {
		v.detail = "scripthook recorded no spans in this build, so its overhead is that of a disabled tracer; the target cannot be judged."
		return v
	}
	v.judged = true
	// Client CPU per call is the cost tracing adds; wall time per call on
	// two shared cores is noisier, so both must be worse for a miss, each
	// by more than the A/A control's interquartile range.
	switch {
	case ht.dCPU.med <= ot.dCPU.med || ht.dWall.med <= ot.dWall.med:
		v.met = true
	case ht.dCPU.med-ot.dCPU.med <= noiseCPU || ht.dWall.med-ot.dWall.med <= noiseWall:
		v.met, v.noise = true, true
	default:
		v.detail = fmt.Sprintf("scripthook made %s spans/call and %+.1f allocs/call over its untraced run; redisotel %s spans/call and %+.1f allocs/call.",
			fmtSpans(ht.spans), ht.dAllocs.med, fmtSpans(ot.spans), ot.dAllocs.med)
	}
	return v
}

// whyVsLimit compares scripthook's per-call costs with another contender's,
// the evidence for a missed target.
func whyVsLimit(h, o *agg) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("client CPU %s vs %s µs/call", fmtNum(h.cliUs), fmtNum(o.cliUs)))
	if (o.c == cEvalSha || o.c == cFcall) && h.dCliLimit.n > 0 {
		parts = append(parts, fmt.Sprintf("paired per-round difference %s µs client CPU and %s allocations per call", fmtSigned(h.dCliLimit.med), fmtSigned(h.dAllocsLimit.med)))
	}
	parts = append(parts, fmt.Sprintf("allocations %s vs %s /call", fmtNum(h.allocs), fmtNum(o.allocs)))
	if h.srvKnown && o.srvKnown {
		parts = append(parts, fmt.Sprintf("server CPU %s vs %s µs/call", fmtNum(h.srvUs), fmtNum(o.srvUs)))
	}
	parts = append(parts, fmt.Sprintf("bytes written %s vs %s /call", fmtNum(h.bytes), fmtNum(o.bytes)))
	parts = append(parts, fmt.Sprintf("round trips %s vs %s /call", fmtTrips(h.trips), fmtTrips(o.trips)))
	parts = append(parts, fmt.Sprintf("p50 %s vs %s", fmtDur(h.p50), fmtDur(o.p50)))
	return fmt.Sprintf("%s vs %s: %s.", h.c, o.c, strings.Join(parts, "; "))
}

func fmtTrips(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v > 0 && v < 0.01:
		return fmt.Sprintf("%.4f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
