package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// config is one run of the suite.
type config struct {
	addr    string
	quick   bool
	out     string // BENCHMARKS.md path ("" = do not write)
	png     string // plot path ("" = do not write)
	command string // the command line, for the report

	sizes       []int
	rounds      int           // rounds of the main and tracing rows
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
	tracing     bool
	// maxInterference: a round during which other processes used more than
	// this share of the CPUs is measured again (0 turns that off).
	maxInterference float64
	only            *regexp.Regexp // run only rows whose label matches (investigation)

	log io.Writer
}

func defaultConfig() config {
	return config{
		out:             "BENCHMARKS.md",
		png:             "results.png",
		sizes:           []int{200, 4 << 10, 32 << 10},
		rounds:          10,
		slice:           250 * time.Millisecond,
		warm:            200 * time.Millisecond,
		goroutines:      16,
		batch:           1000,
		coldRounds:      60,
		coldWorkers:     16,
		coldCalls:       8,
		flushSize:       4 << 10,
		flushRounds:     6,
		flushSlice:      time.Second,
		flushEvery:      time.Second,
		tracing:         true,
		log:             io.Discard,
		maxInterference: 0.25,
	}
}

// quickConfig is the smoke run (about a minute).
func quickConfig() config {
	c := defaultConfig()
	c.quick = true
	c.rounds = 5
	c.slice = 100 * time.Millisecond
	c.warm = 50 * time.Millisecond
	c.coldRounds = 10
	c.flushRounds = 2
	c.flushSlice = time.Second
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
	groupTrace
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

	samples   map[contender][]sample // one per round
	redone    int                    // rounds measured again because of other processes' load
	flushes   int64                  // SCRIPT FLUSH sent during the row
	hookDelta map[contender]scripthook.Stats
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
		wall += int64(ss[i].elapsed)
	}
	if wall <= 0 {
		return 0, false
	}
	return float64(foreign) / (float64(wall) * float64(runtime.NumCPU())), true
}

func (r *row) label() string {
	sz := sizeLabel(r.size)
	switch r.mode {
	case modePipeline:
		return fmt.Sprintf("%s · pipeline ×%d", sz, r.batch)
	case modeCold:
		return fmt.Sprintf("%s · cold start, %d goroutines × %d calls", sz, r.goroutines, r.calls)
	}
	s := fmt.Sprintf("%s · single, %d goroutine", sz, r.goroutines)
	if r.goroutines != 1 {
		s += "s"
	}
	if r.flush {
		s += ", SCRIPT FLUSH every " + r.flushEvery.String()
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
	for _, sz := range cfg.sizes {
		for _, m := range []struct {
			mode rowMode
			g    int
		}{{modeSingle, 1}, {modeSingle, cfg.goroutines}, {modePipeline, 1}} {
			rows = append(rows, &row{group: groupMain, size: sz, mode: m.mode, goroutines: m.g, batch: cfg.batch,
				rounds: cfg.rounds, dur: cfg.slice, contenders: mainContenders})
		}
	}
	for _, sz := range cfg.sizes {
		rows = append(rows, &row{group: groupCold, size: sz, mode: modeCold, goroutines: cfg.coldWorkers,
			calls: cfg.coldCalls, rounds: cfg.coldRounds, contenders: mainContenders})
	}
	rows = append(rows, &row{group: groupFlush, size: cfg.flushSize, mode: modeSingle, goroutines: cfg.goroutines,
		flush: true, flushEvery: cfg.flushEvery, rounds: cfg.flushRounds, dur: cfg.flushSlice, contenders: mainContenders})
	if cfg.tracing {
		sz := cfg.sizes[0]
		for _, m := range []struct {
			mode rowMode
			g    int
		}{{modeSingle, 1}, {modeSingle, cfg.goroutines}, {modePipeline, 1}} {
			rows = append(rows, &row{group: groupTrace, size: sz, mode: m.mode, goroutines: m.g, batch: cfg.batch,
				rounds: cfg.rounds, dur: cfg.slice, contenders: traceContenders})
		}
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
	spans   *spanCounter
	probe   *probe
	scripts map[int]*workloadScript
	rows    []*row
	started time.Time
	elapsed time.Duration
	load    [2]string // /proc/loadavg before and after
	env     environment
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.log, format+"\n", args...)
}

// runSuite runs every row against srv.
func runSuite(ctx context.Context, cfg *config, srv *server) (*suite, error) {
	s := &suite{cfg: cfg, srv: srv, spans: &spanCounter{}, scripts: map[int]*workloadScript{}}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(s.spans))
	defer func() { _ = s.tp.Shutdown(context.Background()) }()
	s.probe = &probe{serverPID: srv.PID, spans: s.spans.n.Load}
	s.admin = redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer s.admin.Close()
	if err := s.admin.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("server %s: %w", srv.Addr, err)
	}
	sizes := append([]int{}, cfg.sizes...)
	sizes = append(sizes, cfg.flushSize)
	for _, sz := range sizes {
		if _, ok := s.scripts[sz]; !ok {
			sc := makeScript(sz)
			s.scripts[sz] = &sc
		}
	}
	// Versions are taken before the run: the library's work tree may change
	// while it runs, and this binary was built from what it was at the start.
	s.env = collectEnv(srv)
	s.rows = buildRows(cfg)
	if cfg.only != nil {
		var keep []*row
		for _, r := range s.rows {
			if cfg.only.MatchString(r.label()) {
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
			return nil, fmt.Errorf("row %q: %w", r.label(), err)
		}
		other := ""
		if f, ok := r.interference(); ok {
			other = fmt.Sprintf(" other=%2.0f%%", 100*f)
		}
		s.logf("[%2d/%d] %-60s %6.1fs%s  %s", i+1, len(s.rows), r.fullLabel(), time.Since(t).Seconds(), other, quickLine(r))
	}
	s.elapsed = time.Since(s.started)
	s.load[1] = loadAvg()
	return s, nil
}

