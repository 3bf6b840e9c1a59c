package main

import (
	"context"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
)

// TestMain lets the test binary serve as the FIPS row's child process, as
// the command's binary does.
func TestMain(m *testing.M) {
	if isChild() {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// ultraQuick is the smallest configuration that still runs every row and
// every contender.
func ultraQuick(t *testing.T) config {
	cfg := defaultConfig()
	cfg.quick = true
	cfg.seed = 1
	cfg.rounds = 2
	cfg.slice = 30 * time.Millisecond
	cfg.warm = 10 * time.Millisecond
	cfg.goroutines = 4
	cfg.batch = 50
	cfg.coldRounds = 1
	cfg.coldWorkers = 4
	cfg.coldCalls = 2
	cfg.flushRounds = 1
	cfg.flushSlice = 300 * time.Millisecond
	cfg.flushEvery = 50 * time.Millisecond
	cfg.evictScripts = 40
	cfg.hotScripts = 3
	cfg.neighbourEvals = 5
	cfg.neighbourCacheLimit = 10 // exercises the flush between rounds on a server that does not evict
	cfg.autoGoroutines = []int{4}
	cfg.log = testWriter{t}
	dir := t.TempDir()
	cfg.out = filepath.Join(dir, "BENCHMARKS.md")
	cfg.png = filepath.Join(dir, "results.png")
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestSuiteUltraQuick runs the whole suite in miniature against a server it
// starts, and checks that every contender of every row ran, got only correct
// replies, and that scripthook never let a NOSCRIPT through.
func TestSuiteUltraQuick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := fromRedistest(redistest.Start(t), "")

	cfg := ultraQuick(t)
	s, err := runSuite(ctx, &cfg, srv)
	if err != nil {
		t.Fatal(err)
	}
	groups := map[group]int{}
	for _, r := range s.rows {
		groups[r.group]++
		for _, c := range r.contenders {
			ss := r.samples[c]
			if len(ss) != r.rounds {
				t.Errorf("%s / %s: %d samples, want %d", r.label(), c, len(ss), r.rounds)
				continue
			}
			var calls, wrong, other, noScript int64
			for _, smp := range ss {
				calls += smp.calls
				wrong += smp.wrong
				other += smp.otherErr
				noScript += smp.noScript
				if smp.otherErr > 0 || smp.wrong > 0 {
					t.Errorf("%s / %s: %s", r.label(), c, smp.firstErr)
				}
			}
			if calls == 0 {
				t.Errorf("%s / %s: no correct calls", r.label(), c)
			}
			var bytes, trips int64
			for _, smp := range ss {
				bytes += smp.bytes
				trips += smp.trips
			}
			if bytes == 0 || trips == 0 {
				t.Errorf("%s / %s: %d bytes written, %d round trips counted", r.label(), c, bytes, trips)
			}
			if r.info && ss[0].cmdUs < 0 {
				t.Errorf("%s / %s: no INFO figures", r.label(), c)
			}
			if wrong != 0 || other != 0 {
				t.Errorf("%s / %s: %d wrong replies, %d errors", r.label(), c, wrong, other)
			}
			// Only the hand-written EvalSha (and its A/A twin) may see
			// NOSCRIPT, and only while the cache is being flushed.
			if noScript != 0 && !(r.flush && (c == cEvalSha || c == cControl)) {
				t.Errorf("%s / %s: %d NOSCRIPT errors reached the caller", r.label(), c, noScript)
			}
			if r.group == groupTrace && c == cEvalOtel && r.mode == modeSingle {
				var spans int64
				for _, smp := range ss {
					spans += smp.spans
				}
				if spans == 0 {
					t.Errorf("%s / %s: the SDK recorded no spans", r.label(), c)
				}
			}
		}
		if r.flush {
			if r.flushes == 0 {
				t.Errorf("%s: no SCRIPT FLUSH was sent", r.label())
			}
			if d := r.hookDelta[cScripthook]; d.NoScriptPassed != 0 {
				t.Errorf("%s: scripthook passed %d NOSCRIPT to the caller", r.label(), d.NoScriptPassed)
			}
		}
	}
	if groups[groupMain] != 9 || groups[groupCold] != 3 || groups[groupFlush] != 1 || groups[groupEvict] != 2 ||
		groups[groupFIPS] != 1 || groups[groupAuto] != 1 || groups[groupTrace] != 3 || groups[groupFCall] != 2 {
		t.Errorf("rows per group: %v", groups)
	}
	for _, r := range s.rows {
		if _, ok := aaBand(r); !ok {
			t.Errorf("%s: no A/A band", r.fullLabel())
		}
		if len(r.orders) != r.rounds {
			t.Errorf("%s: %d orders for %d rounds", r.fullLabel(), len(r.orders), r.rounds)
		}
		if r.group == groupFIPS {
			if d := r.hookDelta[cScripthook]; d.Rewritten == 0 {
				t.Errorf("%s: scripthook rewrote nothing under fips140=only: %+v", r.label(), d)
			}
		}
		if r.group == groupFCall {
			// The hook saw the registered library's function: it loaded the
			// library itself (the row had loaded it by hand already, which
			// the hook cannot know) and never met Function not found.
			d, ok := r.hookEnd[cFcallHook]
			if !ok || d.FunctionLoads < 1 || d.FunctionRepaired != 0 || d.FunctionNotFoundPassed != 0 {
				t.Errorf("%s: scripthook's function counters %+v (recorded %v)", r.label(), d, ok)
			}
		}
		if r.group == groupEvict && r.neighbour > 0 && !srv.Version.EvictsScripts() && r.guardFlushes == 0 {
			t.Errorf("%s: the neighbour's scripts were never flushed on a server that does not evict", r.label())
		}
	}

	if err := writePlot(s, cfg.png); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(s, cfg.out, cfg.png); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(cfg.png)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 {
		t.Errorf("plot is %v", b)
	}
	md, err := os.ReadFile(cfg.out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Targets", "## Machine and versions", "## Method", "results.png", "go run ./cmd/scripthook-bench",
		"A/A", "-seed=1", "fips140=only", "AutoPipeline", "round robin", "trips/call", srv.Version.String(),
		cEval.String(), cScripthook.String(), cScriptRun.String(), cEvalSha.String(), cControl.String(), cRueidis.String(), cEvalOtel.String(), cEvalControl.String(),
		cFcall.String(), cFcallControl.String(), cFcallHook.String(), cFcallRueidis.String(), "### Functions (FCALL)", "FCALL through scripthook within A/A noise"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestMakeScript(t *testing.T) {
	for _, n := range []int{150, 200, 201, 1024, 4096, 32768} {
		if s := makeScript(n, ""); len(s.body) != n {
			t.Errorf("makeScript(%d): %d bytes", n, len(s.body))
		}
	}
	if makeScript(200, "").body == makeScript(200, "x").body {
		t.Error("a tag does not make a distinct body")
	}
	fam := scriptFamily(1024, 50, "f")
	seen := map[string]bool{}
	for _, s := range fam {
		if len(s.body) != 1024 || seen[s.body] {
			t.Fatalf("family: %d bytes, repeated %v", len(s.body), seen[s.body])
		}
		seen[s.body] = true
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 100000; i++ {
		h.add(time.Duration(i) * time.Microsecond / 10) // 0.1 µs .. 10 ms
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 5e6}, {0.99, 9.9e6}, {0.01, 1e5}} {
		got := h.quantile(c.q)
		if math.Abs(got-c.want)/c.want > 0.02 {
			t.Errorf("q%.2f = %.0f ns, want %.0f ± 2%%", c.q, got, c.want)
		}
	}
	for _, ns := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 123456789, 1 << 40} {
		b := histBucket(ns)
		v := histValue(b)
		if ns >= 64 && math.Abs(v-float64(ns))/float64(ns) > 0.016 {
			t.Errorf("bucket value of %d is %.0f", ns, v)
		}
	}
}

// Every contender runs in every position once per block and right after
// every other contender equally often (once for even n, twice for odd n).
func TestWilliamsBalanced(t *testing.T) {
	for n := 2; n <= 7; n++ {
		p := newOrderPlan(n, 42, 7)
		var orders [][]int
		for k := 0; k < 3*p.blockLen(); k++ {
			orders = append(orders, p.order(k))
		}
		for b := 0; b < 3; b++ {
			block := orders[b*p.blockLen() : (b+1)*p.blockLen()]
			pos := make([][]int, n)
			for i := range pos {
				pos[i] = make([]int, n)
			}
			for _, o := range block {
				if len(o) != n {
					t.Fatalf("n=%d: order %v", n, o)
				}
				for i, c := range o {
					pos[c][i]++
				}
			}
			want := p.blockLen() / n
			for c := range pos {
				for i := range pos[c] {
					if pos[c][i] != want {
						t.Errorf("n=%d block %d: contender %d in position %d %d times, want %d", n, b, c, i, pos[c][i], want)
					}
				}
			}
			lo, hi := followRange(followCounts(n, block))
			if wantF := p.blockLen() / n; lo != wantF || hi != wantF {
				t.Errorf("n=%d block %d: followed %d..%d times, want %d", n, b, lo, hi, wantF)
			}
		}
		// The same seed gives the same orders; a redone round keeps its order.
		q := newOrderPlan(n, 42, 7)
		for k := range orders {
			if got := q.order(k); !slices.Equal(got, orders[k]) {
				t.Fatalf("n=%d round %d: %v, then %v", n, k, orders[k], got)
			}
		}
		if !slices.Equal(q.order(len(orders)-1), orders[len(orders)-1]) {
			t.Errorf("n=%d: asking again changed the order", n)
		}
	}
	a, b := newOrderPlan(6, 1, 0), newOrderPlan(6, 2, 0)
	same := true
	for k := 0; k < 12; k++ {
		same = same && slices.Equal(a.order(k), b.order(k))
	}
	if same {
		t.Error("seeds 1 and 2 gave the same orders")
	}
}

// The A/A rule: short of 0.90 × the limit is missed only below 0.90 × the
// lower end of the noise band; slower than Eval only below that end.
func TestAAVerdicts(t *testing.T) {
	r := &row{group: groupMain, size: 200, mode: modeSingle, goroutines: 1}
	aa := aaSpread{band: summarize([]float64{0.80, 0.90, 0.95, 1.00, 1.05, 1.10})} // q1 0.9125
	aa.raw = aa.band
	lim := &agg{c: cEvalSha}
	ev := &agg{c: cEval}
	for _, c := range []struct {
		m             float64
		label         string
		met, noise, n bool
	}{
		{0.95, "met", true, false, false},
		{0.91, "met (gap beyond A/A noise)", true, false, true},
		{0.85, "within A/A noise", true, true, false},
		{0.80, "**missed**", false, false, false},
	} {
		h := &agg{c: cScripthook, vsLimit: stat{med: c.m, n: 6}, vsEval: stat{med: 1, n: 6}}
		v := limitVerdict(r, h, lim, aa, true)
		if v.met != c.met || v.noise != c.noise || v.narrow != c.n || v.label() != c.label {
			t.Errorf("ratio %.2f: %q (met %v noise %v narrow %v), want %q", c.m, v.label(), v.met, v.noise, v.narrow, c.label)
		}
	}
	for _, c := range []struct {
		m   float64
		met bool
	}{{0.92, true}, {0.91, false}, {1.2, true}} {
		h := &agg{c: cScripthook, vsEval: stat{med: c.m, n: 6}}
		if v := evalVerdict(r, h, ev, aa, true); v.met != c.met {
			t.Errorf("×Eval %.2f: met %v, want %v", c.m, v.met, c.met)
		}
	}
	if got := aaPosition(0.85, 1, aa); got != "below" {
		t.Errorf("position %q", got)
	}
	if got := aaPosition(1.0, 1, aa); got != "within" {
		t.Errorf("position %q", got)
	}
}

// FCALL rows: the hook's ratio to plain FCALL is judged against the lower
// end of the noise band only, and the ratios are taken against plain FCALL.
func TestFcallVerdict(t *testing.T) {
	r := &row{group: groupFCall, mode: modeSingle, goroutines: 1, contenders: fcallContenders, samples: map[contender][]sample{}}
	if r.limit() != cFcall || r.label() != "FCALL · single, 1 goroutine" {
		t.Fatalf("limit %v, label %q", r.limit(), r.label())
	}
	for _, x := range [][4]int64{{100, 90, 95, 200}, {100, 105, 99, 210}, {100, 100, 93, 190}, {100, 95, 101, 205}} {
		for i, c := range fcallContenders {
			r.samples[c] = append(r.samples[c], sample{calls: x[i], elapsed: time.Second})
		}
	}
	as := aggregate(r)
	h, ref := findAgg(as, cFcallHook), findAgg(as, cFcall)
	if math.Abs(h.vsLimit.med-0.97) > 1e-9 || h.vsEval.n != 0 {
		t.Fatalf("×FCALL %+v, ×Eval %+v", h.vsLimit, h.vsEval)
	}
	aa, ok := aaBand(r)
	if !ok {
		t.Fatal("no A/A band")
	}
	v := fcallVerdict(r, h, ref, aa, true)
	if !v.judged || !v.met || v.label() != "met" {
		t.Errorf("ratio %.2f, band %.3f–%.3f: %q", h.vsLimit.med, aa.band.q1, aa.band.q3, v.label())
	}
	h.vsLimit.med = aa.band.q1 - 0.01
	if v := fcallVerdict(r, h, ref, aa, true); v.met || !strings.Contains(v.detail, "FCALL + scripthook vs FCALL, library preloaded") {
		t.Errorf("below the band: %q, %s", v.label(), v.detail)
	}
	if got := controlOf(cFcallControl); got != cFcall || !cFcallControl.isControl() {
		t.Errorf("controlOf(cFcallControl) = %v", got)
	}
}

func TestFcallLibrary(t *testing.T) {
	h := scripthook.New()
	name, err := h.RegisterLibrary(fcallLibrary)
	if err != nil || name != fcallLibName {
		t.Fatalf("RegisterLibrary: %q, %v", name, err)
	}
	if !strings.Contains(fcallLibrary, "'"+fcallFunction+"'") || !strings.Contains(makeScript(200, "").body, "return n * 3 + 1") {
		t.Error("the library and the scripts compute different things")
	}
}

func TestAABandSymmetric(t *testing.T) {
	r := &row{contenders: []contender{cEvalSha, cControl}, samples: map[contender][]sample{}}
	for _, x := range [][2]int64{{100, 80}, {100, 95}, {100, 70}, {100, 100}, {100, 90}} {
		r.samples[cEvalSha] = append(r.samples[cEvalSha], sample{calls: x[0], elapsed: time.Second})
		r.samples[cControl] = append(r.samples[cControl], sample{calls: x[1], elapsed: time.Second})
	}
	aa, ok := aaBand(r)
	if !ok || aa.raw.n != 5 || math.Abs(aa.raw.med-0.90) > 1e-9 {
		t.Fatalf("%+v", aa)
	}
	if math.Abs(aa.band.q1*aa.band.q3-1) > 1e-9 || math.Abs(aa.band.med-1) > 1e-9 || aa.band.q1 >= 0.95 {
		t.Errorf("band %+v", aa.band)
	}
}

func TestQuantiles(t *testing.T) {
	s := summarize([]float64{4, 1, 3, 2})
	if s.med != 2.5 || s.q1 != 1.75 || s.q3 != 3.25 || s.lo != 1 || s.hi != 4 || s.n != 4 {
		t.Errorf("%+v", s)
	}
}

func TestVersionFromInfo(t *testing.T) {
	v := redistest.VersionFromInfo("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n")
	if v.String() != "Valkey 8.0.1" || !v.EvictsScripts() {
		t.Errorf("%v", v)
	}
	v = redistest.VersionFromInfo("redis_version:7.0.15\r\n")
	if v.String() != "Redis 7.0.15" || v.EvictsScripts() {
		t.Errorf("%v", v)
	}
}

func TestReadServerCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, _, err := readServerCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
