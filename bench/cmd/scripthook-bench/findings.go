package main

import (
	"fmt"
	"math"
	"strings"
)

// findRow returns the first row of group g with the given shape.
func (s *suite) findRow(g group, mode rowMode, multi bool, size int) *row {
	for _, r := range s.rows {
		if r.group == g && r.mode == mode && (r.goroutines > 1) == multi && (size == 0 || r.size == size) {
			return r
		}
	}
	return nil
}

func (s *suite) largestSize() int {
	m := 0
	for _, sz := range s.cfg.sizes {
		m = max(m, sz)
	}
	return m
}

// findings are data-driven observations for the report: each sentence is
// computed from this run's figures.
func findings(s *suite) []string {
	var out []string
	big := s.largestSize()

	// Bytes on the wire.
	if r := s.findRow(groupMain, modeSingle, true, big); r != nil {
		as := aggregate(r)
		ev, h, lim := findAgg(as, cEval), findAgg(as, cScripthook), findAgg(as, cEvalSha)
		if ev != nil && h != nil && lim != nil {
			out = append(out, fmt.Sprintf("**Bytes.** With the %s script, plain Eval writes %s B per call, scripthook %s B and the preloaded EvalSha %s B: once warm, scripthook sends exactly what hand-written EVALSHA sends. Eval's server CPU per call is %s µs against %s µs for scripthook, because the server reads and hashes the whole body on every EVAL.",
				sizeLabel(big), fmtNum(ev.bytes), fmtNum(h.bytes), fmtNum(lim.bytes), fmtNum(ev.srvUs), fmtNum(h.srvUs)))
		}
	}
	if r := s.findRow(groupMain, modePipeline, false, big); r != nil {
		as := aggregate(r)
		h, lim := findAgg(as, cScripthook), findAgg(as, cEvalSha)
		if h != nil && lim != nil {
			out = append(out, fmt.Sprintf("**Pipelines.** In its default strict mode scripthook sends each script's body once per batch, ahead of its first use, so a batch never depends on the server's cache: %s B per call against %s B for the preloaded EvalSha with the %s script (one body per %d calls).",
				fmtNum(h.bytes), fmtNum(lim.bytes), sizeLabel(big), s.cfg.batch))
		}
	}

	// Client cost of the hook.
	var dSingle, dPipe, dAllocs []float64
	for _, r := range s.rows {
		if r.group != groupMain {
			continue
		}
		as := aggregate(r)
		h, lim := findAgg(as, cScripthook), findAgg(as, cEvalSha)
		if h == nil || lim == nil {
			continue
		}
		if h.dCliLimit.n == 0 {
			continue
		}
		// Paired within rounds: the machine's speed changes between rounds.
		d := h.dCliLimit.med
		if r.mode == modePipeline {
			dPipe = append(dPipe, d)
		} else {
			dSingle = append(dSingle, d)
		}
		dAllocs = append(dAllocs, h.dAllocsLimit.med)
	}
	if len(dSingle) > 0 && len(dPipe) > 0 {
		pipeShare := ""
		if r := s.findRow(groupMain, modePipeline, false, s.cfg.sizes[0]); r != nil {
			if lim := findAgg(aggregate(r), cEvalSha); lim != nil && lim.cps.med > 0 {
				pipeShare = fmt.Sprintf(" A pipelined call takes about %s µs of wall time here (client and server share two cores), so the hook's client work is most visible in pipelines.",
					fmtNum(1e6/lim.cps.med))
			}
		}
		out = append(out, fmt.Sprintf("**Client cost.** Over the warm rows scripthook uses a median %s µs client CPU per single call and %s µs per pipelined call over the preloaded EvalSha (per-round paired differences), and %s allocations per call (the rewritten command); the hook parses each command, finds the body in its cache by the string's identity and swaps the body for the SHA1 argument.%s",
			fmtSigned(median(dSingle)), fmtSigned(median(dPipe)), fmtSigned(median(dAllocs)), pipeShare))
	}

	// Cold start herd.
	if r := s.findRow(groupCold, modeCold, true, big); r != nil {
		as := aggregate(r)
		h, run, ru, lim := findAgg(as, cScripthook), findAgg(as, cScriptRun), findAgg(as, cRueidis), findAgg(as, cEvalSha)
		if h != nil && run != nil && ru != nil && lim != nil {
			n := float64(r.goroutines * r.calls)
			body := float64(r.size)
			out = append(out, fmt.Sprintf("**Cold start.** After SCRIPT FLUSH, %d goroutines calling at once made Script.Run send about %.1f bodies of %s (every caller gets NOSCRIPT and falls back to EVAL) and rueidis about %.1f, and scripthook about %.1f (per slice of a fresh client; bodies are estimated from the bytes written). The preloaded EvalSha sent %.1f (its SCRIPT LOAD). scripthook hashes the body with SHA1 on first sight, inside the measured time; Script.Run and rueidis hash it when the script object is built, before the clock starts.",
				r.goroutines, bodiesSent(run.bytes, n, body), sizeLabel(r.size), bodiesSent(ru.bytes, n, body), bodiesSent(h.bytes, n, body), bodiesSent(lim.bytes, n, body)))
		}
	}

	// Flushes.
	for _, r := range s.rows {
		if r.group != groupFlush {
			continue
		}
		as := aggregate(r)
		h, lim := findAgg(as, cScripthook), findAgg(as, cEvalSha)
		d := r.hookDelta[cScripthook]
		if h != nil && lim != nil {
			out = append(out, fmt.Sprintf("**SCRIPT FLUSH.** With %d flushes during the row, no NOSCRIPT reached scripthook's caller (%d repaired by the hook); the hand-written EvalSha saw %d. Script.Run and rueidis repair it too, each caller on its own.",
				r.flushes, d.NoScriptRepaired, lim.noScript))
		}
	}

	// rueidis.
	if r := s.findRow(groupMain, modeSingle, true, s.cfg.sizes[0]); r != nil {
		as := aggregate(r)
		ru, lim := findAgg(as, cRueidis), findAgg(as, cEvalSha)
		if ru != nil && lim != nil {
			other := ""
			r1, rp := s.findRow(groupMain, modeSingle, false, s.cfg.sizes[0]), s.findRow(groupMain, modePipeline, false, s.cfg.sizes[0])
			if r1 != nil && rp != nil {
				a1, ap := findAgg(aggregate(r1), cRueidis), findAgg(aggregate(rp), cRueidis)
				if a1 != nil && ap != nil {
					other = fmt.Sprintf(" With one goroutine it runs %.2f× the limit and in explicit pipelines %.2f× (%s script).", a1.vsLimit.med, ap.vsLimit.med, sizeLabel(s.cfg.sizes[0]))
				}
			}
			out = append(out, fmt.Sprintf("**rueidis** runs %.2f× the preloaded EvalSha with %d goroutines (%s script) because it pipelines concurrent calls on one connection by default (server CPU %s µs per call against %s: fewer reads and writes per call), not because of how it runs scripts.%s It also allocates almost nothing per call.",
				ru.vsLimit.med, r.goroutines, sizeLabel(r.size), fmtNum(ru.srvUs), fmtNum(lim.srvUs), other))
		}
	}

	// Noise, as the A/A control saw it.
	var widest, widestIQR float64
	var widestRow string
	for _, r := range s.rows {
		if r.group == groupCold {
			continue
		}
		if aa, ok := aaBand(r); ok && aa.raw.n > 1 {
			if d := math.Max(1-aa.raw.lo, aa.raw.hi-1); d > widest {
				widest, widestRow = d, r.fullLabel()
			}
			widestIQR = math.Max(widestIQR, aa.band.q3-aa.band.q1)
		}
	}
	if widestRow != "" {
		out = append(out, fmt.Sprintf("**Noise.** The A/A control, an identical twin of the reference measured as a contender of its own, was up to %.0f %% off its twin in a single round (%s), and its noise band (the interquartile range of its per-round ratios and their inverses) spanned up to %.0f %% in a warm row: differences of that size between contenders are not told apart by this run. Compare contenders within a row (the ratios were taken within each round); absolute figures of different rows were measured at different times.",
			100*widest, widestRow, 100*widestIQR))
	}

	// Cold start, server CPU.
	if r := s.findRow(groupCold, modeCold, true, big); r != nil {
		as := aggregate(r)
		ev, h, run := findAgg(as, cEval), findAgg(as, cScripthook), findAgg(as, cScriptRun)
		if ev != nil && h != nil && run != nil && !math.IsNaN(h.cmdUs) {
			out = append(out, fmt.Sprintf("**Cold start, server CPU.** With the %s script, the server spent per call %s µs (from /proc; %s µs inside commands by INFO commandstats, %s µs by INFO cpu) for scripthook, %s µs (%s, %s) for Script.Run and %s µs (%s, %s) for plain Eval.",
				sizeLabel(r.size), fmtNum(h.srvUs), fmtNum(h.cmdUs), fmtNum(h.infoCPUUs), fmtNum(run.srvUs), fmtNum(run.cmdUs), fmtNum(run.infoCPUUs), fmtNum(ev.srvUs), fmtNum(ev.cmdUs), fmtNum(ev.infoCPUUs)))
		}
	}

	// Eviction.
	for _, r := range s.rows {
		if r.group != groupEvict {
			continue
		}
		as := aggregate(r)
		ev, h, run, lim := findAgg(as, cEval), findAgg(as, cScripthook), findAgg(as, cScriptRun), findAgg(as, cEvalSha)
		if ev == nil || h == nil || run == nil || lim == nil {
			continue
		}
		d := r.hookDelta[cScripthook]
		out = append(out, fmt.Sprintf("**%s** (%s, which %s): scripthook %.2f × Eval's calls/s with %s B and %s round trips per call against Eval's %s B and %s; Script.Run %.2f × Eval with %s B and %s trips; the preloaded EvalSha %s B and %s trips. scripthook repaired %d NOSCRIPT (%d evictions) and sent %d SCRIPT LOADs over the measured slices.",
			r.label(), s.env.redis, evictionNote(s.env.redis), h.vsEval.med, fmtNum(h.bytes), fmtTrips(h.trips), fmtNum(ev.bytes), fmtTrips(ev.trips),
			run.vsEval.med, fmtNum(run.bytes), fmtTrips(run.trips), fmtNum(lim.bytes), fmtTrips(lim.trips), d.NoScriptRepaired, d.Evicted, d.Loads))
	}

	// FIPS.
	for _, r := range s.rows {
		if r.group != groupFIPS {
			continue
		}
		as := aggregate(r)
		h, ev := findAgg(as, cScripthook), findAgg(as, cEval)
		if h != nil && ev != nil {
			d := r.hookDelta[cScripthook]
			out = append(out, fmt.Sprintf("**FIPS 140-only.** Under GODEBUG=fips140=only scripthook ran %.2f × the preloaded EvalSha and %.2f × Eval (%s B per call against Eval's %s); it learns a script's SHA1 from its own SCRIPT LOAD, here during the warm-up (%d SCRIPT LOADs in the measured slices).",
				h.vsLimit.med, h.vsEval.med, fmtNum(h.bytes), fmtNum(ev.bytes), d.Loads))
		}
	}

	// AutoPipeline.
	var ap []string
	for _, r := range s.rows {
		if r.group != groupAuto {
			continue
		}
		as := aggregate(r)
		h, ru := findAgg(as, cScripthook), findAgg(as, cRueidis)
		if h != nil && ru != nil {
			ap = append(ap, fmt.Sprintf("with %d goroutines scripthook ran %.2f × the preloaded EvalSha (%s trips per call) and rueidis %.2f ×", r.goroutines, h.vsLimit.med, fmtTrips(h.trips), ru.vsLimit.med))
		}
	}
	if len(ap) > 0 {
		out = append(out, "**AutoPipeline.** Through go-redis's AutoPipeliner, "+strings.Join(ap, "; ")+".")
	}

	// FCALL.
	var fc []string
	var loads int64
	for _, r := range s.rows {
		if r.group != groupFCall {
			continue
		}
		as := aggregate(r)
		h, ru := findAgg(as, cFcallHook), findAgg(as, cFcallRueidis)
		aa, ok := aaBand(r)
		if h == nil || !ok {
			continue
		}
		part := fmt.Sprintf("with %s scripthook's FCALL ran %.2f × plain FCALL (noise band %.2f–%.2f: %s), %s µs client CPU and %s allocations per call over it (paired per round)",
			goroutinesLabel(r.goroutines), h.vsLimit.med, aa.band.q1, aa.band.q3, aaPosition(h.vsLimit.med, 1, aa), fmtSigned(h.dCliLimit.med), fmtSigned(h.dAllocsLimit.med))
		if ru != nil {
			part += fmt.Sprintf("; rueidis %.2f ×", ru.vsLimit.med)
		}
		fc = append(fc, part)
		loads += r.hookEnd[cFcallHook].FunctionLoads
	}
	if len(fc) > 0 {
		out = append(out, fmt.Sprintf("**FCALL.** Calling a function of a registered library, %s. The hook sent %d FUNCTION LOAD REPLACE in all (one per row, before its first FCALL, in the warm-up).", strings.Join(fc, "; "), loads))
	}

	// Tracing.
	if s.cfg.tracing {
		var parts []string
		noSpans := false
		for _, r := range s.rows {
			if r.group != groupTrace {
				continue
			}
			as := aggregate(r)
			h, o, on := findAgg(as, cHookTraced), findAgg(as, cEvalOtel), findAgg(as, cEvalOtelNoStmt)
			if h == nil || o == nil || on == nil {
				continue
			}
			if h.spans < 0.001 {
				noSpans = true
				break
			}
			parts = append(parts, fmt.Sprintf("%s: scripthook %s spans/call, %s µs client CPU and %s allocations per call; redisotel %s µs and %s allocations (%s µs and %s without db.statement)",
				r.label(), fmtSpans(h.spans), fmtSigned(h.dCPU.med), fmtSigned(h.dAllocs.med),
				fmtSigned(o.dCPU.med), fmtSigned(o.dAllocs.med), fmtSigned(on.dCPU.med), fmtSigned(on.dAllocs.med)))
		}
		switch {
		case noSpans:
			out = append(out, "**Tracing.** This build of scripthook creates no spans (tracing.go is a stub): its traced row measures a tracer that is never called, so the tracing target is not judged. redisotel's cost on the same workload is in the tracing table, for when spans land.")
		case len(parts) > 0:
			out = append(out, "**Tracing cost** against each contender's untraced twin (medians of per-round differences; wall-time differences are in the table and noisier). "+strings.Join(parts, ". ")+". A pipeline gets one batch span from redisotel, and from scripthook a batch span plus child spans for the first script commands of the batch (WithMaxChildSpans).")
		}
	}
	return out
}

func bodiesSent(bytesPerCall, calls, body float64) float64 {
	const shaCall = 108 // an EVALSHA of this benchmark's shape
	v := (bytesPerCall*calls - shaCall*calls) / body
	if v < 0 {
		return 0
	}
	return v
}

func goroutinesLabel(n int) string {
	if n == 1 {
		return "1 goroutine"
	}
	return fmt.Sprintf("%d goroutines", n)
}
