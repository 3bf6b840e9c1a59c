package main

import (
	"context"
	"crypto/fips140"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// config is one run of the suite.
type config struct {
	addr    string
	quick   bool
	out     string // BENCHMARKS.md path ("" = do not write)
	png     string // plot path ("" = do not write)
	command string // the command line, for the report
	seed    uint64 // of the contenders' order in every round

	sizes       []int
	rounds      int           // rounds of the warm rows
	slice       time.Duration // one contender's measured slice
	warm        time.Duration // untimed warm-up slice per contender and row
	goroutines  int           // the concurrent single-call rows
	batch       int           // calls per pipeline
	coldRounds  int
	coldWorkers int // goroutines of the cold start
	coldCalls   int // calls per goroutine of the cold start
	flushSize   int
	flushRounds int
	flushSlice  time.Duration
	flushEvery  time.Duration
	// Eviction rows: round robin over evictScripts distinct scripts of
	// evictSize bytes; hotScripts hot ones with neighbourEvals one-off EVALs
	// of another client between two calls.
	evictScripts   int
	evictSize      int
	hotScripts     int
	neighbourEvals int
	// neighbourCacheLimit: a server that does not evict keeps every one-off
	// script; past this many cached scripts the cache is flushed between
	// rounds (and the contenders warmed again) so that memory stays bounded.
	neighbourCacheLimit int
	fips                bool  // the FIPS 140-only row (a child process)
	autoSize            int   // script size of the AutoPipeline rows
	autoGoroutines      []int // goroutines of the AutoPipeline rows (none: skipped)
	tracing             bool
	fcall               bool // the FCALL rows (Redis 7 Functions)
	// maxInterference: a round during which other processes used more than
	// this share of the CPUs is measured again (0 turns that off).
	maxInterference float64
	only            *regexp.Regexp // run only rows whose label matches (investigation)

	log io.Writer
}

func defaultConfig() config {
	return config{
		out:                 "BENCHMARKS.md",
		png:                 "results.png",
		sizes:               []int{200, 4 << 10, 32 << 10},
		rounds:              12,
		slice:               250 * time.Millisecond,
		warm:                200 * time.Millisecond,
		goroutines:          16,
		batch:               1000,
		coldRounds:          60,
		coldWorkers:         16,
		coldCalls:           8,
		flushSize:           4 << 10,
		flushRounds:         6,
		flushSlice:          time.Second,
		flushEvery:          time.Second,
		evictScripts:        1000,
		evictSize:           1 << 10,
		hotScripts:          10,
		neighbourEvals:      60,
		neighbourCacheLimit: 100000,
		fips:                true,
		autoSize:            4 << 10,
		autoGoroutines:      []int{16, 64},
		tracing:             true,
		fcall:               true,
		log:                 io.Discard,
		maxInterference:     0.25,
	}
}

// quickConfig is the smoke run (about a minute).
func quickConfig() config {
	c := defaultConfig()
	c.quick = true
	c.rounds = 6
	c.slice = 50 * time.Millisecond
	c.warm = 40 * time.Millisecond
	c.coldRounds = 12
	c.flushRounds = 2
	c.flushSlice = 500 * time.Millisecond
	c.flushEvery = 500 * time.Millisecond
	return c
}

// rowMode is what a row's slice does.
type rowMode int

const (
	modeSingle   rowMode = iota // single calls from N goroutines for a duration
	modePipeline                // batches from one goroutine for a duration
	modeCold                    // fresh client after SCRIPT FLUSH, fixed number of calls
)

// group is a table of the report.
type group int

const (
	groupMain group = iota
	groupCold
	groupFlush
	groupEvict
	groupFIPS
	groupAuto
	groupTrace
	groupFCall
)

// row is one workload: every contender measured on it, interleaved.
type row struct {
	group      group
	size       int
	mode       rowMode
	goroutines int
	batch      int
	calls      int // per goroutine, cold start
	flush      bool
	flushEvery time.Duration
	rounds     int
	dur        time.Duration
	contenders []contender
	// scripts > 0: every contender runs its own family of that many
	// distinct scripts, round robin (eviction rows).
	scripts int
	// neighbour > 0: another client sends that many one-off EVALs between
	// two calls (one goroutine; the time is the calls' own).
	neighbour int
	fips      bool // runs in a child process under GODEBUG=fips140=only
	auto      bool // go-redis contenders go through rdb.AutoPipeline()
	info      bool // server CPU from INFO too (cold start)
	salt      uint64

	samples      map[contender][]sample // one per round
	orders       [][]int                // the contenders' order (indexes) of each kept round
	redone       int                    // rounds measured again because of other processes' load
	flushes      int64                  // SCRIPT FLUSH sent during the row
	guardFlushes int                    // neighbour rows: cache flushed between rounds
	hookDelta    map[contender]scripthook.Stats
	// hookEnd: the hooks' counters at the end of the row, warm-up included
	// (warm rows).
	hookEnd map[contender]scripthook.Stats
}

// limit is the contender the row's ratios ×limit are taken against: the
// preloaded EvalSha, or plain FCALL on the FCALL rows.
func (r *row) limit() contender {
	if r.group == groupFCall {
		return cFcall
	}
	return cEvalSha
}

// interference is the share of the machine's CPU time that other processes
// used during the row's measured slices (0..1), and false when unknown.
func (r *row) interference() (float64, bool) {
	if r.mode == modeCold {
		// Slices of a few ms: below /proc/stat's 10 ms resolution.
		return 0, false
	}
	var all []sample
	for _, ss := range r.samples {
		all = append(all, ss...)
	}
	return interference(all)
}

func interferenceOf(m map[contender]sample) (float64, bool) {
	all := make([]sample, 0, len(m))
	for _, s := range m {
		all = append(all, s)
	}
	return interference(all)
}

func interference(ss []sample) (float64, bool) {
	var foreign, wall int64
	for i := range ss {
		if ss[i].foreignNs < 0 {
			return 0, false
		}
		foreign += ss[i].foreignNs
		wall += int64(ss[i].wall)
	}
	if wall <= 0 {
		return 0, false
	}
	return float64(foreign) / (float64(wall) * float64(runtime.NumCPU())), true
}

func (r *row) label() string {
	sz := sizeLabel(r.size)
	if r.group == groupFCall {
		sz = "FCALL"
	}
	gs := fmt.Sprintf("%d goroutine", r.goroutines)
	if r.goroutines != 1 {
		gs += "s"
	}
	switch {
	case r.mode == modePipeline:
		return fmt.Sprintf("%s · pipeline ×%d", sz, r.batch)
	case r.mode == modeCold:
		return fmt.Sprintf("%s · cold start, %d goroutines × %d calls", sz, r.goroutines, r.calls)
	case r.neighbour > 0:
		return fmt.Sprintf("%s · %d hot scripts, %d one-off EVALs between calls, %s", sz, r.scripts, r.neighbour, gs)
	case r.scripts > 1:
		return fmt.Sprintf("%s · %d scripts round robin, %s", sz, r.scripts, gs)
	case r.auto:
		return fmt.Sprintf("%s · AutoPipeline, %s", sz, gs)
	}
	s := fmt.Sprintf("%s · single, %s", sz, gs)
	if r.flush {
		s += ", SCRIPT FLUSH every " + r.flushEvery.String()
	}
	if r.fips {
		s += " · GODEBUG=fips140=only"
	}
	return s
}

// fullLabel tells the tracing rows apart from the main rows of the same shape.
func (r *row) fullLabel() string {
	if r.group == groupTrace {
		return r.label() + " · tracing"
	}
	return r.label()
}

func sizeLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// buildRows lists the workloads of a run, in the order they run.
func buildRows(cfg *config) []*row {
	var rows []*row
	warm := func(g group, size int, mode rowMode, gs int, cs []contender) *row {
		r := &row{group: g, size: size, mode: mode, goroutines: gs, batch: cfg.batch,
			rounds: cfg.rounds, dur: cfg.slice, contenders: cs}
		rows = append(rows, r)
		return r
	}
	shapes := []struct {
		mode rowMode
		g    int
	}{{modeSingle, 1}, {modeSingle, cfg.goroutines}, {modePipeline, 1}}
	for _, sz := range cfg.sizes {
		for _, m := range shapes {
			warm(groupMain, sz, m.mode, m.g, mainContenders)
		}
	}
	for _, sz := range cfg.sizes {
		rows = append(rows, &row{group: groupCold, size: sz, mode: modeCold, goroutines: cfg.coldWorkers,
			calls: cfg.coldCalls, rounds: cfg.coldRounds, contenders: mainContenders, info: true})
	}
	rows = append(rows, &row{group: groupFlush, size: cfg.flushSize, mode: modeSingle, goroutines: cfg.goroutines,
		flush: true, flushEvery: cfg.flushEvery, rounds: cfg.flushRounds, dur: cfg.flushSlice, contenders: mainContenders})
	if cfg.evictScripts > 1 {
		r := warm(groupEvict, cfg.evictSize, modeSingle, cfg.goroutines, mainContenders)
		r.scripts = cfg.evictScripts
		r.dur = 2 * cfg.slice // longer slices go round more of the scripts
	}
	if cfg.hotScripts > 0 && cfg.neighbourEvals > 0 {
		r := warm(groupEvict, cfg.evictSize, modeSingle, 1, mainContenders)
		r.scripts, r.neighbour = cfg.hotScripts, cfg.neighbourEvals
		// Most of a slice is the neighbour's: twice as long, for calls.
		r.dur = 2 * cfg.slice
	}
	if cfg.fips {
		warm(groupFIPS, cfg.flushSize, modeSingle, cfg.goroutines, fipsContenders).fips = true
	}
	for _, g := range cfg.autoGoroutines {
		warm(groupAuto, cfg.autoSize, modeSingle, g, mainContenders).auto = true
	}
	if cfg.tracing {
		for _, m := range shapes {
			warm(groupTrace, cfg.sizes[0], m.mode, m.g, traceContenders)
		}
	}
	// Last, so that a seed still gives the other rows the orders it gave
	// before these rows existed (a row's order depends on its position).
	if cfg.fcall {
		for _, g := range []int{1, cfg.goroutines} {
			warm(groupFCall, 0, modeSingle, g, fcallContenders)
		}
	}
	for i, r := range rows {
		r.salt = uint64(i)
	}
	return rows
}

// spanCounter is a span processor that counts ended spans and drops them:
// an always-sample SDK pipeline whose export costs nothing.
type spanCounter struct{ n atomic.Int64 }

func (s *spanCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (s *spanCounter) OnEnd(sdktrace.ReadOnlySpan)                     { s.n.Add(1) }
func (s *spanCounter) Shutdown(context.Context) error                  { return nil }
func (s *spanCounter) ForceFlush(context.Context) error                { return nil }

// suite is one run in progress.
type suite struct {
	cfg     *config
	srv     *server
	admin   *redis.Client
	tp      *sdktrace.TracerProvider
	tpNever *sdktrace.TracerProvider // samples nothing
	spans   *spanCounter
	probe   *probe
	scripts map[int]*workloadScript
	rows    []*row
	started time.Time
	elapsed time.Duration
	load    [2]string // /proc/loadavg before and after
	env     environment
	inChild bool // this process is the FIPS child: run fips rows here
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.log, format+"\n", args...)
}

// newSuite connects to srv; close releases what it made.
func newSuite(ctx context.Context, cfg *config, srv *server) (*suite, error) {
	s := &suite{cfg: cfg, srv: srv, spans: &spanCounter{}, scripts: map[int]*workloadScript{}}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(s.spans))
	s.tpNever = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(s.spans))
	s.admin = redis.NewClient(&redis.Options{Addr: srv.Addr})
	s.probe = &probe{serverPID: srv.PID, spans: s.spans.n.Load, info: s.serverInfo}
	if err := s.admin.Ping(ctx).Err(); err != nil {
		s.close()
		return nil, fmt.Errorf("server %s: %w", srv.Addr, err)
	}
	return s, nil
}

