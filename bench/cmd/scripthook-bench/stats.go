package main

import (
	"fmt"
	"math"
	"sort"
)

// stat is a median with the range it was taken from.
type stat struct {
	med, lo, hi float64
	n           int
}

func summarize(v []float64) stat {
	if len(v) == 0 {
		return stat{med: math.NaN(), lo: math.NaN(), hi: math.NaN()}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return stat{med: median(s), lo: s[0], hi: s[len(s)-1], n: len(s)}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
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

// signTestP is the one-sided sign-test p-value of seeing k or more of n
// rounds below 1 when the two contenders are really equal.
func signTestP(k, n int) float64 {
	p := 0.0
	for i := k; i <= n; i++ {
		p += binom(n, i)
	}
	return p / math.Pow(2, float64(n))
}

func binom(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}

// agg is one contender's line of a row.
type agg struct {
	c                                     contender
	cps                                   stat
	vsEval, vsLimit                       stat
	slowerRounds                          int     // rounds slower than Eval
	signP                                 float64 // sign test of slowerRounds
	belowLimitRounds                      int     // rounds slower than the preloaded EvalSha
	limitSignP                            float64 // sign test of belowLimitRounds
	dCliLimit, dAllocsLimit               stat    // per-round client CPU µs and allocs per call minus the limit's
	p50, p99                              float64 // ns
	bytes, srvUs, cliUs, allocs, spans    float64 // per call
	srvKnown, srvExact                    bool
	calls, wrong, noScript, otherErr, all int64
	firstErr                              string
	// Tracing rows: per-call cost against the untraced base.
	base                 contender
	hasBase              bool
	dWall, dCPU, dAllocs stat
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
	case cEvalOtel, cEvalOtelNoStmt, cHookOff:
		return cEval, true
	case cHookTraced:
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
		a.bytes = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.bytes) })))
		a.cliUs = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.cliCPU.Nanoseconds()) / 1e3 })))
		a.allocs = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.mallocs) })))
		a.spans = median(mapSamples(ss, perCall(func(s *sample) float64 { return float64(s.spans) })))
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
		a.vsEval = ratioStat(ss, r.samples[cEval])
		if _, ok := r.samples[cEvalSha]; ok {
			a.vsLimit = ratioStat(ss, r.samples[cEvalSha])
		}
		if ev, ok := r.samples[cEval]; ok {
			n := min(len(ss), len(ev))
			for i := 0; i < n; i++ {
				if ss[i].callsPerSec() < ev[i].callsPerSec() {
					a.slowerRounds++
				}
			}
			a.signP = signTestP(a.slowerRounds, n)
		}
		if lim, ok := r.samples[cEvalSha]; ok && c != cEvalSha {
			n := min(len(ss), len(lim))
			for i := 0; i < n; i++ {
				if ss[i].callsPerSec() < lim[i].callsPerSec() {
					a.belowLimitRounds++
				}
			}
			a.limitSignP = signTestP(a.belowLimitRounds, n)
			var dc, da []float64
			for i := 0; i < n; i++ {
				x, y := &ss[i], &lim[i]
				if x.total() == 0 || y.total() == 0 {
					continue
				}
				dc = append(dc, float64(x.cliCPU.Nanoseconds())/1e3/float64(x.total())-float64(y.cliCPU.Nanoseconds())/1e3/float64(y.total()))
				da = append(da, float64(x.mallocs)/float64(x.total())-float64(y.mallocs)/float64(y.total()))
			}
			a.dCliLimit, a.dAllocsLimit = summarize(dc), summarize(da)
		}
		if b, ok := traceBase(c); ok {
			if bs, ok := r.samples[b]; ok {
				a.base, a.hasBase = b, true
				n := min(len(ss), len(bs))
				var dw, dc, da []float64
				for i := 0; i < n; i++ {
					x, y := &ss[i], &bs[i]
					if x.calls == 0 || y.calls == 0 || x.total() == 0 || y.total() == 0 {
						continue
					}
					dw = append(dw, 1e6/x.callsPerSec()-1e6/y.callsPerSec())
					dc = append(dc, float64(x.cliCPU.Nanoseconds())/1e3/float64(x.total())-float64(y.cliCPU.Nanoseconds())/1e3/float64(y.total()))
					da = append(da, float64(x.mallocs)/float64(x.total())-float64(y.mallocs)/float64(y.total()))
				}
				a.dWall, a.dCPU, a.dAllocs = summarize(dw), summarize(dc), summarize(da)
			}
		}
		out = append(out, a)
	}
	return out
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

// slowerThanEvalBeyondNoise: slower than Eval in significantly many rounds
// (one-sided sign test, p < 0.05) and by more than 2 % at the median.
func (a *agg) slowerThanEvalBeyondNoise() bool {
	return a.signP < 0.05 && a.vsEval.med < 0.98
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

func fmtRatio(s stat) string {
	if s.n == 0 || math.IsNaN(s.med) {
		return "–"
	}
	if s.n == 1 {
		return fmt.Sprintf("%.2f", s.med)
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s.med, s.lo, s.hi)
}
