package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/spanrec"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestMiniredis runs the demo as `go run ./cmd/scripthook-demo` does.
func TestMiniredis(t *testing.T) {
	out := runOK(t)
	checkReport(t, out, defaultSingle, standalone)
	if !strings.Contains(out, "Functions: skipped, embedded miniredis has no FUNCTION command") {
		t.Errorf("the functions part does not say it was skipped:\n%s", out)
	}
}

// TestRealRedis runs the demo against a real redis-server with -addr, on a
// non-default database, and checks that it leaves no key behind.
// redistest.Start skips without redis-server, or fails when
// SCRIPTHOOK_REQUIRE_REDIS=1.
func TestRealRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	out := runOK(t, "-addr", srv.Addr, "-db", "2", "-n", "50")
	checkReport(t, out, 50, standalone)
	checkFunctions(t, out, 1)
	if !strings.Contains(out, "Redis "+srv.Addr+", db 2") {
		t.Errorf("header does not name the server:\n%s", out)
	}

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 2})
	defer rdb.Close()
	n, err := rdb.DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		keys, _ := rdb.Keys(context.Background(), "*").Result()
		t.Errorf("%d keys left behind: %v", n, keys)
	}
}

// TestCluster runs the demo with -cluster against three masters made by
// redistest. It needs redis-server and redis-cli; without them it skips, or
// fails when SCRIPTHOOK_REQUIRE_REDIS=1.
func TestCluster(t *testing.T) {
	t.Parallel()
	redistest.Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("SCRIPTHOOK_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-cli, needed to create a cluster, is not on PATH")
		}
		t.Skip("redis-cli, needed to create a cluster, is not on PATH")
	}
	c, err := redistest.NewCluster(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := runOK(t, "-cluster", strings.Join(c.Addrs, ","))

	// Which master serves each tenant, from the cluster's own slot map.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer cc.Close()
	masters := map[string]string{}
	for i := 0; i < tenants; i++ {
		keys, _ := callArgs(singleTenant(i), 0)
		node, err := cc.MasterForKey(context.Background(), keys[0])
		if err != nil {
			t.Fatal(err)
		}
		masters[singleTenant(i)] = node.Options().Addr
	}
	checkReport(t, out, defaultSingle, func(tenant string) string { return masters[tenant] })
	checkFunctions(t, out, 3)
	libs, err := cc.FunctionList(context.Background(), redis.FunctionListQuery{}).Result()
	if err != nil || len(libs) != 0 {
		t.Errorf("libraries left behind: %v %v", libs, err)
	}
}

// checkFunctions reads the functions part of the report: the plain client
// meets "Function not found" for every call after the flush; the hook's
// client meets none, with two loads (the first call's, the repair's) on the
// one server its calls go to and one repair.
func checkFunctions(t *testing.T, out string, masters int) {
	t.Helper()
	if !strings.Contains(out, fmt.Sprintf("Functions: %d FCALLs of library %s; FUNCTION FLUSH by another client after %d of them", fnCalls, libName, fnCalls/2)) {
		t.Errorf("no functions header:\n%s", out)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && (f[0] == "plain" || f[0] == "hook") && f[1] == fmt.Sprint(fnCalls) {
			rows[f[0]] = f
		}
	}
	want := map[string][]string{
		"plain": {"plain", fmt.Sprint(fnCalls), fmt.Sprint(fnCalls / 2), fmt.Sprint(masters), "-", "ERR", "Function", "not", "found"},
		"hook":  {"hook", fmt.Sprint(fnCalls), "0", "2", "1"},
	}
	for name, w := range want {
		if strings.Join(rows[name], " ") != strings.Join(w, " ") {
			t.Errorf("functions row %s = %q, want %q", name, rows[name], w)
		}
	}
}

func TestUnreachable(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:1"},
		{"-cluster", "127.0.0.1:1,127.0.0.1:2"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 1 {
			t.Errorf("%q: exit status %d, want 1", args, code)
		}
		msg := stderr.String()
		if !strings.HasPrefix(msg, "scripthook-demo: cannot reach 127.0.0.1:1: ") ||
			strings.Count(msg, "\n") != 1 || !strings.HasSuffix(msg, "\n") {
			t.Errorf("%q: stderr is not one line about 127.0.0.1:1:\n%q", args, msg)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout not empty:\n%s", args, stdout.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:1", "-cluster", "127.0.0.1:2"},
		{"-n", "0"},
		{"-nosuchflag"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit status %d, want 2; stderr:\n%s", args, code, stderr.String())
		}
	}
}

