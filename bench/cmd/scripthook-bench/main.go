// Command scripthook-bench compares scripthook with the other ways of running
// Lua scripts from Go against a real redis-server, and writes BENCHMARKS.md
// and a plot.
//
// Run it from the bench module:
//
//	cd bench && go run ./cmd/scripthook-bench
//
// It starts its own redis-server on a free loopback port (or uses -addr),
// runs every workload with all contenders interleaved in a balanced order
// (seeded: -seed reproduces it) next to an A/A control, and writes
// BENCHMARKS.md and results.png next to it. -quick is a one-minute smoke run.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	if isChild() {
		os.Exit(childMain())
	}
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "scripthook-bench:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	def := defaultConfig()
	addr := flag.String("addr", "", "use this redis-server (loopback only) instead of starting one")
	quick := flag.Bool("quick", false, "smoke run: 6 short rounds per row (about a minute)")
	out := flag.String("out", def.out, "where to write the report (empty: do not write)")
	pngPath := flag.String("png", def.png, "where to write the plot (empty: do not write)")
	rounds := flag.Int("rounds", 0, "rounds per warm row (default 12, -quick 6)")
	slice := flag.Duration("slice", 0, "measured slice per contender and round (default 250ms, -quick 50ms)")
	seed := flag.Uint64("seed", 0, "seed of the contenders' order in every round (0: a fresh one, printed)")
	noFIPS := flag.Bool("no-fips", false, "skip the FIPS 140-only row (a child process under GODEBUG=fips140=only)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (investigation)")
	noTrace := flag.Bool("no-tracing", false, "skip the tracing rows")
	maxInter := flag.Float64("max-interference", def.maxInterference, "measure a round again when other processes used more than this share of the CPUs (0: never)")
	only := flag.String("only", "", "run only the rows whose label matches this regexp (for investigation; the report then covers those rows)")
	flag.Parse()

	cfg := def
	if *quick {
		cfg = quickConfig()
	}
	cfg.addr, cfg.out, cfg.png = *addr, *out, *pngPath
	if *rounds > 0 {
		cfg.rounds = *rounds
	}
	if *slice > 0 {
		cfg.slice = *slice
	}
	cfg.tracing = !*noTrace
	cfg.fips = !*noFIPS
	cfg.seed = *seed
	if cfg.seed == 0 {
		cfg.seed = rand.Uint64()
	}
	cfg.maxInterference = *maxInter
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		cfg.only = re
	}
	cfg.log = os.Stderr
	cfg.command = commandLine(cfg.seed)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var srv *server
	var err error
	if cfg.addr != "" {
		srv, err = attachServer(ctx, cfg.addr)
	} else {
		srv, err = startServer()
	}
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Fprintf(os.Stderr, "%s at %s (pid %d, %s); %d rows; seed %d\n", srv.Version, srv.Addr, srv.PID(),
		evictionNote(srv.Version), len(buildRows(&cfg)), cfg.seed)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	start := time.Now()
	s, err := runSuite(ctx, &cfg, srv)
	if err != nil {
		return err
	}
	if cfg.png != "" {
		if err := writePlot(s, cfg.png); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	if cfg.out != "" {
		if err := writeReport(s, cfg.out, cfg.png); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "done in %s; wrote %s %s\n", time.Since(start).Round(time.Second), cfg.out, cfg.png)
	for _, v := range checkTargets(s) {
		state := "met"
		if !v.judged {
			state = "not judged"
		} else if !v.met {
			state = "MISSED"
		}
		fmt.Fprintf(os.Stderr, "  %-10s %-55s %s: %s\n", state, v.row, v.target, v.result)
	}
	return nil
}

// commandLine is the command that reproduces this run (its seed
// included), as documented.
func commandLine(seed uint64) string {
	args := []string{"cd bench && go run ./cmd/scripthook-bench"}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "out", "png", "addr", "cpuprofile", "seed":
			return // paths and addresses are the runner's own; the seed comes last
		}
		if f.Value.String() == "true" {
			args = append(args, "-"+f.Name)
		} else {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	args = append(args, fmt.Sprintf("-seed=%d", seed))
	return strings.Join(args, " ")
}
