package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// environment describes where and with what the suite ran.
type environment struct {
	cpus       int
	gomaxprocs int
	cpuModel   string
	kernel     string
	memory     string
	goVersion  string
	redis      string
	deps       map[string]string
	scripthook string // git commit of the library under test
}

func collectEnv(srv *server) environment {
	e := environment{
		cpus:       runtime.NumCPU(),
		gomaxprocs: runtime.GOMAXPROCS(0),
		goVersion:  runtime.Version(),
		redis:      srv.Version,
		deps:       map[string]string{},
		cpuModel:   "unknown",
		kernel:     "unknown",
		memory:     "unknown",
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d", &kb); err == nil {
					e.memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	libDir := ".."
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/scripthook/scripthook" && d.Replace != nil && d.Replace.Version == "" {
				libDir = d.Replace.Path
			}
			v := d.Version
			if d.Replace != nil {
				v = "=> " + d.Replace.Path
				if d.Replace.Version != "" {
					v += " " + d.Replace.Version
				}
			}
			e.deps[d.Path] = v
		}
	}
	e.scripthook = gitDescribe(libDir)
	return e
}

// gitDescribe names the commit of the library under test: the directory
// the bench module's replace directive points at (normally ..), with a note
// when its work tree has changes outside bench/.
func gitDescribe(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown commit"
	}
	s := "commit " + strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		s += " with uncommitted changes"
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// verdict is one target check.
type verdict struct {
	row, target, result, detail string
	met                         bool
	judged                      bool
	narrow                      bool // met, with a systematic gap to the limit
}

func findAgg(as []agg, c contender) *agg {
	for i := range as {
		if as[i].c == c {
			return &as[i]
		}
	}
	return nil
}

// checkTargets evaluates the targets on every row.
func checkTargets(s *suite) []verdict {
	var vs []verdict
	for _, r := range s.rows {
		as := aggregate(r)
		switch r.group {
		case groupMain, groupCold, groupFlush:
			h, lim, ev := findAgg(as, cScripthook), findAgg(as, cEvalSha), findAgg(as, cEval)
			if h == nil || lim == nil || ev == nil {
				continue
			}
			v := verdict{row: r.label(), target: "≥ 0.90 × EvalSha preloaded", judged: true}
			v.met = h.vsLimit.med >= 0.90
			v.result = fmt.Sprintf("%.2f × (rounds %.2f–%.2f)", h.vsLimit.med, h.vsLimit.lo, h.vsLimit.hi)
			if r.flush {
				v.detail = fmt.Sprintf("the preloaded EvalSha returned %d NOSCRIPT errors here (its failed calls are not counted as calls); scripthook %d. ", lim.noScript, h.noScript)
			}
			switch {
			case !v.met && h.limitSignP >= 0.05:
				v.detail += fmt.Sprintf("Slower than the limit in only %d of %d rounds (sign test p = %.3f): the gap is not consistent across rounds, so this row's median is within the machine's noise. %s",
					h.belowLimitRounds, h.vsLimit.n, h.limitSignP, whyVsLimit(h, lim))
			case !v.met:
				v.detail += fmt.Sprintf("Slower than the limit in %d of %d rounds (sign test p = %.3f): a systematic gap. %s",
					h.belowLimitRounds, h.vsLimit.n, h.limitSignP, whyVsLimit(h, lim))
			case h.limitSignP < 0.05 && h.vsLimit.med < 0.98:
				v.narrow = true
				v.detail += fmt.Sprintf("Met, but slower than the limit in %d of %d rounds (sign test p = %.3f), so the gap is systematic: %s",
					h.belowLimitRounds, h.vsLimit.n, h.limitSignP, whyVsLimit(h, lim))
			}
			if f, ok := r.interference(); ok && f >= 0.10 && (!v.met || v.narrow) {
				v.detail += fmt.Sprintf(" Other processes used %.0f %% of the machine's CPU time during this row.", 100*f)
			}
			vs = append(vs, v)
			w := verdict{row: r.label(), target: "not slower than Eval beyond noise", judged: true}
			w.met = !h.slowerThanEvalBeyondNoise()
			w.result = fmt.Sprintf("%.2f × Eval (rounds %.2f–%.2f; slower in %d of %d rounds, sign test p = %.3f)",
				h.vsEval.med, h.vsEval.lo, h.vsEval.hi, h.slowerRounds, h.vsEval.n, h.signP)
			if !w.met {
				w.detail = whyVsLimit(h, ev)
			}
			vs = append(vs, w)
		case groupTrace:
			ht := findAgg(as, cHookTraced)
			for _, oc := range []contender{cEvalOtel, cEvalOtelNoStmt} {
				ot := findAgg(as, oc)
				if ht == nil || ot == nil {
					continue
				}
				vs = append(vs, traceVerdict(r, ht, ot))
			}
		}
	}
	return vs
}