// TestScript checks that the script is exactly scriptSize bytes and the
// same on every call: its SHA1 must not change between runs.
func TestScript(t *testing.T) {
	s := buildScript()
	if len(s) != scriptSize {
		t.Errorf("script is %d bytes, want %d", len(s), scriptSize)
	}
	if buildScript() != s {
		t.Error("buildScript is not deterministic")
	}
}

// runOK runs the demo with args and returns its stdout, failing the test
// unless it exits 0 with nothing on stderr.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	t.Logf("output:\n%s", stdout.String())
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit status %d, stderr:\n%s", code, stderr.String())
	}
	return stdout.String()
}

// standalone is the master of every tenant on a standalone server.
func standalone(string) string { return "the server" }

// phaseRow is one row of the report's table.
type phaseRow struct {
	calls, errors, written, read, bodies int64
	repaired                             int64 // -1: "-" (no hook)
}

// parseTable reads the report's rows: run name -> phase name -> row.
func parseTable(t *testing.T, out string) map[string]map[string]phaseRow {
	t.Helper()
	num := func(cell string) int64 {
		if cell == "-" {
			return -1
		}
		n, err := strconv.ParseInt(strings.ReplaceAll(cell, ",", ""), 10, 64)
		if err != nil {
			t.Fatalf("cell %q is not a number:\n%s", cell, out)
		}
		return n
	}
	rows := map[string]map[string]phaseRow{}
	table, _, _ := strings.Cut(out, "\nspans of the hook run:")
	for _, line := range strings.Split(table, "\n") {
		// Columns: RUN PHASE CALLS ERRORS WRITTEN READ BODIES REPAIRED.
		f := strings.Fields(line)
		if len(f) != 8 || (f[0] != "plain" && f[0] != "hook") {
			continue
		}
		if rows[f[0]] == nil {
			rows[f[0]] = map[string]phaseRow{}
		}
		rows[f[0]][f[1]] = phaseRow{num(f[2]), num(f[3]), num(f[4]), num(f[5]), num(f[6]), num(f[7])}
	}
	return rows
}

// mastersOf returns the masters serving the tenants of calls [from, to) of
// the single and pipelined phases.
func mastersOf(masterOf func(string) string, from, to int) map[string]bool {
	m := map[string]bool{}
	for i := from; i < to; i++ {
		m[masterOf(singleTenant(i))] = true
	}
	return m
}

