package main

import (
	"context"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// hist is a log-linear latency histogram: exact below 64 ns, then 64
// sub-buckets per power of two (under 1.6 % relative error). Recording does
// not allocate.
type hist struct {
	counts [histBuckets]uint32
	n      int64
}

const (
	histSub     = 64
	histBuckets = 48 * histSub
)

func histBucket(ns int64) int {
	if ns < histSub {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	e := bits.Len64(uint64(ns)) - 7 // ns>>e is in [64,128)
	b := (e+1)*histSub + int(ns>>e) - histSub
	if b >= histBuckets {
		return histBuckets - 1
	}
	return b
}

// histValue is the middle of bucket b, in ns.
func histValue(b int) float64 {
	if b < histSub {
		return float64(b)
	}
	e := b/histSub - 1
	m := b%histSub + histSub
	lo := float64(int64(m) << e)
	return lo + float64(int64(1)<<e)/2
}

func (h *hist) add(d time.Duration) {
	h.counts[histBucket(int64(d))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

func (h *hist) reset() { *h = hist{} }

// quantile returns the q-quantile in ns (0 when empty).
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n-1)) + 1
	var seen int64
	for b, c := range h.counts {
		seen += int64(c)
		if seen >= rank {
			return histValue(b)
		}
	}
	return histValue(histBuckets - 1)
}

// sample is what one measured slice of one contender produced.
type sample struct {
	calls    int64 // script calls that returned the right value
	wrong    int64 // replies with a wrong value
	noScript int64 // NOSCRIPT errors that reached the caller
	otherErr int64 // any other error
	firstErr string
	elapsed  time.Duration // the time calls/s are computed over
	wall     time.Duration // the slice's wall-clock time (elapsed leaves a neighbour out)
	p50, p99 float64       // ns per call (per batch for pipelines)
	bytes    int64         // written to the server
	trips    int64         // round trips (turns from writing to reading)
	srvNs    int64         // server CPU time, ns; -1 when unknown
	srvExact bool          // srvNs came from schedstat (ns), not from 10 ms ticks
	// From INFO before and after the slice (cold-start rows), -1 when not
	// read: the usec of INFO commandstats summed over every command but
	// INFO, and used_cpu_sys+used_cpu_user, both in µs.
	cmdUs, infoCPUUs float64
	cliCPU           time.Duration
	mallocs          uint64
	spans            int64
	batches          int64
	// foreignNs is CPU time used by other processes of the machine during
	// the slice (all busy time less this program's and the server's); -1
	// when unknown.
	foreignNs int64
}

func (s *sample) total() int64 { return s.calls + s.wrong + s.noScript + s.otherErr }

// callsPerSec counts only correct calls.
func (s *sample) callsPerSec() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.calls) / s.elapsed.Seconds()
}

// worker is one goroutine's tallies; padded apart to avoid false sharing.
type worker struct {
	h                         hist
	ok, wrong, noScript, errs int64
	busy                      time.Duration // time inside calls (rows with a neighbour)
	firstErr                  string
	out                       []int64
	errv                      []error
	_                         [64]byte
}

func (w *worker) reset() {
	w.h.reset()
	w.ok, w.wrong, w.noScript, w.errs = 0, 0, 0, 0
	w.busy = 0
	w.firstErr = ""
}

func (w *worker) record(v, want int64, err error) {
	switch {
	case err == nil && v == want:
		w.ok++
	case err == nil:
		w.wrong++
		if w.firstErr == "" {
			w.firstErr = "wrong reply"
		}
	case isNoScript(err):
		w.noScript++
	default:
		w.errs++
		if w.firstErr == "" {
			w.firstErr = err.Error()
		}
	}
}

// probe reads the process-wide counters around a slice.
type probe struct {
	serverPID func() int
	spans     func() int64
	// info, when set, returns the server's INFO cpu and commandstats
	// figures (µs); it is used on the rows that ask for it.
	info func() (cmdUs, cpuUs float64, err error)
}

type reading struct {
	at             time.Time
	srv            int64
	srvExact       bool
	cli            time.Duration
	mallocs        uint64
	bytes, trips   int64
	spans          int64
	sysBusy        int64   // -1 when unknown
	cmdUs, infoCPU float64 // -1 when not read
}

