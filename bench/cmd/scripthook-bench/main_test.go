package main

import (
	"context"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ultraQuick is the smallest configuration that still runs every row and
// every contender.
func ultraQuick(t *testing.T) config {
	cfg := defaultConfig()
	cfg.quick = true
	cfg.rounds = 1
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

func requireRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err == nil {
		return
	}
	if os.Getenv("SCRIPTHOOK_REQUIRE_REDIS") == "1" {
		t.Fatal("redis-server not found on PATH and SCRIPTHOOK_REQUIRE_REDIS=1")
	}
	t.Skip("redis-server not found on PATH (set SCRIPTHOOK_REQUIRE_REDIS=1 to fail instead)")
}

// TestSuiteUltraQuick runs the whole suite in miniature against a server it
// starts, and checks that every contender of every row ran, got only correct
// replies, and that scripthook never let a NOSCRIPT through.
func TestSuiteUltraQuick(t *testing.T) {
	requireRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := startServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

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
			if wrong != 0 || other != 0 {
				t.Errorf("%s / %s: %d wrong replies, %d errors", r.label(), c, wrong, other)
			}
			// Only the hand-written EvalSha may see NOSCRIPT, and only
			// while the cache is being flushed.
			if noScript != 0 && !(r.flush && c == cEvalSha) {
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
	if groups[groupMain] != 9 || groups[groupCold] != 3 || groups[groupFlush] != 1 || groups[groupTrace] != 3 {
		t.Errorf("rows per group: %v", groups)
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
		cEval.String(), cScripthook.String(), cScriptRun.String(), cEvalSha.String(), cRueidis.String(), cEvalOtel.String()} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestMakeScript(t *testing.T) {
	for _, n := range []int{150, 200, 201, 4096, 32768} {
		s := makeScript(n)
		if len(s.body) != n {
			t.Errorf("makeScript(%d): %d bytes", n, len(s.body))
		}
		if len(s.sha) != 40 {
			t.Errorf("sha %q", s.sha)
		}
	}
	if makeScript(200).sha == makeScript(4096).sha {
		t.Error("sizes share a SHA1")
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

func TestSignTest(t *testing.T) {
	if p := signTestP(7, 7); math.Abs(p-1.0/128) > 1e-12 {
		t.Errorf("p(7 of 7) = %v", p)
	}
	if p := signTestP(0, 5); p != 1 {
		t.Errorf("p(0 of 5) = %v", p)
	}
	a := agg{signP: 0.01, vsEval: stat{med: 0.9, n: 7}}
	if !a.slowerThanEvalBeyondNoise() {
		t.Error("clearly slower not flagged")
	}
	a.vsEval.med = 0.99
	if a.slowerThanEvalBeyondNoise() {
		t.Error("1 % slower flagged")
	}
}

func TestReadProcCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := readProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