// traceVerdict compares scripthook's span overhead with one redisotel
// variant's on a tracing row.
func traceVerdict(r *row, ht, ot *agg) verdict {
	target := "scripthook span overhead ≤ redisotel's"
	if ot.c == cEvalOtelNoStmt {
		target += " (redisotel with db.statement off)"
	}
	v := verdict{row: r.fullLabel(), target: target}
	v.result = fmt.Sprintf("scripthook %s µs/call wall, %s µs/call client CPU, %s allocs/call; redisotel %s µs/call wall, %s µs/call client CPU, %s allocs/call",
		fmtSigned(ht.dWall.med), fmtSigned(ht.dCPU.med), fmtSigned(ht.dAllocs.med), fmtSigned(ot.dWall.med), fmtSigned(ot.dCPU.med), fmtSigned(ot.dAllocs.med))
	if ht.spans < 0.001 {
		v.detail = "scripthook recorded no spans in this build (tracing.go does not create spans yet), so its overhead is that of a disabled tracer; the target cannot be judged."
		return v
	}
	v.judged = true
	// Client CPU per call is the cost tracing adds; wall time per call on
	// two shared cores is noisier, so both must be worse for a miss.
	v.met = ht.dCPU.med <= ot.dCPU.med || ht.dWall.med <= ot.dWall.med
	if !v.met {
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
	if o.c == cEvalSha && h.dCliLimit.n > 0 {
		parts = append(parts, fmt.Sprintf("paired per-round difference %s µs client CPU and %s allocations per call", fmtSigned(h.dCliLimit.med), fmtSigned(h.dAllocsLimit.med)))
	}
	parts = append(parts, fmt.Sprintf("allocations %s vs %s /call", fmtNum(h.allocs), fmtNum(o.allocs)))
	if h.srvKnown && o.srvKnown {
		parts = append(parts, fmt.Sprintf("server CPU %s vs %s µs/call", fmtNum(h.srvUs), fmtNum(o.srvUs)))
	}
	parts = append(parts, fmt.Sprintf("bytes written %s vs %s /call", fmtNum(h.bytes), fmtNum(o.bytes)))
	parts = append(parts, fmt.Sprintf("p50 %s vs %s", fmtDur(h.p50), fmtDur(o.p50)))
	return fmt.Sprintf("scripthook vs %s: %s.", o.c, strings.Join(parts, "; "))
}

// writeReport writes BENCHMARKS.md.
func writeReport(s *suite, path, pngPath string) error {
	var b strings.Builder
	cfg := s.cfg
	env := s.env
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("# scripthook benchmarks\n\n")
	w("Generated by `bench/cmd/scripthook-bench` on %s in %s", time.Now().UTC().Format("2006-01-02 15:04 UTC"), s.elapsed.Round(time.Second))
	if cfg.quick {
		w(" (**-quick smoke run**: few, short rounds; figures are indicative only)")
	}
	w(". Do not edit by hand: run the command below to regenerate it.\n\n")
	w("```sh\n%s\n```\n\n", reproCommand(cfg))

	if pngPath != "" {
		rel := pngPath
		if r, err := filepath.Rel(filepath.Dir(absPath(path)), absPath(pngPath)); err == nil {
			rel = filepath.ToSlash(r)
		}
		w("![calls/s per contender and script size](%s)\n\n", rel)
		w("*Median calls/s of each contender per script size; the whiskers span the slowest and fastest round.*\n\n")
	}

	// Targets.
	vs := checkTargets(s)
	met, missed, unjudged := 0, 0, 0
	for _, v := range vs {
		switch {
		case !v.judged:
			unjudged++
		case v.met:
			met++
		default:
			missed++
		}
	}
	w("## Targets\n\n")
	w("%d checks met, %d missed, %d not judged.\n\n", met, missed, unjudged)
	w("| Workload | Target | Result | Verdict |\n|---|---|---|---|\n")
	for _, v := range vs {
		verdict := "met"
		switch {
		case v.narrow:
			verdict = "met (systematic gap)"
		case !v.judged:
			verdict = "not judged"
		case !v.met:
			verdict = "**missed**"
		}
		res := v.result
		if v.detail != "" {
			res += ". " + v.detail
		}
		w("| %s | %s | %s | %s |\n", v.row, v.target, mdEscape(res), verdict)
	}
	w("\n")

	if fs := findings(s); len(fs) > 0 {
		w("## Findings\n\n")
		for _, f := range fs {
			w("- %s\n", f)
		}
		w("\n")
	}

	w("## Results\n\n")
	w("Medians over rounds. *×Eval* and *×limit* are the medians of per-round ratios of calls/s to plain go-redis `Eval` and to the hand-written preloaded `EvalSha` (the limit for go-redis), with the range over rounds in parentheses. ")
	w("Latency is per call, except for pipelines where it is per batch of %d. ", cfg.batch)
	w("Bytes are those the client wrote to the socket; server CPU is the redis-server process's CPU time (the run time of its threads from `/proc/PID/task/*/schedstat`, in ns; a value marked † fell back to utime+stime from `/proc/PID/stat`, in 10 ms ticks, and is pooled over the rounds instead of a median); client CPU and allocations are the whole benchmark process's (they include go-redis's or rueidis's own work) per call.\n\n")
	s.writeTable(&b, groupMain, "### Warm single calls and pipelines\n\n")
	s.writeTable(&b, groupCold, fmt.Sprintf("### Cold start\n\nEach slice makes a new client, dials its connections, sends `SCRIPT FLUSH` from another client, then measures the first %d calls of %d goroutines (%d calls). The preloaded EvalSha does its `SCRIPT LOAD` inside the measured time. %d rounds.\n\n",
		cfg.coldCalls, cfg.coldWorkers, cfg.coldCalls*cfg.coldWorkers, cfg.coldRounds))
	s.writeTable(&b, groupFlush, fmt.Sprintf("### SCRIPT FLUSH every %s\n\nAnother client sends `SCRIPT FLUSH` every %s during the whole row (%d slices of %s per contender). *NOSCRIPT* counts NOSCRIPT errors that reached the application: the hand-written EvalSha counts each one, loads the script again and does not retry that call; its failed calls are not in calls/s.\n\n",
		cfg.flushEvery, cfg.flushEvery, cfg.flushRounds, cfg.flushSlice))
	for _, r := range s.rows {
		if r.group != groupFlush {
			continue
		}
		w("%d flushes were sent during the row. ", r.flushes)
		if d, ok := r.hookDelta[cScripthook]; ok {
			w("scripthook's counters over the measured slices: %d NOSCRIPT repaired, %d passed to the caller, %d bodies sent, %d calls rewritten.\n\n",
				d.NoScriptRepaired, d.NoScriptPassed, d.BodiesSent, d.Rewritten)
		}
	}
	if cfg.tracing {
		s.writeTraceTable(&b)
	}

	w("## Machine and versions\n\n")
	w("| | |\n|---|---|\n")
	w("| CPU | %s, %d logical CPUs (nproc), GOMAXPROCS %d |\n", env.cpuModel, env.cpus, env.gomaxprocs)
	w("| Memory | %s |\n", env.memory)
	w("| Kernel | %s |\n", env.kernel)
	w("| Load average (1/5/15 min) | %s before, %s after the run |\n", s.load[0], s.load[1])
	w("| Redis | %s, ", env.redis)
	if s.srv.Started {
		w("started by the suite on %s (`--save '' --appendonly no`)", s.srv.Addr)
	} else {
		w("given with -addr %s", s.srv.Addr)
	}
	w(", on the same machine as the client |\n")
	var inter []string
	for _, r := range s.rows {
		if r.mode == modeCold {
			inter = append(inter, "n/a (cold)")
		} else if f, ok := r.interference(); ok {
			x := fmt.Sprintf("%.0f %%", 100*f)
			if r.redone > 0 {
				x += fmt.Sprintf(" (%d round(s) redone)", r.redone)
			}
			inter = append(inter, x)
		}
	}
	if len(inter) > 0 {
		w("| Other processes' share of the CPUs during each row's slices, in run order (cold-start slices are too short to tell) | %s |\n", strings.Join(inter, ", "))
	}
	w("| Go | %s |\n", env.goVersion)
	w("| scripthook | %s |\n", env.scripthook)
	for _, p := range []string{"github.com/redis/go-redis/v9", "github.com/redis/go-redis/extra/redisotel/v9", "github.com/redis/rueidis", "go.opentelemetry.io/otel", "go.opentelemetry.io/otel/sdk"} {
		v := env.deps[p]
		if v == "" {
			v = "unknown"
		}
		w("| %s | %s |\n", p, v)
	}
	w("\n")

	w("## Method\n\n")
	w("- **Contenders.** ")
	for i, c := range append(append([]contender{}, mainContenders...), traceContenders[1:]...) {
		if i > 0 {
			w(" ")
		}
		w("*%s*: %s.", c, c.describe())
	}
	w("\n")
	w("- **Scripts.** Three bodies of %s; each is `return tonumber(ARGV[1]) * 3 + 1` padded with a Lua comment to its size, called with one key and one argument. Every reply of every contender is checked against the expected value; wrong replies and errors are counted (columns *wrong*, *errors*) and left out of calls/s.\n", sizesLabel(cfg.sizes))
	w("- **Interleaving.** Each row creates one client per contender, warms it up (%s untimed) and then runs %d rounds; a round runs every contender for one slice of %s, one after the other, with the order rotated by one each round, so machine noise falls on all contenders alike. A `runtime.GC()` precedes each slice. Cold-start rows use a fresh client per slice instead.\n", cfg.warm, cfg.rounds, cfg.slice)
	w("- **Figures.** Every figure is the median over rounds; ratios are computed within a round and then their median is taken. Latency comes from a log-linear histogram (≤ 1.6 %% bucket error) filled by each goroutine without allocating. Server CPU is read from `/proc` for the redis-server process before and after each slice: the summed run time of its threads from `/proc/PID/task/*/schedstat` (ns precision; the same CPU time as utime+stime of `/proc/PID/stat`, which counts in 10 ms ticks, too coarse for short slices and used only as a fallback, pooled over rounds). `INFO commandstats` would miss EVAL's body hashing and reading. Client allocations are `runtime.MemStats.Mallocs` deltas, client CPU `getrusage(RUSAGE_SELF)` deltas; bytes written are counted by a `net.Conn` wrapper installed through go-redis's `Dialer` and rueidis's `DialCtxFn`.\n")
	w("- **Verdicts.** *≥ 0.90 × EvalSha preloaded*: the median per-round ratio of scripthook's calls/s to the preloaded EvalSha's is at least 0.90; \"met (systematic gap)\" adds that scripthook was slower than the limit in significantly many rounds (sign test, p < 0.05) and by more than 2 %% at the median, so the gap is real even where the target is met. *Span overhead*: met when scripthook's added client CPU per call or its added wall time per call (each against its untraced twin) is no larger than redisotel's.\n")
	w("- **Noise.** Two cores are shared by the client, the server and whatever else runs on the machine; the CPU time other processes used during each row (from `/proc/stat`, less this program's and the server's) is listed under *Machine and versions*; a round of a warm row during which they used more than %.0f %% of the CPUs is measured again (at most half as many extra rounds as the row has). \"Slower than Eval beyond noise\" means slower than Eval in significantly many rounds (one-sided sign test, p < 0.05) *and* by more than 2 %% at the median.\n", 100*cfg.maxInterference)
	w("- **Tracing.** One SDK `TracerProvider` with `AlwaysSample` and a span processor that counts and drops spans (no exporter cost). The overhead of a traced contender is the per-round difference against its untraced twin (scripthook traced vs scripthook with `WithTracing(false)`; redisotel vs plain Eval) of wall time per call (1/throughput) and of client CPU per call.\n")
	w("- **Pipelines.** One goroutine sends batches of %d calls with `rdb.Pipelined` (rueidis: `Lua.ExecMulti`); a *call* is one script call of the batch.\n", cfg.batch)
	w("- **Not measured.** Network latency (the server is on loopback), Redis Cluster, and scripthook's metrics.\n")
	w("\n")

	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func sizesLabel(sizes []int) string {
	var p []string
	for _, s := range sizes {
		p = append(p, sizeLabel(s))
	}
	return strings.Join(p, ", ")
}

// reproCommand is the documented command for this configuration.
func reproCommand(cfg *config) string {
	if cfg.command != "" {
		return cfg.command
	}
	c := "cd bench && go run ./cmd/scripthook-bench"
	if cfg.quick {
		c += " -quick"
	}
	return c
}

func (s *suite) writeTable(b *strings.Builder, g group, heading string) {
	var rows []*row
	for _, r := range s.rows {
		if r.group == g {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString(heading)
	noScriptCol := g == groupFlush
	b.WriteString("| Workload | Contender | calls/s | ×Eval | ×limit | p50 | p99 | B written/call | server µs/call | client µs/call | allocs/call |")
	if noScriptCol {
		b.WriteString(" NOSCRIPT |")
	}
	b.WriteString(" wrong / errors |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	if noScriptCol {
		b.WriteString("--:|")
	}
	b.WriteString("--:|\n")
	for _, r := range rows {
		for i, a := range aggregate(r) {
			label := ""
			if i == 0 {
				label = "**" + r.label() + "**"
			}
			name := a.c.String()
			if a.c == cScripthook {
				name = "**" + name + "**"
			}
			srv := "–"
			if a.srvKnown {
				srv = fmtNum(a.srvUs)
				if !a.srvExact {
					srv += " †"
				}
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |",
				label, name, fmtRate(a.cps.med), fmtRatio(a.vsEval), fmtRatio(a.vsLimit),
				fmtDur(a.p50), fmtDur(a.p99), fmtNum(a.bytes), srv, fmtNum(a.cliUs), fmtNum(a.allocs))
			if noScriptCol {
				fmt.Fprintf(b, " %d |", a.noScript)
			}
			errs := a.otherErr
			if !noScriptCol {
				errs += a.noScript
			}
			fmt.Fprintf(b, " %d / %d |\n", a.wrong, errs)
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		for _, a := range aggregate(r) {
			if a.firstErr != "" && (a.otherErr > 0 || a.wrong > 0) {
				fmt.Fprintf(b, "- %s, %s: first error: `%s`\n", r.label(), a.c, a.firstErr)
			}
		}
	}
	b.WriteString("\n")
}

func (s *suite) writeTraceTable(b *strings.Builder) {
	var rows []*row
	for _, r := range s.rows {
		if r.group == groupTrace {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("### Tracing overhead\n\n")
	b.WriteString("Always-sample SDK provider, spans dropped by the processor. *Δ* columns: median per-round difference against the untraced twin (redisotel and scripthook-off against plain Eval, scripthook traced against scripthook with tracing off); range over rounds in parentheses.\n\n")
	b.WriteString("| Workload | Contender | calls/s | p50 | p99 | spans/call | client µs/call | allocs/call | Δ wall µs/call | Δ client CPU µs/call | Δ allocs/call |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		for i, a := range aggregate(r) {
			label := ""
			if i == 0 {
				label = "**" + r.label() + "**"
			}
			dw, dc, da := "–", "–", "–"
			if a.hasBase {
				dw = fmtDelta(a.dWall)
				dc = fmtDelta(a.dCPU)
				da = fmtSigned(a.dAllocs.med)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				label, a.c, fmtRate(a.cps.med), fmtDur(a.p50), fmtDur(a.p99), fmtSpans(a.spans), fmtNum(a.cliUs), fmtNum(a.allocs), dw, dc, da)
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		as := aggregate(r)
		if h := findAgg(as, cHookTraced); h != nil && h.spans < 0.001 {
			b.WriteString("**Note:** scripthook recorded 0 spans per call with tracing on: this build of the library does not create spans yet (tracing.go is a stub), so its traced row measures a tracer that is never used.\n\n")
			break
		}
	}
}

func fmtSpans(v float64) string {
	if !math.IsNaN(v) && v > 0 && v < 0.01 {
		return fmt.Sprintf("%.4f", v)
	}
	return fmtNum(v)
}

func fmtDelta(s stat) string {
	if s.n == 0 || math.IsNaN(s.med) {
		return "–"
	}
	return fmt.Sprintf("%s (%s…%s)", fmtSigned(s.med), fmtSigned(s.lo), fmtSigned(s.hi))
}