func (s *suite) close() {
	_ = s.admin.Close()
	_ = s.tp.Shutdown(context.Background())
	_ = s.tpNever.Shutdown(context.Background())
}

// script returns the shared script of a size.
func (s *suite) script(size int) *workloadScript {
	sc, ok := s.scripts[size]
	if !ok {
		m := makeScript(size, "")
		sc = &m
		s.scripts[size] = sc
	}
	return sc
}

// runSuite runs every row against srv.
func runSuite(ctx context.Context, cfg *config, srv *server) (*suite, error) {
	s, err := newSuite(ctx, cfg, srv)
	if err != nil {
		return nil, err
	}
	defer s.close()
	// Versions are taken before the run: the library's work tree may change
	// while it runs, and this binary was built from what it was at the start.
	s.env = collectEnv(srv)
	s.rows = buildRows(cfg)
	if cfg.only != nil {
		var keep []*row
		for _, r := range s.rows {
			if cfg.only.MatchString(r.fullLabel()) {
				keep = append(keep, r)
			}
		}
		s.rows = keep
	}
	s.load[0] = loadAvg()
	s.started = time.Now()
	for i, r := range s.rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := time.Now()
		if err := s.runRow(ctx, r); err != nil {
			return nil, fmt.Errorf("row %q: %w", r.fullLabel(), err)
		}
		other := ""
		if f, ok := r.interference(); ok {
			other = fmt.Sprintf(" other=%2.0f%%", 100*f)
		}
		s.logf("[%2d/%d] %-70s %6.1fs%s  %s", i+1, len(s.rows), r.fullLabel(), time.Since(t).Seconds(), other, quickLine(r))
	}
	s.elapsed = time.Since(s.started)
	s.load[1] = loadAvg()
	return s, nil
}