// quickLine is a one-line progress summary of a row: median calls/s.
func quickLine(r *row) string {
	out := ""
	for _, c := range r.contenders {
		out += fmt.Sprintf("%s=%s ", shortName(c), fmtRate(median(mapSamples(r.samples[c], (*sample).callsPerSec))))
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
	case cRueidis:
		return "rueidis"
	case cEvalOtel:
		return "otel"
	case cEvalOtelNoStmt:
		return "otel-nostmt"
	case cHookOff:
		return "hook-off"
	case cHookTraced:
		return "hook-traced"
	}
	return "?"
}

func (s *suite) runRow(ctx context.Context, r *row) error {
	sc := s.scripts[r.size]
	r.samples = make(map[contender][]sample, len(r.contenders))
	r.hookDelta = map[contender]scripthook.Stats{}
	nw := r.goroutines
	if nw < 1 {
		nw = 1
	}
	workers := make([]*worker, nw)
	for i := range workers {
		workers[i] = &worker{}
	}

	// Warm rows: one client per contender for the whole row, set up and
	// warmed before the first measured slice.
	insts := map[contender]instance{}
	defer func() {
		for _, in := range insts {
			in.close()
		}
	}()
	hookBefore := map[contender]scripthook.Stats{}
	if r.mode != modeCold {
		if err := s.admin.ScriptLoad(ctx, sc.body).Err(); err != nil {
			return err
		}
		for _, c := range r.contenders {
			in, err := newInstance(c, s.srv.Addr, sc, s.tp)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			insts[c] = in
			if err := in.prepare(ctx); err != nil {
				return fmt.Errorf("%s: prepare: %w", c, err)
			}
			if err := in.ping(ctx); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			var w sample
			if r.mode == modePipeline {
				w = runPipeline(ctx, s.probe, in, workers[0], s.cfg.warm, r.batch)
			} else {
				w = runSingle(ctx, s.probe, in, workers, s.cfg.warm, -1, nil)
			}
			if w.total() == 0 || w.otherErr > 0 || w.wrong > 0 {
				return fmt.Errorf("%s: warm-up failed: %d calls, %d errors, %d wrong: %s", c, w.total(), w.otherErr, w.wrong, w.firstErr)
			}
			if st, ok := in.hookStats(); ok {
				hookBefore[c] = st
			}
		}
	}

	var stopFlush func()
	if r.flush {
		stopFlush = s.startFlusher(ctx, &r.flushes)
	}
	// A round during which other processes used much of the machine is
	// measured again, within a budget: on a shared machine a burst of
	// someone else's work would otherwise decide a round. Cold rows are
	// exempt: their slices last milliseconds, below /proc/stat's resolution.
	budget := 0
	if r.mode != modeCold && s.cfg.maxInterference > 0 {
		budget = (r.rounds + 1) / 2
	}
	for round, done := 0, 0; done < r.rounds; round++ {
		n := len(r.contenders)
		got := make(map[contender]sample, n)
		for k := 0; k < n; k++ {
			c := r.contenders[(k+round)%n]
			var smp sample
			var err error
			switch r.mode {
			case modeCold:
				smp, err = s.coldSlice(ctx, r, c, sc, workers)
			case modePipeline:
				smp = runPipeline(ctx, s.probe, insts[c], workers[0], r.dur, r.batch)
			default:
				smp = runSingle(ctx, s.probe, insts[c], workers, r.dur, -1, nil)
			}
			if err != nil {
				if stopFlush != nil {
					stopFlush()
				}
				return fmt.Errorf("%s: %w", c, err)
			}
			got[c] = smp
		}
		if f, ok := interferenceOf(got); ok && f > s.cfg.maxInterference && budget > 0 {
			budget--
			r.redone++
			s.logf("       round %d: other processes used %.0f%% of the CPUs; measuring it again", round+1, 100*f)
			continue
		}
		for _, c := range r.contenders {
			r.samples[c] = append(r.samples[c], got[c])
		}
		done++
	}
	if stopFlush != nil {
		stopFlush()
	}
	for c, in := range insts {
		if st, ok := in.hookStats(); ok {
			b := hookBefore[c]
			r.hookDelta[c] = scripthook.Stats{
				Rewritten:        st.Rewritten - b.Rewritten,
				BodiesSent:       st.BodiesSent - b.BodiesSent,
				NoScriptRepaired: st.NoScriptRepaired - b.NoScriptRepaired,
				NoScriptPassed:   st.NoScriptPassed - b.NoScriptPassed,
				BytesSaved:       st.BytesSaved - b.BytesSaved,
				Scripts:          st.Scripts,
			}
		}
	}
	return nil
}

// coldSlice measures the first calls of a new client after SCRIPT FLUSH.
// Connections are dialled before the flush and the clock starts: the cold
// start measured is the script cache's, not TCP's.
func (s *suite) coldSlice(ctx context.Context, r *row, c contender, sc *workloadScript, workers []*worker) (sample, error) {
	in, err := newInstance(c, s.srv.Addr, sc, s.tp)
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
	smp := runSingle(ctx, s.probe, in, workers, 0, r.calls, func() error { return in.prepare(ctx) })
	if st, ok := in.hookStats(); ok {
		d := r.hookDelta[c]
		d.Rewritten += st.Rewritten
		d.BodiesSent += st.BodiesSent
		d.NoScriptRepaired += st.NoScriptRepaired
		d.NoScriptPassed += st.NoScriptPassed
		d.BytesSaved += st.BytesSaved
		r.hookDelta[c] = d
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