// checkReport checks what the demo claims, for a run of this many single
// calls on a target whose masters masterOf tells (standalone: one).
func checkReport(t *testing.T, out string, single int, masterOf func(tenant string) string) {
	t.Helper()
	rows := parseTable(t, out)
	plain, hook := rows["plain"], rows["hook"]

	// What the hook sends, from the library's rules. The script is
	// registered, so on each master its first single call is preceded by
	// the hook's SCRIPT LOAD (one body), which also teaches the hook that
	// the user may run SCRIPT LOAD and EVALSHA. After another client's
	// SCRIPT FLUSH, a master the hook had loaded it on answers NOSCRIPT and
	// the hook repairs the call (SCRIPT LOAD + EVALSHA, one body); a master
	// first reached after the flush loads it as any first call does.
	before := mastersOf(masterOf, 0, single/2)
	after := mastersOf(masterOf, single/2, single)
	both := 0
	for m := range after {
		if before[m] {
			both++
		}
	}
	// Pipelines: the single phase answered what the user may run, so no
	// pipeline is a first batch that sends its scripts as written and
	// probes; strict mode sends one SCRIPT LOAD per pipeline per master it
	// touches, and EVALSHA for every use. Transactions stay on one slot:
	// one body each (a SCRIPT LOAD on a standalone server, the first EVAL
	// of a ClusterClient transaction, which may add no command).
	piped := len(mastersOf(masterOf, 0, pipelineSize))
	want := map[string]phaseRow{
		"single":   {calls: int64(single), bodies: int64(len(before) + len(after)), repaired: int64(both)},
		"pipeline": {calls: pipelines * pipelineSize, bodies: int64(pipelines * piped)},
		"tx":       {calls: transactions * txSize, bodies: transactions},
	}
	var total phaseRow
	for _, w := range want {
		total.calls += w.calls
		total.bodies += w.bodies
		total.repaired += w.repaired
	}
	want["total"] = total

	for _, phase := range []string{"single", "pipeline", "tx", "total"} {
		p, h, w := plain[phase], hook[phase], want[phase]
		if p.calls != w.calls || h.calls != w.calls {
			t.Errorf("%s: calls: plain %d, hook %d; want %d", phase, p.calls, h.calls, w.calls)
		}
		if p.errors != 0 || h.errors != 0 {
			t.Errorf("%s: errors: plain %d, hook %d; want 0", phase, p.errors, h.errors)
		}
		if h.written >= p.written {
			t.Errorf("%s: hook run wrote %d bytes, plain run %d; want fewer", phase, h.written, p.written)
		}
		if p.bodies != p.calls {
			t.Errorf("%s: plain run sent %d bodies in %d calls; every EVAL carries one", phase, p.bodies, p.calls)
		}
		if p.repaired != -1 {
			t.Errorf("%s: plain run shows %d repaired; want -", phase, p.repaired)
		}
		if h.bodies != w.bodies {
			t.Errorf("%s: hook run sent %d bodies, want %d", phase, h.bodies, w.bodies)
		}
		if h.repaired != w.repaired {
			t.Errorf("%s: hook run repaired %d NOSCRIPT, want %d", phase, h.repaired, w.repaired)
		}
	}
	if !strings.Contains(out, "replies: identical in both runs") {
		t.Errorf("runs got different replies:\n%s", out)
	}
	if strings.Contains(out, "note:") {
		t.Errorf("the hook's count of bodies disagrees with the wire:\n%s", out)
	}
	table, spans, found := strings.Cut(out, "\nspans of the hook run:")
	if !found {
		t.Fatalf("no span waterfall:\n%s", out)
	}
	if n := strings.Count(table, "\n"); n >= 25 {
		t.Errorf("report is %d lines, want fewer than 25", n)
	}
	checkWaterfall(t, spans, masterOf, piped, both > 0)
}

// checkWaterfall checks the sampled spans: the first calls, cold (SCRIPT
// LOAD, then EVALSHA) and warm, the repaired call with its cause (the hook had
// loaded the script, so the server lost it) and how, the first pipeline
// (one SCRIPT LOAD per master) and the first transaction, each drawn as a
// bar on the shared time axis.
func checkWaterfall(t *testing.T, spans string, masterOf func(string) string, piped int, repaired bool) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(spans, "\n"), "\n")
	var rows []string
	for i, l := range lines {
		if strings.HasPrefix(l, "START") {
			rows = lines[i+1:]
			break
		}
	}
	find := func(what string, sub ...string) string {
		t.Helper()
		for _, r := range rows {
			all := true
			for _, s := range sub {
				all = all && strings.Contains(r, s)
			}
			if all {
				return r
			}
		}
		t.Errorf("the waterfall has no %s (a row with %q):\n%s", what, sub, spans)
		return ""
	}
	// The first calls: the waterfall shows them up to the first warm one.
	// A call is cold where its master has not run the script yet. The very
	// first goes as written (its reply shows the user may run EVAL); on the
	// other masters of a Cluster, which are assumed to have the same ACL,
	// the hook sends the registered script's SCRIPT LOAD, then EVALSHA.
	seen := map[string]bool{}
	shown := 0
	for i := 0; i < maxFirstCalls; i++ {
		shown++
		if i >= len(rows) {
			t.Fatalf("the waterfall has %d rows:\n%s", len(rows), spans)
		}
		m := masterOf(singleTenant(i))
		want := "sent=EVALSHA body_sent"
		if len(seen) == 0 {
			want = "sent=EVAL body_sent"
		}
		if seen[m] {
			want = "sent=EVALSHA"
		}
		seen[m] = true
		if r := rows[i]; !strings.Contains(r, "EVAL rate-limiter") || !strings.HasSuffix(r, want) {
			t.Errorf("row %d is not call %d (%s):\n%s", i, i, want, spans)
		}
		if want == "sent=EVALSHA" && i+1 >= minFirstCalls {
			break
		}
	}
	if shown < len(rows) && strings.HasSuffix(rows[shown], "sent=EVALSHA") {
		t.Errorf("row %d is one more warm call; the first calls end with the first warm one:\n%s", shown, spans)
	}
	if repaired {
		find("repaired call", "EVAL rate-limiter", "sent=EVALSHA body_sent repaired cause=evicted how=load")
	}
	find("first pipeline", "PIPELINE EVAL", fmt.Sprintf("batch=%d bodies=%d rewritten=%d", pipelineSize, piped, pipelineSize))
	find("first transaction", "MULTI EVAL", fmt.Sprintf("batch=%d bodies=1", txSize))
	for _, r := range rows {
		if strings.Contains(r, "ms ") && !strings.ContainsAny(r, string(eighths)) {
			t.Errorf("a span row without a bar:\n%s", r)
		}
	}
}