// quickLine is a one-line progress summary of a row: median calls/s and
// the A/A control's spread.
func quickLine(r *row) string {
	out := ""
	for _, c := range r.contenders {
		out += fmt.Sprintf("%s=%s ", shortName(c), fmtRate(median(mapSamples(r.samples[c], (*sample).callsPerSec))))
	}
	if aa, ok := aaBand(r); ok {
		out += fmt.Sprintf(" A/A %.2f, band %.2f–%.2f", aa.raw.med, aa.band.q1, aa.band.q3)
	}
	return out
}

func shortName(c contender) string {
	switch c {
	case cEval:
		return "eval"
	case cScripthook:
		return "hook"
	case cScriptRun:
		return "run"
	case cEvalSha:
		return "sha"
	case cControl:
		return "sha-aa"
	case cRueidis:
		return "rueidis"
	case cEvalControl:
		return "eval-aa"
	case cEvalOtel:
		return "otel"
	case cEvalOtelNoStmt:
		return "otel-nostmt"
	case cHookOff:
		return "hook-off"
	case cHookTraced:
		return "hook-traced"
	case cEvalOtelNever:
		return "otel-never"
	case cHookNever:
		return "hook-never"
	case cFcall:
		return "fcall"
	case cFcallControl:
		return "fcall-aa"
	case cFcallHook:
		return "fcall-hook"
	case cFcallRueidis:
		return "fcall-rueidis"
	}
	return "?"
}

