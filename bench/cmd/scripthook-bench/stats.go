package main

import (
	"fmt"
	"math"
	"sort"
)

// stat is a median with the range and the quartiles it was taken from.
type stat struct {
	med, lo, hi float64
	q1, q3      float64 // 25th and 75th percentiles (linear interpolation)
	n           int
}

func summarize(v []float64) stat {
	if len(v) == 0 {
		nan := math.NaN()
		return stat{med: nan, lo: nan, hi: nan, q1: nan, q3: nan}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return stat{med: quantile(s, 0.5), lo: s[0], hi: s[len(s)-1], q1: quantile(s, 0.25), q3: quantile(s, 0.75), n: len(s)}
}

// quantile of sorted values, interpolating linearly between order
// statistics (the usual "type 7" definition).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	h := q * float64(len(sorted)-1)
	i := int(math.Floor(h))
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (h-float64(i))*(sorted[i+1]-sorted[i])
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return quantile(s, 0.5)
}

func mapSamples(ss []sample, f func(*sample) float64) []float64 {
	out := make([]float64, 0, len(ss))
	for i := range ss {
		v := f(&ss[i])
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

// agg is one contender's line of a row.
type agg struct {
	c                       contender
	cps                     stat
	vsEval, vsLimit         stat
	dCliLimit, dAllocsLimit stat    // per-round client CPU µs and allocs per call minus the limit's
	p50, p99                float64 // ns
	bytes, trips            float64 // per call
	srvUs, cliUs            float64 // per call
	allocs, spans           float64 // per call
	cmdUs, infoCPUUs        float64 // per call, from INFO (NaN when not read)
	srvKnown, srvExact      bool
	calls, wrong, noScript  int64
	otherErr, all           int64
	firstErr                string
	// Tracing rows: per-call cost against the untraced base.
	base                 contender
	hasBase              bool
	dWall, dCPU, dAllocs stat
}

// pooledPerCall is a count summed over all rounds per call of all rounds.
func pooledPerCall(ss []sample, f func(*sample) int64) float64 {
	var n, calls int64
	for i := range ss {
		n += f(&ss[i])
		calls += ss[i].total()
	}
	if calls == 0 {
		return math.NaN()
	}
	return float64(n) / float64(calls)
}

func perCall(f func(*sample) float64) func(*sample) float64 {
	return func(s *sample) float64 {
		t := s.total()
		if t == 0 {
			return math.NaN()
		}
		return f(s) / float64(t)
	}
}

// traceBase is the untraced contender a traced one is compared to.
func traceBase(c contender) (contender, bool) {
	switch c {
	case cEvalOtel, cEvalOtelNoStmt, cHookOff, cEvalControl, cEvalOtelNever:
		return cEval, true
	case cHookTraced, cHookNever:
		return cHookOff, true
	}
	return 0, false
}

// aggregate reduces a row's rounds to medians. Ratios are taken within each
// round (the contenders of one round ran back to back) and then the median
// of those ratios is reported.
func aggregate(r *row) []agg {
	out := make([]agg, 0, len(r.contenders))
	for _, c := range r.contenders {
		ss := r.samples[c]
		a := agg{c: c}
		a.cps = summarize(mapSamples(ss, (*sample).callsPerSec))
		a.p50 = median(mapSamples(ss, func(s *sample) float64 { return s.p50 }))
		a.p99 = median(mapSamples(ss, func(s *sample) float64 { return s.p99 }))
		// Bytes and round trips are exact counts: pooled over the rounds.
		a.bytes = pooledPerCall(ss, func(s *sample) int64 { return s.bytes })
		a.trips = pooledPerCall(ss, func(s *sample) int64 { return s.trips })
		a.cliUs = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.cliCPU.Nanoseconds()) / 1e3 })))
		a.allocs = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.mallocs) })))
		a.spans = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.spans) })))
		a.cmdUs = median(mapSamples(ss, perCall(func(s *sample) float64 { return nanIfNeg(s.cmdUs) })))
		a.infoCPUUs = median(mapSamples(ss, perCall(func(s *sample) float64 { return nanIfNeg(s.infoCPUUs) })))
		// Server CPU: per-round medians when it was read with ns
		// precision; pooled over the rounds (all CPU / all calls) when only
		// 10 ms ticks were available, which are too coarse for short slices.
		exact := len(ss) > 0
		var srvNs, srvCalls int64
		for i := range ss {
			if ss[i].srvNs < 0 {
				exact = false
				srvCalls = -1
				break
			}
			exact = exact && ss[i].srvExact
			srvNs += ss[i].srvNs
			srvCalls += ss[i].total()
		}
		if srvCalls > 0 {
			a.srvKnown, a.srvExact = true, exact
			if exact {
				a.srvUs = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.srvNs) / 1e3 })))
			} else {
				a.srvUs = float64(srvNs) / 1e3 / float64(srvCalls)
			}
		}
		for i := range ss {
			a.calls += ss[i].calls
			a.wrong += ss[i].wrong
			a.noScript += ss[i].noScript
			a.otherErr += ss[i].otherErr
			a.all += ss[i].total()
			if a.firstErr == "" {
				a.firstErr = ss[i].firstErr
			}
		}
		if ev, ok := r.samples[cEval]; ok {
			a.vsEval = ratioStat(ss, ev)
		}
		if lim, ok := r.samples[r.limit()]; ok {
			a.vsLimit = ratioStat(ss, lim)
			if c != r.limit() {
				var dc, da []float64
				for i := 0; i < min(len(ss), len(lim)); i++ {
					x, y := &ss[i], &lim[i]
					if x.total() == 0 || y.total() == 0 {
						continue
					}
					dc = append(dc, float64(x.cliCPU.Nanoseconds())/1e3/float64(x.total())-float64(y.cliCPU.Nanoseconds())/1e3/float64(y.total()))
					da = append(da, float64(x.mallocs)/float64(x.total())-float64(y.mallocs)/float64(y.total()))
				}
				a.dCliLimit, a.dAllocsLimit = summarize(dc), summarize(da)
			}
		}
		if b, ok := traceBase(c); ok {
			if bs, ok := r.samples[b]; ok {
				a.base, a.hasBase = b, true
				a.dWall, a.dCPU, a.dAllocs = deltaStats(ss, bs)
			}
		}
		out = append(out, a)
	}
	return out
}