// read takes a reading; withInfo adds the server's INFO figures (before the
// /proc reading on the way in, after it on the way out, so that the server
// CPU read from /proc does not include the INFO commands).
func (p *probe) read(inst instance, withInfo, after bool) reading {
	r := reading{srv: -1, sysBusy: -1, cmdUs: -1, infoCPU: -1}
	readInfo := func() {
		if withInfo && p.info != nil {
			if c, u, err := p.info(); err == nil {
				r.cmdUs, r.infoCPU = c, u
			}
		}
	}
	if after {
		r.at = time.Now()
	} else {
		readInfo()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.mallocs, r.cli = ms.Mallocs, processCPU()
	if b, err := readSystemBusy(); err == nil {
		r.sysBusy = b
	}
	if pid := p.serverPID(); pid > 0 {
		if ns, exact, err := readServerCPU(pid); err == nil {
			r.srv, r.srvExact = ns, exact
		}
	}
	if inst != nil {
		r.bytes, r.trips = inst.wire()
	}
	if p.spans != nil {
		r.spans = p.spans()
	}
	if after {
		readInfo()
	} else {
		r.at = time.Now()
	}
	return r
}

func (p *probe) finish(s *sample, a, b reading, end time.Time) {
	s.elapsed = end.Sub(a.at)
	s.wall = s.elapsed
	s.bytes = b.bytes - a.bytes
	s.trips = b.trips - a.trips
	s.cliCPU = b.cli - a.cli
	s.mallocs = b.mallocs - a.mallocs
	s.spans = b.spans - a.spans
	s.srvNs = -1
	if a.srv >= 0 && b.srv >= 0 {
		s.srvNs = b.srv - a.srv
		s.srvExact = a.srvExact && b.srvExact
	}
	s.cmdUs, s.infoCPUUs = -1, -1
	if a.cmdUs >= 0 && b.cmdUs >= 0 {
		s.cmdUs, s.infoCPUUs = b.cmdUs-a.cmdUs, b.infoCPU-a.infoCPU
	}
	s.foreignNs = -1
	if a.sysBusy >= 0 && b.sysBusy >= 0 && s.srvNs >= 0 {
		s.foreignNs = max(0, (b.sysBusy-a.sysBusy)-int64(s.cliCPU)-s.srvNs)
	}
}

// collect sums the workers' tallies into s.
func collect(s *sample, ws []*worker) {
	var h hist
	for _, w := range ws {
		h.merge(&w.h)
		s.calls += w.ok
		s.wrong += w.wrong
		s.noScript += w.noScript
		s.otherErr += w.errs
		if s.firstErr == "" {
			s.firstErr = w.firstErr
		}
	}
	s.p50 = h.quantile(0.50)
	s.p99 = h.quantile(0.99)
}

// singleRun says how a slice of single calls runs.
type singleRun struct {
	dur   time.Duration // run until the deadline (limit < 0)
	limit int           // or for limit calls per goroutine
	// minCalls, with limit < 0, keeps going past the deadline until the
	// goroutines made this many calls in all (warm-ups of rows that must
	// go round their scripts a few times).
	minCalls int64
	scripts  int // the instance's scripts, called round robin (0 or 1: script 0)
	// next is the round-robin position, kept across the slices of a row
	// (nil: start at script 0).
	next *atomic.Int64
	// prepare, if not nil, runs first, inside the measured time.
	prepare func() error
	// between, if not nil, runs after every call, outside the call's
	// time: the slice's elapsed time is then the time spent in calls (one
	// goroutine only).
	between func() error
	info    bool // read the server's INFO figures around the slice
}

// runSingle runs single calls from len(ws) goroutines as sr says.
func runSingle(ctx context.Context, p *probe, inst instance, ws []*worker, sr singleRun) sample {
	for _, w := range ws {
		w.reset()
	}
	runtime.GC()
	var s sample
	a := p.read(inst, sr.info, false)
	if sr.prepare != nil {
		if err := sr.prepare(); err != nil {
			s.otherErr++
			s.firstErr = err.Error()
		}
	}
	deadline := a.at.Add(sr.dur)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var end time.Time
	var made atomic.Int64 // calls made
	next := sr.next
	if next == nil {
		next = new(atomic.Int64)
	}
	for wi, w := range ws {
		wg.Add(1)
		go func(wi int, w *worker) {
			defer wg.Done()
			idx := (wi * 131) & (argCount - 1)
			t0 := time.Now()
			for n := 0; sr.limit < 0 || n < sr.limit; n++ {
				if sr.limit < 0 && !t0.Before(deadline) && made.Load() >= sr.minCalls {
					break
				}
				k := 0
				if sr.scripts > 1 {
					k = int((next.Add(1) - 1) % int64(sr.scripts))
				}
				v, err := inst.single(ctx, k, idx)
				t1 := time.Now()
				w.h.add(t1.Sub(t0))
				w.busy += t1.Sub(t0)
				w.record(v, argWant[idx], err)
				made.Add(1)
				idx = (idx + 1) & (argCount - 1)
				if sr.between != nil {
					if err := sr.between(); err != nil && w.firstErr == "" {
						w.errs++
						w.firstErr = "neighbour: " + err.Error()
					}
					t1 = time.Now()
				}
				t0 = t1
			}
			mu.Lock()
			if t0.After(end) {
				end = t0
			}
			mu.Unlock()
		}(wi, w)
	}
	wg.Wait()
	b := p.read(inst, sr.info, true)
	p.finish(&s, a, b, end)
	if sr.between != nil && len(ws) == 1 {
		s.elapsed = ws[0].busy
	}
	collect(&s, ws)
	return s
}

// runPipeline sends batches of batch calls from one goroutine until the
// deadline. Latency is per batch.
func runPipeline(ctx context.Context, p *probe, inst instance, w *worker, dur time.Duration, batch int) sample {
	w.reset()
	if cap(w.out) < batch {
		w.out = make([]int64, batch)
		w.errv = make([]error, batch)
	}
	out, errv := w.out[:batch], w.errv[:batch]
	runtime.GC()
	var s sample
	a := p.read(inst, false, false)
	deadline := a.at.Add(dur)
	idx := 0
	t0 := time.Now()
	for t0.Before(deadline) {
		inst.pipeline(ctx, idx, out, errv)
		t1 := time.Now()
		w.h.add(t1.Sub(t0))
		for j := range out {
			w.record(out[j], argWant[(idx+j)&(argCount-1)], errv[j])
			errv[j] = nil
		}
		idx = (idx + batch) & (argCount - 1)
		s.batches++
		t0 = t1
	}
	b := p.read(inst, false, true)
	p.finish(&s, a, b, t0)
	collect(&s, []*worker{w})
	return s
}