// rowScripts are the scripts contender c runs on row r: the shared script
// of the row's size, or (eviction rows) a family of its own, so that no
// contender's SCRIPT LOAD protects another's scripts from eviction.
func (s *suite) rowScripts(r *row, c contender) []*workloadScript {
	if r.group == groupFCall {
		return nil // a function library, loaded for the whole row
	}
	if r.scripts > 0 {
		return scriptFamily(r.size, r.scripts, fmt.Sprintf("row %d %s", r.salt, shortName(c)))
	}
	return []*workloadScript{s.script(r.size)}
}

// warmRun is the untimed warm-up of a contender on a row.
func (s *suite) warmRun(r *row) singleRun {
	sr := singleRun{dur: s.cfg.warm, limit: -1, scripts: r.scripts}
	if r.scripts > 1 {
		// Three times round the family: first sight, then eviction and
		// repair (where the server evicts), then the steady state.
		sr.minCalls = int64(3 * r.scripts)
	}
	return sr
}

func (s *suite) runRow(ctx context.Context, r *row) error {
	if r.fips && !s.inChild {
		return s.runChildRow(ctx, r)
	}
	r.samples = make(map[contender][]sample, len(r.contenders))
	r.hookDelta = map[contender]scripthook.Stats{}
	r.hookEnd = map[contender]scripthook.Stats{}
	nw := max(r.goroutines, 1)
	workers := make([]*worker, nw)
	for i := range workers {
		workers[i] = &worker{}
	}
	opts := instOpts{tp: s.tp, tpNever: s.tpNever, auto: r.auto, fips: fips140.Enforced()}

	var between func() error
	if r.neighbour > 0 {
		nb := redis.NewClient(&redis.Options{Addr: s.srv.Addr})
		defer nb.Close()
		between = func() error { return neighbourEvals(ctx, nb, r.neighbour) }
	}

	// The round-robin position of every contender over its scripts, kept
	// from the warm-up through all slices.
	positions := map[contender]*atomic.Int64{}
	rr := func(c contender) *atomic.Int64 {
		if positions[c] == nil {
			positions[c] = new(atomic.Int64)
		}
		return positions[c]
	}

	// Warm rows: one client per contender for the whole row, set up and
	// warmed before the first measured slice.
	insts := map[contender]instance{}
	defer func() {
		for _, in := range insts {
			in.close()
		}
	}()
	warmUp := func(c contender, in instance) error {
		if err := in.prepare(ctx); err != nil {
			return fmt.Errorf("%s: prepare: %w", c, err)
		}
		var w sample
		if r.mode == modePipeline {
			w = runPipeline(ctx, s.probe, in, workers[0], s.cfg.warm, r.batch)
		} else {
			sr := s.warmRun(r)
			sr.between, sr.next = between, rr(c)
			w = runSingle(ctx, s.probe, in, workers, sr)
		}
		if w.total() == 0 || w.otherErr > 0 || w.wrong > 0 {
			return fmt.Errorf("%s: warm-up failed: %d calls, %d errors, %d wrong: %s", c, w.total(), w.otherErr, w.wrong, w.firstErr)
		}
		return nil
	}
	if r.mode != modeCold {
		switch {
		case r.group == groupFCall:
			// Loaded by hand, once, as a user of plain FCALL does; the
			// hook's client loads it again itself before its first FCALL.
			if err := s.admin.FunctionLoadReplace(ctx, fcallLibrary).Err(); err != nil {
				return fmt.Errorf("FUNCTION LOAD REPLACE: %w", err)
			}
			defer func() { _ = s.admin.FunctionDelete(context.Background(), fcallLibName).Err() }()
		case r.scripts == 0:
			if err := s.admin.ScriptLoad(ctx, s.script(r.size).body).Err(); err != nil {
				return err
			}
		}
		for _, c := range r.contenders {
			in, err := newInstance(c, s.srv.Addr, s.rowScripts(r, c), opts)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			insts[c] = in
			if err := in.ping(ctx); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			if err := warmUp(c, in); err != nil {
				return err
			}
		}
	}

	var stopFlush func()
	if r.flush {
		stopFlush = s.startFlusher(ctx, &r.flushes)
	}
	defer func() {
		if stopFlush != nil {
			stopFlush()
		}
	}()
	// A round during which other processes used much of the machine is
	// measured again, within a budget: on a shared machine a burst of
	// someone else's work would otherwise decide a round. Cold rows are
	// exempt: their slices last milliseconds, below /proc/stat's resolution.
	budget := 0
	if r.mode != modeCold && s.cfg.maxInterference > 0 {
		budget = (r.rounds + 1) / 2
	}
	plan := newOrderPlan(len(r.contenders), s.cfg.seed, r.salt)
	hookPrev := map[contender]scripthook.Stats{}
	for round, done := 0, 0; done < r.rounds; round++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.neighbour > 0 && done > 0 {
			if err := s.guardCache(ctx, r, insts, warmUp); err != nil {
				return err
			}
		}
		ord := plan.order(done)
		got := make(map[contender]sample, len(ord))
		hookRound := map[contender]scripthook.Stats{} // the hooks' counters over this round's slices
		for _, ci := range ord {
			c := r.contenders[ci]
			if in := insts[c]; in != nil {
				if st, ok := in.hookStats(); ok {
					hookPrev[c] = st
				}
			}
			var smp sample
			var err error
			switch r.mode {
			case modeCold:
				smp, err = s.coldSlice(ctx, r, c, opts, workers)
			case modePipeline:
				smp = runPipeline(ctx, s.probe, insts[c], workers[0], r.dur, r.batch)
			default:
				smp = runSingle(ctx, s.probe, insts[c], workers, singleRun{dur: r.dur, limit: -1, scripts: r.scripts, between: between, next: rr(c)})
			}
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			got[c] = smp
			if in := insts[c]; in != nil {
				if st, ok := in.hookStats(); ok {
					hookRound[c] = statsAdd(hookRound[c], statsDelta(st, hookPrev[c]))
					hookPrev[c] = st
				}
			}
		}
		if f, ok := interferenceOf(got); ok && f > s.cfg.maxInterference && budget > 0 {
			budget--
			r.redone++
			s.logf("       round %d: other processes used %.0f%% of the CPUs; measuring it again", round+1, 100*f)
			continue
		}
		for _, c := range r.contenders {
			r.samples[c] = append(r.samples[c], got[c])
			if d, ok := hookRound[c]; ok {
				r.hookDelta[c] = statsAdd(r.hookDelta[c], d)
			}
		}
		r.orders = append(r.orders, ord)
		done++
	}
	if stopFlush != nil {
		stopFlush()
		stopFlush = nil
	}
	for c, in := range insts {
		if st, ok := in.hookStats(); ok {
			r.hookEnd[c] = st
		}
	}
	if r.scripts > 0 {
		// Thousands of scripts of this row's families: gone before the next.
		return s.admin.ScriptFlush(ctx).Err()
	}
	return nil
}