// deltaStats are the per-round differences of wall time, client CPU and
// allocations per call of ss against base.
func deltaStats(ss, base []sample) (wall, cpu, allocs stat) {
	var dw, dc, da []float64
	for i := 0; i < min(len(ss), len(base)); i++ {
		x, y := &ss[i], &base[i]
		if x.calls == 0 || y.calls == 0 || x.total() == 0 || y.total() == 0 {
			continue
		}
		dw = append(dw, 1e6/x.callsPerSec()-1e6/y.callsPerSec())
		dc = append(dc, float64(x.cliCPU.Nanoseconds())/1e3/float64(x.total())-float64(y.cliCPU.Nanoseconds())/1e3/float64(y.total()))
		da = append(da, float64(x.mallocs)/float64(x.total())-float64(y.mallocs)/float64(y.total()))
	}
	return summarize(dw), summarize(dc), summarize(da)
}

func nanIfNeg(v float64) float64 {
	if v < 0 {
		return math.NaN()
	}
	return v
}

func ratioStat(ss, base []sample) stat {
	n := min(len(ss), len(base))
	var v []float64
	for i := 0; i < n; i++ {
		b := base[i].callsPerSec()
		if b > 0 {
			v = append(v, ss[i].callsPerSec()/b)
		}
	}
	return summarize(v)
}

// aaSpread is what an identical twin shows in a row: the per-round ratio
// of the A/A control's calls/s to its twin's (control / EvalSha preloaded,
// or control / Eval on the tracing rows). raw are those ratios; band are
// the ratios together with their inverses: the twins are exchangeable
// (either could have been called the control), so the noise band is
// symmetric around 1 (band.q1 = 1/band.q3) even when, by chance, the
// control came out ahead of or behind its twin in most rounds.
type aaSpread struct{ raw, band stat }

func aaBand(r *row) (aaSpread, bool) {
	for _, c := range r.contenders {
		if !c.isControl() {
			continue
		}
		twin, ok := r.samples[controlOf(c)]
		if !ok {
			return aaSpread{}, false
		}
		ss := r.samples[c]
		var v []float64
		for i := 0; i < min(len(ss), len(twin)); i++ {
			if a, b := ss[i].callsPerSec(), twin[i].callsPerSec(); a > 0 && b > 0 {
				v = append(v, math.Log(a/b), math.Log(b/a))
			}
		}
		// Quantiles of the logarithms, so that the band is exactly
		// symmetric: q1 = 1/q3.
		band := summarize(v)
		for _, f := range []*float64{&band.med, &band.lo, &band.hi, &band.q1, &band.q3} {
			*f = math.Exp(*f)
		}
		band.n /= 2
		sp := aaSpread{raw: ratioStat(ss, twin), band: band}
		return sp, sp.raw.n > 0
	}
	return aaSpread{}, false
}

// aaPosition says where a median ratio m lies against the A/A control's
// per-round IQR scaled to the ratio it is compared with (target 1 for a
// plain comparison): "below", "within" or "above".
func aaPosition(m, target float64, aa aaSpread) string {
	switch {
	case math.IsNaN(m) || aa.band.n == 0:
		return "–"
	case m < target*aa.band.q1:
		return "below"
	case m > target*aa.band.q3:
		return "above"
	}
	return "within"
}

func fmtRate(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtDur(ns float64) string {
	switch {
	case math.IsNaN(ns) || ns == 0:
		return "–"
	case ns >= 1e9:
		return fmt.Sprintf("%.2f s", ns/1e9)
	case ns >= 1e7:
		return fmt.Sprintf("%.0f ms", ns/1e6)
	case ns >= 1e6:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	case ns >= 1e4:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	}
	return fmt.Sprintf("%.1f µs", ns/1e3)
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtSigned(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := fmtNum(v)
	if v >= 0 {
		s = "+" + s
	}
	return s
}

// fmtBand is an A/A spread: the control's own median and range, and the
// noise band.
func fmtBand(aa aaSpread) string {
	if aa.raw.n == 0 || math.IsNaN(aa.raw.med) {
		return "–"
	}
	return fmt.Sprintf("%.2f (rounds %.2f–%.2f), noise band %.2f–%.2f (%d rounds)", aa.raw.med, aa.raw.lo, aa.raw.hi, aa.band.q1, aa.band.q3, aa.raw.n)
}

func fmtRatio(s stat) string {
	if s.n == 0 || math.IsNaN(s.med) {
		return "–"
	}
	if s.n == 1 {
		return fmt.Sprintf("%.2f", s.med)
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s.med, s.lo, s.hi)
}