// TestAxis checks the shared time axis: lengths proportional to durations
// on one scale, short gaps kept, long gaps cut and marked.
func TestAxis(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	a := interval{at(0), at(10)}
	b := interval{at(10.1), at(11)} // 0.1 ms after a: less than a cell, kept
	c := interval{at(100), at(130)} // 89 ms after b: cut
	ax := newAxis([]interval{c, a, b}, 41)
	if len(ax.segs) != 2 {
		t.Fatalf("%d segments, want 2: %+v", len(ax.segs), ax.segs)
	}
	if ax.total != 41*time.Millisecond {
		t.Errorf("axis covers %v, want 41ms", ax.total)
	}
	if w := ax.width(); w != 42 {
		t.Errorf("width %d, want 41 cells and one marker", w)
	}
	// One cell is 1 ms: a's bar is 10 cells, b's starts at cell 10 and is
	// 0.9 cell (7 eighths), c's starts after the marker at cell 11.
	for _, tc := range []struct {
		iv          interval
		from, width int // cells, and eighths of a cell
	}{
		{a, 0, 80}, {b, 10, 7}, {c, 12, 240}, {interval{at(120), at(120)}, 32, 1},
	} {
		bar := ax.bar(tc.iv.start, tc.iv.end)
		from, width := readBar(bar)
		if from != tc.from || width != tc.width {
			t.Errorf("bar for %v..%v is %q: starts at %d, %d eighths long; want %d, %d",
				tc.iv.start.Sub(t0), tc.iv.end.Sub(t0), bar, from, width, tc.from, tc.width)
		}
		if r := []rune(bar); len(r) <= 11 || r[11] != '┆' {
			t.Errorf("bar %q has no marker at cell 11", bar)
		}
	}
}

// readBar returns where a bar starts (in cells) and how long it is (in
// eighths of a cell).
func readBar(bar string) (from, width int) {
	from = -1
	for i, r := range []rune(bar) {
		for n, e := range eighths {
			if r == e {
				if from < 0 {
					from = i
				}
				width += n + 1
			}
		}
	}
	return from, width
}

// TestPick checks which top-level spans the waterfall samples.
func TestPick(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var roots []*spanrec.Span
	add := func(name string, attrs ...attribute.KeyValue) {
		roots = append(roots, &spanrec.Span{
			Name: name, StartTime: t0.Add(time.Duration(len(roots)) * time.Millisecond),
			EndTime: t0.Add(time.Duration(len(roots))*time.Millisecond + 1), Attributes: attrs,
		})
	}
	cold := attribute.Bool("scripthook.body_sent", true)
	warm := attribute.Bool("scripthook.body_sent", false)
	repaired := attribute.Bool("scripthook.repaired", true)
	add("EVAL rate-limiter", cold) // 0: first call
	add("PIPELINE EVAL")           // 1: first pipeline
	add("EVAL rate-limiter", cold) // 2: cold on another master
	add("EVAL rate-limiter", warm) // 3: the first warm call
	add("EVAL rate-limiter", warm)
	add("EVAL rate-limiter", cold, repaired) // 5: first repair
	add("EVAL rate-limiter", cold, repaired)
	add("PIPELINE")
	add("MULTI") // 8: first transaction
	add("MULTI EVAL")
	var got []int
	for _, p := range pick(roots) {
		for i, r := range roots {
			if r.StartTime.Equal(p.StartTime) { // unique per stub
				got = append(got, i)
			}
		}
	}
	if want := []int{0, 1, 2, 3, 5, 8}; !slices.Equal(got, want) {
		t.Errorf("picked %v, want %v", got, want)
	}
}