func statsDelta(a, b scripthook.Stats) scripthook.Stats {
	return scripthook.Stats{
		Rewritten:        a.Rewritten - b.Rewritten,
		BodiesSent:       a.BodiesSent - b.BodiesSent,
		Loads:            a.Loads - b.Loads,
		NoScriptRepaired: a.NoScriptRepaired - b.NoScriptRepaired,
		Evicted:          a.Evicted - b.Evicted,
		NoScriptPassed:   a.NoScriptPassed - b.NoScriptPassed,
		BytesSaved:       a.BytesSaved - b.BytesSaved,
		Scripts:          a.Scripts,

		FunctionLoads:          a.FunctionLoads - b.FunctionLoads,
		FunctionRepaired:       a.FunctionRepaired - b.FunctionRepaired,
		FunctionNotFoundPassed: a.FunctionNotFoundPassed - b.FunctionNotFoundPassed,
	}
}

func statsAdd(a, b scripthook.Stats) scripthook.Stats {
	return scripthook.Stats{
		Rewritten:        a.Rewritten + b.Rewritten,
		BodiesSent:       a.BodiesSent + b.BodiesSent,
		Loads:            a.Loads + b.Loads,
		NoScriptRepaired: a.NoScriptRepaired + b.NoScriptRepaired,
		Evicted:          a.Evicted + b.Evicted,
		NoScriptPassed:   a.NoScriptPassed + b.NoScriptPassed,
		BytesSaved:       a.BytesSaved + b.BytesSaved,
		Scripts:          max(a.Scripts, b.Scripts),

		FunctionLoads:          a.FunctionLoads + b.FunctionLoads,
		FunctionRepaired:       a.FunctionRepaired + b.FunctionRepaired,
		FunctionNotFoundPassed: a.FunctionNotFoundPassed + b.FunctionNotFoundPassed,
	}
}

// neighbourSeq makes every one-off script of the noisy neighbour distinct.
var neighbourSeq atomic.Int64

// neighbourEvals sends n one-off EVALs, each a script never seen before, in
// one pipeline from the neighbour's client.
func neighbourEvals(ctx context.Context, nb *redis.Client, n int) error {
	_, err := nb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < n; i++ {
			p.Eval(ctx, "return 'scripthook bench neighbour "+strconv.FormatInt(neighbourSeq.Add(1), 10)+"'", nil)
		}
		return nil
	})
	return err
}

// guardCache keeps a server that does not evict scripts from filling its
// memory with the neighbour's one-off scripts: past the limit it flushes the
// script cache between rounds and warms every contender again (untimed).
func (s *suite) guardCache(ctx context.Context, r *row, insts map[contender]instance, warmUp func(contender, instance) error) error {
	info, err := s.admin.Info(ctx, "memory").Result()
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(redistest.InfoField(info, "number_of_cached_scripts"))
	if err != nil || n <= s.cfg.neighbourCacheLimit {
		return nil
	}
	if err := s.admin.ScriptFlush(ctx).Err(); err != nil {
		return err
	}
	r.guardFlushes++
	for _, c := range r.contenders {
		if err := warmUp(c, insts[c]); err != nil {
			return err
		}
	}
	return nil
}

// serverInfo reads the server's INFO cpu and commandstats: the usec of
// every command but INFO, summed, and used_cpu_sys+used_cpu_user, in µs.
func (s *suite) serverInfo() (cmdUs, cpuUs float64, err error) {
	info, err := s.admin.Info(context.Background(), "cpu", "commandstats").Result()
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, fields, _ := strings.Cut(rest, ":")
		if name == "info" {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				u, _ := strconv.ParseFloat(v, 64)
				cmdUs += u
			}
		}
	}
	for _, f := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, err := strconv.ParseFloat(redistest.InfoField(info, f), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("INFO cpu: %s: %w", f, err)
		}
		cpuUs += v * 1e6
	}
	return cmdUs, cpuUs, nil
}

// coldSlice measures the first calls of a new client after SCRIPT FLUSH.
// Connections are dialled before the flush and the clock starts: the cold
// start measured is the script cache's, not TCP's.
func (s *suite) coldSlice(ctx context.Context, r *row, c contender, opts instOpts, workers []*worker) (sample, error) {
	in, err := newInstance(c, s.srv.Addr, s.rowScripts(r, c), opts)
	if err != nil {
		return sample{}, err
	}
	defer in.close()
	var wg sync.WaitGroup
	errs := make(chan error, len(workers))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.ping(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return sample{}, err
	}
	if err := s.admin.ScriptFlush(ctx).Err(); err != nil {
		return sample{}, err
	}
	smp := runSingle(ctx, s.probe, in, workers, singleRun{limit: r.calls, prepare: func() error { return in.prepare(ctx) }, info: r.info})
	if st, ok := in.hookStats(); ok {
		r.hookDelta[c] = statsAdd(r.hookDelta[c], st)
	}
	return smp, nil
}

// startFlusher sends SCRIPT FLUSH every cfg.flushEvery from its own client
// until the returned function is called.
func (s *suite) startFlusher(ctx context.Context, count *int64) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.flushEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if s.admin.ScriptFlush(ctx).Err() == nil {
					atomic.AddInt64(count, 1)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
